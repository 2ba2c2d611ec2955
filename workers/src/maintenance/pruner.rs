//! The pruner: deletes finished jobs, old events and pushes, stale workers, expired idempotency keys
//! and old audit records past their retention. It runs as jobs of kind `longshore.prune`,
//! fired by the built-in schedule `longshore:prune`, so maintenance shows in the API like
//! any other work (its results are the counts deleted) and runs once per tick however many
//! processes there are.

use chrono::Utc;
use longshore_jobs::EnqueueRequest;
use longshore_jobs::schedule::{CatchUp, Overlap, ScheduleDef};
use longshore_jobs::store::PruneLimits;
use longshore_jobs::{JobContext, JobError, JobResult, Kind, KindOptions};
use longshore_jobs::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::config::RetentionConfig;

/// Rows deleted per statement, so no delete holds locks for long.
const BATCH: i64 = 5000;

/// What one pass deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Jobs deleted (with their attempts).
    pub jobs: u64,
    /// Events deleted.
    pub events: u64,
    /// Pushes deleted.
    #[serde(default)]
    pub pushes: u64,
    /// Worker rows deleted.
    pub workers: u64,
    /// Expired idempotency keys and audit records deleted.
    pub control: u64,
    /// Users not seen within the longest active-users window, forgotten.
    #[serde(default)]
    pub users: u64,
}

/// Applies retention.
pub struct Pruner {
    store: Store,
    retention: RetentionConfig,
    activity: std::time::Duration,
}

impl Pruner {
    /// A pruner applying `retention`.
    pub fn new(store: Store, retention: RetentionConfig) -> Self {
        Pruner {
            store,
            retention,
            activity: longshore_jobs::activity::ActivityConfig::default().longest(),
        }
    }

    /// The same pruner keeping user sightings for `longest` (the longest active-users
    /// window).
    pub fn keeping_activity(self, longest: std::time::Duration) -> Self {
        Pruner {
            activity: longest,
            ..self
        }
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
        loop {
            let pushes = self
                .store
                .prune_pushes(ago(self.retention.pushes), BATCH)
                .await?;
            report.pushes += pushes;
            if pushes < BATCH as u64 {
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
        report.users = self.store.prune_activity(ago(self.activity)).await?;
        if report != PruneReport::default() {
            tracing::info!(
                users = report.users,
                jobs = report.jobs,
                events = report.events,
                pushes = report.pushes,
                workers = report.workers,
                control = report.control,
                "pruned"
            );
        }
        Ok(report)
    }
}

/// The queue of maintenance jobs, which every worker process works (one at a time) besides
/// its own queues, so maintenance runs whatever queues a deployment configures.
pub const MAINTENANCE_QUEUE: &str = "longshore";

/// The id of the built-in schedule that fires the pruner.
pub const SCHEDULE_ID: &str = longshore_jobs::schedule::PRUNE_SCHEDULE_ID;

/// The built-in schedule: at `retention.schedule`, in UTC; a missed tick fires once, and a
/// tick while a prune runs is skipped.
pub fn schedule(retention: &RetentionConfig) -> ScheduleDef {
    ScheduleDef {
        id: SCHEDULE_ID.to_owned(),
        cron: retention.schedule.clone(),
        timezone: "UTC".to_owned(),
        job: EnqueueRequest {
            kind: Prune::NAME.to_owned(),
            ..EnqueueRequest::default()
        },
        catch_up: CatchUp::Latest,
        catch_up_window: std::time::Duration::from_secs(3600),
        catch_up_cap: 1,
        overlap: Overlap::Skip,
        enabled: true,
    }
}

/// `longshore.prune`: one retention pass.
pub struct Prune(pub Pruner);

/// `{}`: a prune takes no arguments.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneArgs {}

impl Kind for Prune {
    const NAME: &'static str = "longshore.prune";
    type Args = PruneArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            queue: MAINTENANCE_QUEUE.to_owned(),
            // The next tick is the retry.
            max_attempts: 1,
            timeout: Some(std::time::Duration::from_secs(600)),
            ..KindOptions::default()
        }
    }

    async fn run(&self, _job: JobContext, _args: PruneArgs) -> JobResult {
        let report = self.0.run_once().await.map_err(JobError::retry)?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }
}
