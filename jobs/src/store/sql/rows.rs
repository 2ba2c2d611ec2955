//! Reading rows into the model, one codec over both backends' row types.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::Row as _;
use sqlx::types::Json;
use uuid::Uuid;

use super::dialect::{Backend, Db, Row};
use crate::error::StoreError;
use crate::event::Event;
use crate::id::{EventId, JobId};
use crate::job::{Attempt, ClaimedJob, Job};
use crate::state::JobState;
use crate::store::codec::Time;

/// The columns [`job`] reads.
pub(crate) const JOB_COLUMNS: &str = "id, queue, kind, args, priority, state, attempt, \
    max_attempts, run_at, created_at, attempted_at, finished_at, locked_by, lease_expires_at, \
    cancel_requested_at, unique_key, tags, metadata, result, last_error, timeout_ms, sequence";

/// The columns [`event`] reads.
pub(crate) const EVENT_COLUMNS: &str = "id, at, type, job_id, queue, kind, state, attempt, data";

pub(crate) fn corrupt(column: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "row",
        detail: format!("column {column}: {detail}"),
    }
}

pub(crate) fn get<'r, T>(row: &'r Row, column: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Db> + sqlx::Type<Db>,
{
    row.try_get(column).map_err(|e| corrupt(column, e))
}

pub(crate) fn time(row: &Row, column: &'static str) -> Result<DateTime<Utc>, StoreError> {
    get::<Time>(row, column).map(|t| t.0)
}

pub(crate) fn opt_time(
    row: &Row,
    column: &'static str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<Time>>(row, column).map(|t| t.map(|t| t.0))
}

pub(crate) fn json<T: DeserializeOwned>(row: &Row, column: &'static str) -> Result<T, StoreError> {
    get::<Json<T>>(row, column).map(|j| j.0)
}

pub(crate) fn opt_json<T: DeserializeOwned>(
    row: &Row,
    column: &'static str,
) -> Result<Option<T>, StoreError> {
    get::<Option<Json<T>>>(row, column).map(|j| j.map(|j| j.0))
}

pub(crate) fn job_id(row: &Row, column: &'static str) -> Result<JobId, StoreError> {
    get::<Uuid>(row, column).map(JobId)
}

pub(crate) fn opt_job_id(row: &Row, column: &'static str) -> Result<Option<JobId>, StoreError> {
    get::<Option<Uuid>>(row, column).map(|id| id.map(JobId))
}

pub(crate) fn state(row: &Row, column: &'static str) -> Result<JobState, StoreError> {
    let name: String = get(row, column)?;
    name.parse()
        .map_err(|e: crate::state::UnknownState| corrupt(column, e))
}

pub(crate) fn job(row: &Row) -> Result<Job, StoreError> {
    Ok(Job {
        id: job_id(row, "id")?,
        queue: get(row, "queue")?,
        kind: get(row, "kind")?,
        args: json(row, "args")?,
        priority: get(row, "priority")?,
        state: state(row, "state")?,
        attempt: get(row, "attempt")?,
        max_attempts: get(row, "max_attempts")?,
        run_at: time(row, "run_at")?,
        created_at: time(row, "created_at")?,
        attempted_at: opt_time(row, "attempted_at")?,
        finished_at: opt_time(row, "finished_at")?,
        locked_by: get(row, "locked_by")?,
        lease_expires_at: opt_time(row, "lease_expires_at")?,
        cancel_requested_at: opt_time(row, "cancel_requested_at")?,
        unique_key: get(row, "unique_key")?,
        tags: json(row, "tags")?,
        metadata: json(row, "metadata")?,
        result: opt_json(row, "result")?,
        last_error: get(row, "last_error")?,
        timeout_ms: get(row, "timeout_ms")?,
        sequence: get(row, "sequence")?,
    })
}

pub(crate) fn accepted(row: &Row) -> Result<crate::store::Accepted, StoreError> {
    Ok(crate::store::Accepted {
        id: job_id(row, "id")?,
        sequenced: get(row, "sequenced")?,
    })
}

pub(crate) fn claimed(row: &Row) -> Result<ClaimedJob, StoreError> {
    Ok(ClaimedJob {
        id: job_id(row, "id")?,
        queue: get(row, "queue")?,
        kind: get(row, "kind")?,
        args: json(row, "args")?,
        priority: get(row, "priority")?,
        attempt: get(row, "attempt")?,
        max_attempts: get(row, "max_attempts")?,
        created_at: time(row, "created_at")?,
        run_at: time(row, "run_at")?,
        timeout_ms: get(row, "timeout_ms")?,
        metadata: json(row, "metadata")?,
    })
}

pub(crate) fn attempt(row: &Row) -> Result<Attempt, StoreError> {
    Ok(Attempt {
        attempt: get(row, "attempt")?,
        worker: get(row, "worker")?,
        started_at: time(row, "started_at")?,
        finished_at: time(row, "finished_at")?,
        outcome: get(row, "outcome")?,
        error: get(row, "error")?,
        error_chain: opt_json(row, "error_chain")?.unwrap_or_default(),
    })
}

pub(crate) fn event(row: &Row) -> Result<Event, StoreError> {
    let state: Option<String> = get(row, "state")?;
    Ok(Event {
        id: EventId(get(row, "id")?),
        at: time(row, "at")?,
        event_type: get(row, "type")?,
        job_id: opt_job_id(row, "job_id")?,
        queue: get(row, "queue")?,
        kind: get(row, "kind")?,
        state: state.and_then(|s| s.parse().ok()),
        attempt: get(row, "attempt")?,
        data: opt_json(row, "data")?,
    })
}

impl Backend {
    /// The one time a `SELECT min(…)` reads (`None` when no row matches), as the store's
    /// waits need it: the next lease to end, the next tick.
    pub(crate) async fn earliest(
        &self,
        sql: &'static str,
        op: &'static str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at = sqlx::query_scalar::<Db, Option<crate::store::codec::Time>>(sql)
            .fetch_one(self.reader())
            .await
            .map_err(crate::error::query(op))?;
        Ok(at.map(|t| t.0))
    }
}
