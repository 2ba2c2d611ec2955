//! What operators read and do to jobs: one job and its attempts, lists and counts by filter,
//! cancel, retry, run now, edit, delete, and retention.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Store, dispatch, on_backend};
use crate::admin::{JobEdit, JobFilter};
use crate::error::StoreError;
use crate::id::JobId;
use crate::job::{Attempt, Job};
use crate::state::JobState;

/// What a cancel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was waiting and is now `cancelled`.
    Cancelled,
    /// The job is running; its worker was asked to stop it.
    Requested,
}

/// Retention limits for [`Store::prune`].
#[derive(Clone, Copy, Debug)]
pub struct PruneLimits {
    /// Completed and cancelled jobs finished before this are deleted.
    pub finished_before: DateTime<Utc>,
    /// Discarded jobs finished before this are deleted.
    pub discarded_before: DateTime<Utc>,
    /// Events written before this are deleted.
    pub events_before: DateTime<Utc>,
    /// Rows deleted per statement.
    pub batch: i64,
}

/// Rows deleted by [`Store::prune`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Jobs deleted.
    pub jobs: u64,
    /// Events deleted.
    pub events: u64,
}

dispatch! {
    /// One job.
    fn job(&self, id: JobId) -> Option<Job>;
    /// The attempts of a job, oldest first.
    fn attempts(&self, id: JobId) -> Vec<Attempt>;
    /// Jobs matching `filter`, newest first, older than `before` when given.
    fn list_jobs(&self, filter: &JobFilter, before: Option<JobId>, limit: u32) -> Vec<Job>;
    /// Ids of jobs matching `filter`, newest first, older than `before` when given.
    fn job_ids(&self, filter: &JobFilter, before: Option<JobId>, limit: u32) -> Vec<JobId>;
    /// How many jobs match `filter`.
    fn count_jobs(&self, filter: &JobFilter) -> i64;
    /// Jobs counted by state, optionally for one queue.
    fn count_by_state(&self, queue: Option<&str>) -> BTreeMap<JobState, i64>;
    /// Deletes a job that is not running, with its attempts.
    fn delete_job(&self, id: JobId) -> ();
    /// Deletes finished jobs and old events past their retention, a batch at a time.
    fn prune(&self, limits: PruneLimits) -> Pruned;
}

impl Store {
    /// Cancels a waiting job at once, or asks the worker of a running one to stop it.
    pub async fn cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError> {
        let outcome = on_backend!(self, s => s.cancel(id).await)?;
        if outcome == CancelOutcome::Requested {
            self.wakeups.cancel_requested(id);
        }
        Ok(outcome)
    }

    /// Makes a job that is not running available now. An exhausted job gets one more attempt.
    /// A child whose parent (`metadata.parent`, a lifecycle cascade's step) failed because of
    /// it revives the parent too, so that retrying the failed step finishes the whole.
    pub async fn retry(&self, id: JobId) -> Result<Job, StoreError> {
        let job = on_backend!(self, s => s.retry(id).await)?;
        self.wakeups.job_available(&job.queue);
        let parent = job
            .metadata
            .get("parent")
            .and_then(|p| p.as_str()?.parse().ok());
        if let Some(parent) = parent.map(JobId) {
            let failed = self.job(parent).await?;
            if failed.is_some_and(|p| p.state == JobState::Discarded) {
                let parent = on_backend!(self, s => s.retry(parent).await)?;
                self.wakeups.job_available(&parent.queue);
            }
        }
        Ok(job)
    }

    /// Makes a scheduled or retrying job available now.
    pub async fn promote_job(&self, id: JobId) -> Result<Job, StoreError> {
        let job = on_backend!(self, s => s.promote_job(id).await)?;
        self.wakeups.job_available(&job.queue);
        Ok(job)
    }

    /// Changes a waiting job.
    pub async fn edit_job(&self, id: JobId, edit: &JobEdit) -> Result<Job, StoreError> {
        let job = on_backend!(self, s => s.edit_job(id, edit).await)?;
        // A new run_at may be sooner than the one its queue's idle workers wait for.
        if job.state.is_pending() {
            self.wakeups.job_available(&job.queue);
        }
        Ok(job)
    }
}
