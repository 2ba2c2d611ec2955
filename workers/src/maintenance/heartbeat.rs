//! The heartbeat: keeps the leases of the attempts this process holds alive, stops the
//! handlers of attempts whose lease another process took, and carries cancel requests back to
//! the handlers.

use std::time::Duration;

use longshore_jobs::telemetry::{JOB_ATTEMPT, JOB_ID};
use longshore_jobs::{Store, StoreError, WorkerId};
use tokio_util::sync::CancellationToken;

use crate::exec::held::{HeldAttempts, StopReason};

/// What one beat did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatReport {
    /// Leases extended.
    pub extended: u64,
    /// Handlers asked to stop because another process took their lease.
    pub lost: usize,
    /// Running jobs asked to stop because an operator cancelled them.
    pub cancelled: usize,
}

/// Renews the leases this process holds.
pub struct Heartbeat {
    store: Store,
    workers: Vec<WorkerId>,
    held: HeldAttempts,
    lease: Duration,
    interval: Duration,
}

impl Heartbeat {
    /// A heartbeat for the attempts in `held` claimed by `workers`, beating every `interval`.
    pub fn new(
        store: Store,
        workers: Vec<WorkerId>,
        held: HeldAttempts,
        lease: Duration,
        interval: Duration,
    ) -> Self {
        Heartbeat {
            store,
            workers,
            held,
            lease,
            interval,
        }
    }

    /// One beat: extends the held leases that end within half a lease (so a short job is
    /// never touched), stops handlers whose attempt is no longer held, relays cancel
    /// requests, and marks the workers alive.
    pub async fn run_once(&self) -> Result<HeartbeatReport, StoreError> {
        let renewal = self
            .store
            .extend_leases(&self.held.leases(), self.lease, self.lease / 2)
            .await?;
        let stopped = self.held.lose(&renewal.lost);
        for (id, attempt) in &stopped {
            tracing::warn!(
                { JOB_ID } = %id, { JOB_ATTEMPT } = attempt,
                "lease lost to another process; stopping the attempt (its outcome will not count)"
            );
        }
        let mut cancelled = 0;
        for id in self.store.cancel_requests(&self.workers).await? {
            if self.held.stop(id, StopReason::Cancelled) {
                cancelled += 1;
            }
        }
        self.store.touch_workers(&self.workers).await?;
        Ok(HeartbeatReport {
            extended: renewal.extended,
            lost: stopped.len(),
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
                    Ok(id) => { self.held.stop(id, StopReason::Cancelled); }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}
