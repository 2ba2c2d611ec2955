//! The rescuer: finds jobs whose lease ran out (their worker died or hung) and makes them
//! retryable, or discards them once their attempts are used up, so a job that kills its
//! process cannot loop forever.

use std::time::Duration;

use longshore_jobs::telemetry::{JOB_ID, WORKER_ID};
use longshore_jobs::{JobState, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// Jobs rescued per statement.
const BATCH: u32 = 1000;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RescueReport {
    /// Jobs made retryable.
    pub retried: usize,
    /// Jobs discarded because their attempts were used up.
    pub discarded: usize,
    /// Jobs cancelled because a cancel was pending when their worker died.
    pub cancelled: usize,
}

/// Rescues expired leases.
pub struct Rescuer {
    store: Store,
    interval: Duration,
    lease: Duration,
}

impl Rescuer {
    /// A rescuer that looks at most every `interval`, for leases of `lease`.
    pub fn new(store: Store, interval: Duration, lease: Duration) -> Self {
        Rescuer {
            store,
            interval,
            lease,
        }
    }

    /// How long to sleep after a pass: until the next lease of a running job ends, as the
    /// database knows it now, but never less than `interval`. A job claimed after this look
    /// holds its lease for a whole `lease` from then, and a lease can only be extended, so
    /// with nothing running nothing can expire before a lease from now.
    async fn next_look(&self) -> Result<Duration, StoreError> {
        let until = match self.store.next_lease_expiry().await? {
            Some(at) => (at - chrono::Utc::now()).to_std().unwrap_or_default(),
            None => self.lease,
        };
        Ok(until.min(self.lease).max(self.interval))
    }

    /// Rescues every job whose lease has expired.
    pub async fn run_once(&self) -> Result<RescueReport, StoreError> {
        let mut report = RescueReport::default();
        loop {
            let rescued = self.store.rescue_expired(BATCH).await?;
            for job in &rescued {
                match job.state {
                    JobState::Discarded => report.discarded += 1,
                    JobState::Cancelled => report.cancelled += 1,
                    _ => report.retried += 1,
                }
                tracing::warn!(
                    { JOB_ID } = %job.id, { WORKER_ID } = job.worker.as_deref().unwrap_or("?"),
                    state = %job.state, "rescued job whose lease expired"
                );
            }
            if rescued.len() < BATCH as usize {
                return Ok(report);
            }
        }
    }

    /// Rescues until `stop`: when a lease can next have ended, every `interval` at most.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let wait = match self.run_once().await {
                Ok(_) => self.next_look().await,
                Err(error) => Err(error),
            };
            let wait = wait.unwrap_or_else(|error| {
                tracing::warn!(%error, "rescue pass failed; retrying at the next interval");
                self.interval
            });
            if stop
                .run_until_cancelled(tokio::time::sleep(wait))
                .await
                .is_none()
            {
                return;
            }
        }
    }
}
