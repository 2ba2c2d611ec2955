//! Secrets at rest: values a row must hold but the database must not read (webhook signing
//! secrets), sealed with AES-256-GCM under the process's keyring before they are stored.
//!
//! A keyring is a list of named 32-byte keys (`secrets.keys` in the config, or
//! `LONGSHORE_SECRETS__KEYS`: `name:base64key` separated by commas). The first seals; every
//! one opens, so a key is rotated by putting the new one first and keeping the old one
//! until the rows it sealed are sealed again. A sealed value reads `v1:{key name}:{base64 of
//! nonce and ciphertext}`; the row's purpose is bound in as associated data, so a sealed
//! value copied into another row or column does not open there.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

/// `[secrets]`: the keys secrets are sealed with.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// `name:base64key` entries, the first the one that seals; a list, or one string of
    /// entries separated by commas (as an environment variable gives it).
    #[serde(deserialize_with = "list_or_commas")]
    pub keys: Vec<String>,
}

fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Keys {
        List(Vec<String>),
        Text(String),
    }
    Ok(match serde::Deserialize::deserialize(d)? {
        Keys::List(keys) => keys,
        Keys::Text(text) => text
            .split(',')
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect(),
    })
}

impl SecretsConfig {
    /// The keyring the config names.
    pub fn keyring(&self) -> Result<Keyring, SecretError> {
        Keyring::parse(&self.keys)
    }
}

/// The keys secrets are sealed with.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Keyring").field("keys", &names).finish()
    }
}

/// Why a secret cannot be sealed or opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// No key is configured.
    #[error(
        "no key to encrypt secrets with: set secrets.keys (or LONGSHORE_SECRETS__KEYS) to \
         name:key, the key 32 random bytes in base64, e.g. `k1:$(openssl rand -base64 32)`"
    )]
    NoKey,
    /// A configured key is malformed.
    #[error("{0}")]
    BadKey(String),
    /// The sealed value names a key the keyring lacks, or does not open with it.
    #[error("a stored secret cannot be decrypted: {0}")]
    Unreadable(String),
}

impl Keyring {
    /// Parses `name:base64key` entries, the first the one that seals.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Keyring, SecretError> {
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let (name, key) = entry
                .split_once(':')
                .ok_or_else(|| SecretError::BadKey("each key is name:base64key".to_owned()))?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(SecretError::BadKey(format!(
                    "key name {name:?} must be letters, digits and -"
                )));
            }
            let bytes = STANDARD
                .decode(key)
                .map_err(|_| SecretError::BadKey(format!("key {name:?} is not base64")))?;
            if bytes.len() != 32 {
                return Err(SecretError::BadKey(format!(
                    "key {name:?} must be 32 bytes, got {}",
                    bytes.len()
                )));
            }
            if keys.iter().any(|(n, _)| n == name) {
                return Err(SecretError::BadKey(format!("key {name:?} given twice")));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| SecretError::BadKey(format!("key {name:?} is unusable")))?;
            keys.push((name.to_owned(), cipher));
        }
        Ok(Keyring { keys })
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seals `plain` for the row purpose `aad` (e.g. `webhook_endpoints.secret:{id}`).
    pub fn seal(&self, plain: &str, aad: &str) -> Result<String, SecretError> {
        let (name, cipher) = self.keys.first().ok_or(SecretError::NoKey)?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Unreadable("encryption failed".to_owned()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("v1:{name}:{}", STANDARD.encode(out)))
    }

    /// Opens a value [`Keyring::seal`] made for the same `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<String, SecretError> {
        let bad = |why: &str| SecretError::Unreadable(why.to_owned());
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(name), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not a sealed value"));
        };
        let (_, cipher) =
            self.keys.iter().find(|(n, _)| n == name).ok_or_else(|| {
                SecretError::Unreadable(format!("key {name:?} is not configured"))
            })?;
        let bytes = STANDARD.decode(body).map_err(|_| bad("not base64"))?;
        if bytes.len() < 12 {
            return Err(bad("too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| bad("too short"))?;
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| bad("it does not open with its key (tampered, or another row's)"))?;
        String::from_utf8(plain).map_err(|_| bad("not text"))
    }

    /// The name of the key that seals, if any.
    pub fn current(&self) -> Option<&str> {
        self.keys.first().map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn seals_opens_and_rotates_keys() {
        let old = Keyring::parse(&[format!("old:{}", key(1))]).unwrap();
        let sealed = old.seal("whsec_canary", "row:1").unwrap();
        assert!(sealed.starts_with("v1:old:"));
        assert!(!sealed.contains("canary"));
        assert_eq!(old.open(&sealed, "row:1").unwrap(), "whsec_canary");
        // Another row's purpose, or a flipped byte, does not open.
        assert!(old.open(&sealed, "row:2").is_err());
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            old.open(&String::from_utf8(tampered).unwrap(), "row:1")
                .is_err()
        );
        // Rotation: the new key seals, the old still opens what it sealed.
        let both = Keyring::parse(&[format!("new:{}", key(2)), format!("old:{}", key(1))]).unwrap();
        assert_eq!(both.open(&sealed, "row:1").unwrap(), "whsec_canary");
        assert!(both.seal("x", "r").unwrap().starts_with("v1:new:"));
        let new_only = Keyring::parse(&[format!("new:{}", key(2))]).unwrap();
        assert!(
            new_only
                .open(&sealed, "row:1")
                .unwrap_err()
                .to_string()
                .contains("\"old\"")
        );
    }

    #[test]
    fn refuses_bad_keys_and_no_key() {
        assert_eq!(Keyring::default().seal("x", "r"), Err(SecretError::NoKey));
        for bad in ["nokey", "k:notbase64!", "k:AAAA", "a b:AAAA"] {
            assert!(Keyring::parse(&[bad]).is_err(), "{bad}");
        }
        let twice = [format!("k:{}", key(1)), format!("k:{}", key(2))];
        assert!(Keyring::parse(&twice).is_err());
    }
}
