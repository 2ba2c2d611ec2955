//! The pruner: deletes finished jobs, old events and stale workers past their retention.

use chrono::Utc;
use longshore_jobs::store::PruneLimits;
use longshore_jobs::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;

/// Rows deleted per statement, so no delete holds locks for long.
const BATCH: i64 = 5000;

/// What one pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Jobs deleted (with their attempts).
    pub jobs: u64,
    /// Events deleted.
    pub events: u64,
    /// Worker rows deleted.
    pub workers: u64,
    /// Expired idempotency keys and audit records deleted.
    pub control: u64,
}

/// Applies retention.
pub struct Pruner {
    store: Store,
    retention: RetentionConfig,
}

impl Pruner {
    /// A pruner applying `retention`.
    pub fn new(store: Store, retention: RetentionConfig) -> Self {
        Pruner { store, retention }
    }

    /// Deletes everything past retention, a batch at a time.
    pub async fn run_once(&self) -> Result<PruneReport, StoreError> {
        let now = Utc::now();
        let ago = |d: std::time::Duration| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
        };
        let limits = PruneLimits {
            finished_before: ago(self.retention.completed),
            discarded_before: ago(self.retention.discarded),
            events_before: ago(self.retention.events),
            batch: BATCH,
        };
        let mut report = PruneReport::default();
        loop {
            let pruned = self.store.prune(limits).await?;
            report.jobs += pruned.jobs;
            report.events += pruned.events;
            if pruned.jobs < BATCH as u64 && pruned.events < BATCH as u64 {
                break;
            }
        }
        report.workers = self.store.reap_workers(ago(self.retention.workers)).await?;
        report.control = self
            .store
            .prune_control(
                ago(self.retention.idempotency_keys),
                ago(self.retention.audit),
            )
            .await?;
        if report != PruneReport::default() {
            tracing::info!(
                jobs = report.jobs,
                events = report.events,
                workers = report.workers,
                control = report.control,
                "pruned"
            );
        }
        Ok(report)
    }

    /// Prunes every retention interval until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.retention.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(ticker.tick()).await.is_some() {
            if let Err(error) = self.run_once().await {
                tracing::warn!(%error, "prune pass failed; retrying at the next interval");
            }
        }
    }
}
