//! Active users: distinct users seen over trailing windows (24 h and 7 d by default), across
//! every process, surviving restarts. A user is seen when a lifecycle event about them is
//! handled, when a push to them is stored, and when a gateway reports them
//! (`POST /api/v1/activity`). The store keeps each user's last sighting; a window's count is
//! the users seen since its start, so the figure is exact (no sketch), and rows older than
//! the longest window are pruned.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::EnqueueError;

/// The most user ids one report carries.
pub const MAX_REPORT: usize = 1000;
/// The longest user id, in bytes.
pub const MAX_USER_ID: usize = 256;

/// The windows the gauge counts over (`[activity]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivityConfig {
    /// Trailing windows, each named as written (`"24h"`, `"7d"`, `"30min"`). Defaults to
    /// `["24h", "7d"]`; at most 8, each from 1 minute to 90 days.
    pub windows: Vec<String>,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            windows: vec!["24h".to_owned(), "7d".to_owned()],
        }
    }
}

impl ActivityConfig {
    /// The windows, named, shortest first; an error names the bad one.
    pub fn windows(&self) -> Result<Vec<(String, Duration)>, String> {
        if self.windows.is_empty() || self.windows.len() > 8 {
            return Err("give 1 to 8 windows".to_owned());
        }
        let mut out = Vec::with_capacity(self.windows.len());
        for (i, text) in self.windows.iter().enumerate() {
            let length = humantime::parse_duration(text)
                .map_err(|e| format!("windows[{i}]: {text:?} is not a duration ({e})"))?;
            if !(Duration::from_secs(60)..=Duration::from_secs(90 * 24 * 3600)).contains(&length) {
                return Err(format!(
                    "windows[{i}]: {text:?} must be 1 minute to 90 days"
                ));
            }
            out.push((text.clone(), length));
        }
        out.sort_by_key(|(_, length)| *length);
        out.dedup_by_key(|(_, length)| *length);
        Ok(out)
    }

    /// The longest window: how long a user's sighting is kept.
    pub fn longest(&self) -> Duration {
        self.windows()
            .ok()
            .and_then(|w| w.last().map(|(_, length)| *length))
            .unwrap_or(Duration::from_secs(7 * 24 * 3600))
    }
}

/// Checks a user id as reported: 1 to [`MAX_USER_ID`] bytes, no NUL.
pub fn check_user_id(field: &str, user_id: &str) -> Result<(), EnqueueError> {
    if user_id.is_empty() || user_id.len() > MAX_USER_ID {
        return Err(EnqueueError::invalid(
            field,
            format!("must be 1 to {MAX_USER_ID} bytes"),
        ));
    }
    crate::limits::check_text(field, user_id)
}
