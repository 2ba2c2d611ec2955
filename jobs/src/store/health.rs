//! Failing fast while the database is unreachable.
//!
//! Without this, every operation during an outage waits out the pool's acquire timeout, one
//! after another, and callers pile up. Once an operation finds the database unreachable,
//! the store refuses further operations at once (nothing is sent, so nothing is stored) and
//! lets one operation through every [`PROBE_INTERVAL`] to find out whether it is back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::StoreError;

/// How often one operation is let through to the database while it is unreachable.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub(crate) struct Health {
    down: Mutex<Option<Down>>,
}

#[derive(Debug, Clone, Copy)]
struct Down {
    since: Instant,
    probe_at: Instant,
}

impl Health {
    /// Refuses at once while the database is known to be unreachable, except for one probe
    /// per interval.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let mut down = self.lock();
        let Some(state) = down.as_mut() else {
            return Ok(());
        };
        let now = Instant::now();
        if now >= state.probe_at {
            state.probe_at = now + PROBE_INTERVAL;
            return Ok(());
        }
        Err(StoreError::Unavailable {
            reason: "the database has been unreachable for a while; nothing was sent",
        })
    }

    /// Learns from an operation's result whether the database answers.
    pub(crate) fn record<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => {
                let was = self.lock().take();
                if let Some(down) = was {
                    tracing::info!(
                        down_s = down.since.elapsed().as_secs_f64(),
                        "the database answers again"
                    );
                }
            }
            Err(error)
                if (error.is_unavailable() && !error.is_fail_fast())
                    || matches!(error, StoreError::Unconfirmed { .. }) =>
            {
                let mut down = self.lock();
                let now = Instant::now();
                if down.is_none() {
                    tracing::warn!(%error, "the database is unreachable; failing fast until it answers");
                }
                let since = down.map_or(now, |d| d.since);
                *down = Some(Down {
                    since,
                    probe_at: now + PROBE_INTERVAL,
                });
            }
            Err(_) => {}
        }
    }

    /// Whether the database is known to be unreachable now.
    #[cfg(test)]
    pub(crate) fn is_down(&self) -> bool {
        self.lock().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Down>> {
        self.down.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> Result<(), StoreError> {
        Err(StoreError::Query {
            op: "test",
            error: sqlx::Error::PoolTimedOut,
        })
    }

    #[test]
    fn fails_fast_once_unreachable_and_lets_one_probe_through_per_interval() {
        let health = Health::default();
        assert!(health.check().is_ok());
        health.record(&unreachable());
        assert!(health.is_down());
        assert!(health.check().unwrap_err().is_unavailable());
        // A fail-fast refusal does not push the next probe back.
        health.record(&health.check());
        std::thread::sleep(PROBE_INTERVAL);
        assert!(health.check().is_ok(), "the probe goes through");
        assert!(health.check().is_err(), "only one probe per interval");
        health.record(&Ok(()));
        assert!(!health.is_down());
        assert!(health.check().is_ok());
    }
}
