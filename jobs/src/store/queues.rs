//! Queues: pause and resume, a global concurrency limit, and the figures operators read.

use std::collections::BTreeMap;

use super::{Store, on_backend};
use crate::admin::QueueInfo;
use crate::error::StoreError;
use crate::state::JobState;

/// Per-queue figures as the backends read them; [`Store::queues`] assembles them.
#[derive(Debug, Default)]
pub(crate) struct QueueTotals {
    pub counts: BTreeMap<String, BTreeMap<JobState, i64>>,
    pub settings: BTreeMap<String, (bool, Option<i32>)>,
    pub oldest_available_s: BTreeMap<String, f64>,
    pub completed_last_minute: BTreeMap<String, i64>,
    pub workers: BTreeMap<String, i64>,
}

/// What an idle worker of a queue waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outlook {
    /// The queue is paused (resuming it wakes its workers).
    pub paused: bool,
    /// The earliest time a waiting job of the queue may run: past when a job is due that a
    /// claim did not take (a global limit, a sequence), `None` when no job waits.
    pub next_run_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Store {
    /// Whether the queue is paused and when its next waiting job may run.
    pub async fn queue_outlook(&self, queue: &str) -> Result<Outlook, StoreError> {
        on_backend!(self, s => s.queue_outlook(queue).await)
    }

    /// Stops workers from claiming jobs of `queue`.
    pub async fn pause_queue(&self, queue: &str) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_paused(queue, true).await)
    }

    /// Lets workers claim jobs of `queue` again.
    pub async fn resume_queue(&self, queue: &str) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_paused(queue, false).await)?;
        self.wakeups.job_available(queue);
        Ok(())
    }

    /// Sets (or with `None` removes) the limit of jobs of `queue` running at once across
    /// all workers.
    pub async fn set_queue_concurrency(
        &self,
        queue: &str,
        concurrency: Option<i32>,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_queue_concurrency(queue, concurrency).await)?;
        self.wakeups.job_available(queue);
        Ok(())
    }

    /// Every queue that has jobs, settings or workers, with its figures.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, StoreError> {
        let mut totals = on_backend!(self, s => s.queue_totals().await)?;
        let mut names: Vec<String> = totals.counts.keys().cloned().collect();
        names.extend(totals.settings.keys().cloned());
        names.extend(totals.workers.keys().cloned());
        names.sort();
        names.dedup();
        Ok(names
            .into_iter()
            .map(|name| {
                let (paused, concurrency) =
                    totals.settings.get(&name).copied().unwrap_or((false, None));
                QueueInfo {
                    paused,
                    concurrency,
                    counts: totals.counts.remove(&name).unwrap_or_default(),
                    oldest_available_s: totals.oldest_available_s.get(&name).copied(),
                    completed_last_minute: totals
                        .completed_last_minute
                        .get(&name)
                        .copied()
                        .unwrap_or(0),
                    workers: totals.workers.get(&name).copied().unwrap_or(0),
                    name,
                }
            })
            .collect())
    }
}
