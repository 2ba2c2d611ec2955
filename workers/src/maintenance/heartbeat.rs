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

/// How often an idle process marks its workers alive: the API counts a worker live for a
/// minute after it was last seen.
const IDLE_TOUCH: Duration = Duration::from_secs(30);

/// Renews the leases this process holds.
pub struct Heartbeat {
    store: Store,
    workers: Vec<WorkerId>,
    held: HeldAttempts,
    lease: Duration,
    interval: Duration,
    touched: std::sync::Mutex<Option<std::time::Instant>>,
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
            touched: std::sync::Mutex::new(None),
        }
    }

    /// Whether to mark the workers alive on this beat: on every beat while they hold jobs,
    /// every [`IDLE_TOUCH`] while idle.
    fn touch_due(&self) -> bool {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        let due = !self.held.is_empty() || touched.is_none_or(|at| at.elapsed() >= IDLE_TOUCH);
        if due {
            *touched = Some(std::time::Instant::now());
        }
        due
    }

    /// One beat: extends the held leases that end within half a lease (so a short job is
    /// never touched), stops handlers whose attempt is no longer held, relays cancel
    /// requests, and marks the workers alive. An idle beat asks nothing, but every
    /// [`IDLE_TOUCH`] to mark the workers alive.
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
        // Nothing held, nothing running to cancel: the idle beat is one statement.
        let mut cancelled = 0;
        let requests = if self.held.is_empty() {
            Vec::new()
        } else {
            self.store.cancel_requests(&self.workers).await?
        };
        for id in requests {
            if self.held.stop(id, StopReason::Cancelled) {
                cancelled += 1;
            }
        }
        if self.touch_due() {
            self.store.touch_workers(&self.workers).await?;
        }
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
