//! The heartbeat: keeps this process's leases alive and carries cancel requests back to the
//! handlers.

use std::time::Duration;

use longshore_jobs::{Store, StoreError, WorkerId};
use tokio_util::sync::CancellationToken;

use crate::running::{RunningJobs, StopReason};

/// What one beat did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatReport {
    /// Leases extended.
    pub extended: u64,
    /// Running jobs asked to stop because an operator cancelled them.
    pub cancelled: usize,
}

/// Renews the leases of every worker of this process.
pub struct Heartbeat {
    store: Store,
    workers: Vec<WorkerId>,
    running: RunningJobs,
    lease: Duration,
    interval: Duration,
}

impl Heartbeat {
    /// A heartbeat for `workers`, beating every `interval`.
    pub fn new(
        store: Store,
        workers: Vec<WorkerId>,
        running: RunningJobs,
        lease: Duration,
        interval: Duration,
    ) -> Self {
        Heartbeat {
            store,
            workers,
            running,
            lease,
            interval,
        }
    }

    /// One beat: extends leases that end within half a lease (so a short job is never
    /// touched), relays cancel requests, and marks the workers alive.
    pub async fn run_once(&self) -> Result<HeartbeatReport, StoreError> {
        let extended = self
            .store
            .extend_leases(&self.workers, self.lease, self.lease / 2)
            .await?;
        let mut cancelled = 0;
        for id in self.store.cancel_requests(&self.workers).await? {
            if self.running.stop(id, StopReason::Cancelled) {
                cancelled += 1;
            }
        }
        self.store.touch_workers(&self.workers).await?;
        Ok(HeartbeatReport {
            extended,
            cancelled,
        })
    }

    /// Beats until `stop`; also relays cancel requests the moment they are signalled.
    pub async fn run(self, stop: CancellationToken) {
        let mut cancels = self.store.wakeups().subscribe_cancels();
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {
                    if let Err(error) = self.run_once().await {
                        tracing::warn!(%error, "heartbeat failed; leases renew at the next beat");
                    }
                }
                received = cancels.recv() => match received {
                    Ok(id) => { self.running.stop(id, StopReason::Cancelled); }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}
