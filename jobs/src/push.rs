//! Pushes: events for one user that the gateways holding user connections must receive, and
//! the webhook endpoints that subscribed to their kind.
//!
//! A push is stored in the push log before anything is told about it, and is kept for the
//! push retention. Every push has a stream position; positions only grow, and a gateway that
//! resumes after a position gets every later push in order, never one twice (see
//! `store/sql/pushes.rs` for how Postgres keeps that promise across transactions).

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::error::EnqueueError;
use crate::limits::{check_json, check_size, check_text};

/// The largest payload a push may carry, serialized: 64 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The most pushes one request may send.
pub const MAX_BATCH: usize = 1000;

/// A push to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewPush {
    /// The sender's id of the event: a push whose `event_id` is stored already is not stored
    /// again (the stored one is answered instead).
    pub event_id: String,
    /// The user it is for.
    pub user_id: String,
    /// What happened, e.g. `friend.request`.
    pub kind: String,
    /// What the gateway forwards.
    pub payload: serde_json::Value,
}

/// A stored push.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Push {
    /// Its stream position.
    pub position: i64,
    /// The sender's id of the event.
    pub event_id: String,
    /// The user it is for.
    pub user_id: String,
    /// What happened.
    pub kind: String,
    /// What the gateway forwards.
    pub payload: serde_json::Value,
    /// When it was stored.
    pub at: DateTime<Utc>,
}

/// What storing a push gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// Its stream position.
    pub position: i64,
    /// The sender's id of the event.
    pub event_id: String,
    /// True when a push with this `event_id` was stored already: nothing new was stored.
    pub duplicate: bool,
}

impl NewPush {
    /// Checks what a push may hold, naming the field under `at` (e.g. `pushes[3].kind`).
    pub fn check(&self, at: &str) -> Result<(), EnqueueError> {
        let field = |name: &str| {
            if at.is_empty() {
                name.to_owned()
            } else {
                format!("{at}.{name}")
            }
        };
        for (name, value, max) in [
            ("event_id", &self.event_id, 200),
            ("user_id", &self.user_id, 200),
            ("kind", &self.kind, 100),
        ] {
            if value.is_empty() || value.len() > max {
                return Err(EnqueueError::invalid(
                    field(name),
                    format!("must be 1 to {max} bytes"),
                ));
            }
            check_text(&field(name), value)?;
        }
        if !self
            .kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            return Err(EnqueueError::invalid(
                field("kind"),
                "may hold letters, digits and . _ : - only",
            ));
        }
        check_json(&field("payload"), &self.payload)?;
        check_size(&field("payload"), &self.payload, MAX_PAYLOAD_BYTES)
    }
}

/// A share of the users: `index` of `count` (`3/8`). A user belongs to the share
/// `partition_of(user_id, count)`, so `count` gateways, each with its own index, split the
/// users between them with none left out and none shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Which share, from 0.
    pub index: u32,
    /// How many shares.
    pub count: u32,
}

impl Partition {
    /// Whether the user belongs to this share.
    pub fn contains(&self, user_id: &str) -> bool {
        partition_of(user_id, self.count) == self.index
    }
}

impl std::str::FromStr for Partition {
    type Err = String;
    fn from_str(text: &str) -> Result<Partition, String> {
        let bad = || format!("must be index/count with index below count, e.g. 3/8, got {text:?}");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            index.parse().map_err(|_| bad())?,
            count.parse().map_err(|_| bad())?,
        );
        if count == 0 || count > 65_536 || index >= count {
            return Err(bad());
        }
        Ok(Partition { index, count })
    }
}

/// The share of `count` a user belongs to: the first eight bytes of the SHA-256 of the user
/// id, read as a big-endian unsigned integer, modulo `count`. Any language computes the same.
pub fn partition_of(user_id: &str, count: u32) -> u32 {
    let digest = Sha256::digest(user_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_split_users_without_overlap_or_gap() {
        let shares: Vec<Partition> = (0..8).map(|i| format!("{i}/8").parse().unwrap()).collect();
        for n in 0..2000 {
            let user = format!("user-{n}");
            assert_eq!(shares.iter().filter(|p| p.contains(&user)).count(), 1);
        }
        // As Python's hashlib computes them, so gateways in other languages can check theirs.
        assert_eq!(partition_of("alice", 8), 7);
        assert_eq!(partition_of("bob", 1000), 650);
        assert_eq!(partition_of("user-42", 8), 1);
        assert_eq!(partition_of("", 1), 0);
    }

    #[test]
    fn parses_partitions_and_refuses_nonsense() {
        assert_eq!(
            "3/8".parse::<Partition>(),
            Ok(Partition { index: 3, count: 8 })
        );
        for bad in ["8/8", "1/0", "x/2", "3", "-1/4", "1/99999999999"] {
            assert!(bad.parse::<Partition>().is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_fields_by_name() {
        let push = NewPush {
            event_id: "e1".into(),
            user_id: "u\0".into(),
            kind: "k".into(),
            payload: serde_json::json!({}),
        };
        let error = push.check("pushes[2]").unwrap_err().to_string();
        assert!(error.contains("pushes[2].user_id"), "{error}");
        let push = NewPush {
            user_id: "u".into(),
            kind: "bad kind".into(),
            ..push
        };
        assert!(push.check("").unwrap_err().to_string().contains("kind"));
    }
}
