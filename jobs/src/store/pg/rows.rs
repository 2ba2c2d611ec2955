//! Reading Postgres rows into the model.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::StoreError;
use crate::event::Event;
use crate::id::{EventId, JobId};
use crate::job::{Attempt, ClaimedJob, Job};
use crate::state::JobState;

/// The columns [`job`] reads.
pub(super) const JOB_COLUMNS: &str = "id, queue, kind, args, priority, state, attempt, \
    max_attempts, run_at, created_at, attempted_at, finished_at, locked_by, lease_expires_at, \
    cancel_requested_at, unique_key, tags, metadata, result, last_error, timeout_ms";

pub(super) fn get<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(|e| StoreError::Corrupt {
        what: "row",
        detail: format!("column {column}: {e}"),
    })
}

pub(super) fn state(row: &PgRow, column: &'static str) -> Result<JobState, StoreError> {
    let name: String = get(row, column)?;
    name.parse()
        .map_err(|e: crate::state::UnknownState| StoreError::Corrupt {
            what: "job state",
            detail: e.to_string(),
        })
}

pub(super) fn job_id(row: &PgRow, column: &'static str) -> Result<JobId, StoreError> {
    get::<Uuid>(row, column).map(JobId)
}

pub(super) fn job(row: &PgRow) -> Result<Job, StoreError> {
    let Json(tags): Json<Vec<String>> = get(row, "tags")?;
    Ok(Job {
        id: job_id(row, "id")?,
        queue: get(row, "queue")?,
        kind: get(row, "kind")?,
        args: get(row, "args")?,
        priority: get(row, "priority")?,
        state: state(row, "state")?,
        attempt: get(row, "attempt")?,
        max_attempts: get(row, "max_attempts")?,
        run_at: get(row, "run_at")?,
        created_at: get(row, "created_at")?,
        attempted_at: get(row, "attempted_at")?,
        finished_at: get(row, "finished_at")?,
        locked_by: get(row, "locked_by")?,
        lease_expires_at: get(row, "lease_expires_at")?,
        cancel_requested_at: get(row, "cancel_requested_at")?,
        unique_key: get(row, "unique_key")?,
        tags,
        metadata: get(row, "metadata")?,
        result: get(row, "result")?,
        last_error: get(row, "last_error")?,
        timeout_ms: get(row, "timeout_ms")?,
    })
}

pub(super) fn claimed(row: &PgRow) -> Result<ClaimedJob, StoreError> {
    Ok(ClaimedJob {
        id: job_id(row, "id")?,
        queue: get(row, "queue")?,
        kind: get(row, "kind")?,
        args: get(row, "args")?,
        priority: get(row, "priority")?,
        attempt: get(row, "attempt")?,
        max_attempts: get(row, "max_attempts")?,
        created_at: get(row, "created_at")?,
        run_at: get(row, "run_at")?,
        timeout_ms: get(row, "timeout_ms")?,
        metadata: get(row, "metadata")?,
    })
}

pub(super) fn attempt(row: &PgRow) -> Result<Attempt, StoreError> {
    let chain: Option<Json<Vec<String>>> = get(row, "error_chain")?;
    Ok(Attempt {
        attempt: get(row, "attempt")?,
        worker: get(row, "worker")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        outcome: get(row, "outcome")?,
        error: get(row, "error")?,
        error_chain: chain.map(|Json(c)| c).unwrap_or_default(),
    })
}

pub(super) fn event(row: &PgRow) -> Result<Event, StoreError> {
    let state: Option<String> = get(row, "state")?;
    let at: DateTime<Utc> = get(row, "at")?;
    Ok(Event {
        id: EventId(get(row, "id")?),
        at,
        event_type: get(row, "type")?,
        job_id: get::<Option<Uuid>>(row, "job_id")?.map(JobId),
        queue: get(row, "queue")?,
        kind: get(row, "kind")?,
        state: state.and_then(|s| s.parse().ok()),
        attempt: get(row, "attempt")?,
        data: get(row, "data")?,
    })
}
