//! The `jobs` table's reads: one job, its attempts, lists and counts by filter, and a running
//! job's progress. The moves operators make are in `job_moves`; claims and outcomes, the hot
//! path, are each backend's own.

use std::collections::BTreeMap;

use sqlx::QueryBuilder;
use sqlx::types::Json;

use super::dialect::{Backend, Db};
use super::filter::{newest_first, push_filter};
use super::rows;
use super::{Fetch, Run};
use crate::admin::JobFilter;
use crate::error::StoreError;
use crate::id::JobId;
use crate::job::{Attempt, Job, Lease};
use crate::state::JobState;

impl Backend {
    pub(crate) async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {} FROM jobs WHERE id = $1", rows::JOB_COLUMNS);
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .optional(self.reader(), "read job")
            .await?;
        row.as_ref().map(rows::job).transpose()
    }

    pub(crate) async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query::<Db>(
            "SELECT attempt, worker, started_at, finished_at, outcome, error, error_chain \
             FROM job_attempts WHERE job_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .all(self.reader(), "read attempts")
        .await?;
        rows.iter().map(rows::attempt).collect()
    }

    pub(crate) async fn list_jobs(
        &self,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let mut qb = newest_first(rows::JOB_COLUMNS, filter, before, limit);
        let rows = qb.build().all(self.reader(), "list jobs").await?;
        rows.iter().map(rows::job).collect()
    }

    pub(crate) async fn job_ids(
        &self,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<JobId>, StoreError> {
        let mut qb = newest_first("id", filter, before, limit);
        let rows = qb.build().all(self.reader(), "list job ids").await?;
        rows.iter().map(|r| rows::job_id(r, "id")).collect()
    }

    pub(crate) async fn count_jobs(&self, filter: &JobFilter) -> Result<i64, StoreError> {
        let mut qb = QueryBuilder::<Db>::new("SELECT count(*) AS n FROM jobs");
        push_filter(&mut qb, filter);
        let row = qb.build().one(self.reader(), "count jobs").await?;
        rows::get(&row, "n")
    }

    pub(crate) async fn count_by_state(
        &self,
        queue: Option<&str>,
    ) -> Result<BTreeMap<JobState, i64>, StoreError> {
        let rows = sqlx::query::<Db>(
            "SELECT state, count(*) AS n FROM jobs WHERE ($1 IS NULL OR queue = $1) \
             GROUP BY state",
        )
        .bind(queue)
        .all(self.reader(), "count jobs")
        .await?;
        rows.iter()
            .map(|row| Ok((rows::state(row, "state")?, rows::get::<i64>(row, "n")?)))
            .collect()
    }

    pub(crate) async fn next_lease_expiry(
        &self,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        self.earliest(
            "SELECT min(lease_expires_at) FROM jobs WHERE state = 'running'",
            "read the next lease expiry",
        )
        .await
    }

    pub(crate) async fn job_progress(
        &self,
        id: JobId,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let progress = sqlx::query_scalar::<Db, Option<Json<serde_json::Value>>>(
            "SELECT progress FROM jobs WHERE id = $1",
        )
        .bind(id.0)
        .optional(self.reader(), "read progress")
        .await?;
        Ok(progress.flatten().map(|p| p.0))
    }

    pub(crate) async fn save_progress(
        &self,
        lease: &Lease,
        progress: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        save_progress_on(self.writer(), lease, progress).await
    }
}

/// Stores a running job's progress on `executor` (a transaction of the caller's, or a pool),
/// while `lease` holds; false when it does not.
pub(crate) async fn save_progress_on<'c, E>(
    executor: E,
    lease: &Lease,
    progress: &serde_json::Value,
) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    let done = sqlx::query::<Db>(
        "UPDATE jobs SET progress = $4 WHERE id = $1 AND attempt = $2 AND locked_by = $3 \
           AND state = 'running'",
    )
    .bind(lease.job.0)
    .bind(lease.attempt)
    .bind(lease.worker.as_str())
    .bind(Json(progress))
    .run(executor, "save progress")
    .await?;
    Ok(done == 1)
}
