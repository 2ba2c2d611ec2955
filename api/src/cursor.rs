//! Opaque, signed page cursors. A cursor names the last item of a page (a job, an operation)
//! and the list it was made for; its HMAC (keyed by a secret every replica reads from the
//! database) makes a forged or altered cursor a 400 instead of a query over whatever an
//! attacker wrote.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::ApiState;
use crate::problem::ApiError;

type HmacSha256 = Hmac<Sha256>;

async fn key(state: &ApiState) -> Result<&[u8], ApiError> {
    let key = state
        .shared
        .cursor_key
        .get_or_try_init(|| async {
            let fresh: String = uuid::Uuid::new_v4().simple().to_string()
                + &uuid::Uuid::new_v4().simple().to_string();
            let stored = state
                .store()
                .setting_or_insert("cursor_key", &fresh)
                .await?;
            Ok::<_, ApiError>(stored.into_bytes())
        })
        .await?;
    Ok(key.as_slice())
}

fn mac(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(payload);
    mac.finalize().into_bytes()[..16].to_vec()
}

/// The cursor that continues the list `scope` after `last`.
pub(crate) async fn encode(state: &ApiState, scope: &str, last: Uuid) -> Result<String, ApiError> {
    let payload = format!("{scope}:{last}");
    let tag = mac(key(state).await?, payload.as_bytes());
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag)
    ))
}

/// The item a cursor continues after, if the cursor is genuine and made for `scope`.
pub(crate) async fn decode(state: &ApiState, scope: &str, cursor: &str) -> Result<Uuid, ApiError> {
    let bad = || ApiError::bad_request("invalid_cursor", "the cursor is malformed or was altered");
    if cursor.len() > 200 {
        return Err(bad());
    }
    let (payload, tag) = cursor.split_once('.').ok_or_else(bad)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| bad())?;
    let mut check = HmacSha256::new_from_slice(key(state).await?).expect("any key length");
    check.update(&payload);
    check.verify_truncated_left(&tag).map_err(|_| bad())?;
    if tag.len() != 16 {
        return Err(bad());
    }
    let payload = String::from_utf8(payload).map_err(|_| bad())?;
    let (made_for, id) = payload.split_once(':').ok_or_else(bad)?;
    if made_for != scope {
        return Err(bad());
    }
    id.parse().map_err(|_| bad())
}
