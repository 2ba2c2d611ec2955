//! What operators read and do to jobs: one job and its attempts, lists and counts by filter,
//! cancel, retry, run now, edit, delete, and retention.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Store, on_backend};
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

impl Store {
    /// One job.
    pub async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        on_backend!(self, s => s.job(id).await)
    }

    /// The attempts of a job, oldest first.
    pub async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>, StoreError> {
        on_backend!(self, s => s.attempts(id).await)
    }

    /// Jobs matching `filter`, newest first, older than `before` when given.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        on_backend!(self, s => s.list_jobs(filter, before, limit).await)
    }

    /// Ids of jobs matching `filter`, newest first, older than `before` when given.
    pub async fn job_ids(
        &self,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<JobId>, StoreError> {
        on_backend!(self, s => s.job_ids(filter, before, limit).await)
    }

    /// How many jobs match `filter`.
    pub async fn count_jobs(&self, filter: &JobFilter) -> Result<i64, StoreError> {
        on_backend!(self, s => s.count_jobs(filter).await)
    }

    /// Jobs counted by state, optionally for one queue.
    pub async fn count_by_state(
        &self,
        queue: Option<&str>,
    ) -> Result<BTreeMap<JobState, i64>, StoreError> {
        on_backend!(self, s => s.count_by_state(queue).await)
    }

    /// Cancels a waiting job at once, or asks the worker of a running one to stop it.
    pub async fn cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError> {
        let outcome = on_backend!(self, s => s.cancel(id).await)?;
        if outcome == CancelOutcome::Requested {
            self.wakeups.cancel_requested(id);
        }
        Ok(outcome)
    }

    /// Makes a job that is not running available now. An exhausted job gets one more attempt.
    pub async fn retry(&self, id: JobId) -> Result<Job, StoreError> {
        let job = on_backend!(self, s => s.retry(id).await)?;
        self.wakeups.job_available(&job.queue);
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
        if job.state == JobState::Available {
            self.wakeups.job_available(&job.queue);
        }
        Ok(job)
    }

    /// Deletes a job that is not running, with its attempts.
    pub async fn delete_job(&self, id: JobId) -> Result<(), StoreError> {
        on_backend!(self, s => s.delete_job(id).await)
    }

    /// Deletes finished jobs and old events past their retention, a batch at a time.
    pub async fn prune(&self, limits: PruneLimits) -> Result<Pruned, StoreError> {
        on_backend!(self, s => s.prune(limits).await)
    }
}
