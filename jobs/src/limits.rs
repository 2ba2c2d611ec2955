//! What a stored job may hold, checked the same way on every backend before anything reaches
//! the database: sizes, the time horizon, and text a database can store.
//!
//! Postgres refuses a NUL character in `text` and `jsonb`, SQLite keeps it: without these
//! checks the two backends would disagree, and Postgres's refusal would read as an outage.
//! Times are bounded so that every stored time can be read back by every reader (chrono's
//! range is narrower than Postgres's), and so that no arithmetic on them can overflow.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::EnqueueError;

/// The largest args a job may carry, serialized: 256 KiB.
pub const MAX_ARGS_BYTES: usize = 256 * 1024;
/// The largest metadata a job may carry, serialized: 64 KiB.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// The most attempts a job may be given.
pub const MAX_ATTEMPTS_LIMIT: i64 = 1000;
/// The most tags a job may carry.
pub const MAX_TAGS: usize = 32;
/// How far ahead a job may be scheduled, and the longest delay any retry, snooze or
/// `Retry-After` may ask for: ten years.
pub const MAX_DELAY: Duration = Duration::from_secs(10 * 365 * 24 * 3600 + 2 * 24 * 3600);

/// `MAX_DELAY` in milliseconds, as the API states it.
pub const MAX_DELAY_MS: i64 = MAX_DELAY.as_millis() as i64;

/// A delay no longer than [`MAX_DELAY`].
pub fn bounded(delay: Duration) -> Duration {
    delay.min(MAX_DELAY)
}

/// Checks a requested delay in milliseconds.
pub fn check_delay_ms(field: &str, ms: i64) -> Result<Duration, EnqueueError> {
    if !(0..=MAX_DELAY_MS).contains(&ms) {
        return Err(EnqueueError::invalid(
            field,
            format!("must be 0 to {MAX_DELAY_MS} (ten years), got {ms}"),
        ));
    }
    Ok(Duration::from_millis(ms as u64))
}

/// Checks a requested point in time: not before 1970, not more than [`MAX_DELAY`] ahead.
pub fn check_time(field: &str, at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), EnqueueError> {
    let latest = now + chrono::Duration::from_std(MAX_DELAY).unwrap_or(chrono::Duration::MAX);
    if at < DateTime::UNIX_EPOCH || at > latest {
        return Err(EnqueueError::invalid(
            field,
            format!("must be between 1970-01-01T00:00:00Z and ten years from now, got {at}"),
        ));
    }
    Ok(())
}

/// Checks that text can be stored: no NUL character.
pub fn check_text(field: &str, text: &str) -> Result<(), EnqueueError> {
    if text.contains('\0') {
        return Err(EnqueueError::invalid(
            field,
            "must not contain a NUL character (\\u0000)",
        ));
    }
    Ok(())
}

/// Checks that a JSON value can be stored: no NUL character in any string or key. The error
/// names the path to the first offending value, e.g. `args.user.name`.
pub fn check_json(field: &str, value: &serde_json::Value) -> Result<(), EnqueueError> {
    use serde_json::Value;
    let mut pending: Vec<(String, &Value)> = vec![(field.to_owned(), value)];
    while let Some((path, value)) = pending.pop() {
        match value {
            Value::String(text) => check_text(&path, text)?,
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    pending.push((format!("{path}[{i}]"), item));
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let path = format!("{path}.{key}");
                    check_text(&path, key)?;
                    pending.push((path, item));
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    Ok(())
}

/// Checks a JSON value's serialized size.
pub fn check_size(
    field: &str,
    value: &serde_json::Value,
    limit: usize,
) -> Result<(), EnqueueError> {
    let size = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > limit {
        return Err(EnqueueError::TooLarge {
            field: field.to_owned(),
            message: format!("{size} bytes is over the limit of {limit}"),
        });
    }
    Ok(())
}

/// Tags: at most [`MAX_TAGS`], each 1 to 100 bytes of storable text.
pub fn check_tags(field: &str, tags: &[String]) -> Result<(), EnqueueError> {
    if tags.len() > MAX_TAGS {
        return Err(EnqueueError::invalid(
            field,
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    for tag in tags {
        if tag.is_empty() || tag.len() > 100 {
            return Err(EnqueueError::invalid(
                field,
                format!("tag {tag:?} must be 1 to 100 bytes"),
            ));
        }
        check_text(field, tag)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(error: EnqueueError) -> String {
        match error {
            EnqueueError::Invalid { field, .. } | EnqueueError::TooLarge { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_nul_anywhere_in_json_is_named_by_its_path() {
        let args = json!({ "user": { "names": ["ok", "a\u{0}b"] } });
        assert_eq!(
            field(check_json("args", &args).unwrap_err()),
            "args.user.names[1]"
        );
        let key = json!({ "k\u{0}": 1 });
        assert_eq!(
            field(check_json("metadata", &key).unwrap_err()),
            "metadata.k\u{0}"
        );
        assert!(check_json("args", &json!({ "fine": [1, true, null, "x"] })).is_ok());
    }

    #[test]
    fn delays_and_times_stay_within_ten_years_and_after_1970() {
        assert!(check_delay_ms("delay_ms", MAX_DELAY_MS).is_ok());
        assert!(check_delay_ms("delay_ms", MAX_DELAY_MS + 1).is_err());
        assert!(check_delay_ms("delay_ms", -1).is_err());
        assert!(check_delay_ms("delay_ms", i64::MAX).is_err());
        let now = Utc::now();
        assert!(check_time("run_at", now, now).is_ok());
        assert!(check_time("run_at", DateTime::UNIX_EPOCH, now).is_ok());
        let before = DateTime::UNIX_EPOCH - chrono::Duration::seconds(1);
        assert!(check_time("run_at", before, now).is_err());
        let beyond = now + chrono::Duration::days(3660);
        assert!(check_time("run_at", beyond, now).is_err());
        assert_eq!(bounded(Duration::MAX), MAX_DELAY);
    }
}
