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
}

impl Rescuer {
    /// A rescuer that runs every `interval`.
    pub fn new(store: Store, interval: Duration) -> Self {
        Rescuer { store, interval }
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

    /// Rescues every `interval` until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(ticker.tick()).await.is_some() {
            if let Err(error) = self.run_once().await {
                tracing::warn!(%error, "rescue pass failed; retrying at the next interval");
            }
        }
    }
}
