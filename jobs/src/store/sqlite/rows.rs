//! Reading SQLite rows into the model: microsecond integers become times, text becomes JSON.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
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

fn corrupt(column: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "row",
        detail: format!("column {column}: {detail}"),
    }
}

pub(super) fn get<'r, T>(row: &'r SqliteRow, column: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(|e| corrupt(column, e))
}

pub(super) fn time(row: &SqliteRow, column: &'static str) -> Result<DateTime<Utc>, StoreError> {
    let us: i64 = get(row, column)?;
    DateTime::from_timestamp_micros(us).ok_or_else(|| corrupt(column, "time out of range"))
}

pub(super) fn opt_time(
    row: &SqliteRow,
    column: &'static str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let us: Option<i64> = get(row, column)?;
    us.map(|us| {
        DateTime::from_timestamp_micros(us).ok_or_else(|| corrupt(column, "time out of range"))
    })
    .transpose()
}

pub(super) fn json<T: serde::de::DeserializeOwned>(
    row: &SqliteRow,
    column: &'static str,
) -> Result<T, StoreError> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|e| corrupt(column, e))
}

pub(super) fn opt_json<T: serde::de::DeserializeOwned>(
    row: &SqliteRow,
    column: &'static str,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = get(row, column)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(column, e)))
        .transpose()
}

pub(super) fn job_id(row: &SqliteRow, column: &'static str) -> Result<JobId, StoreError> {
    get::<Uuid>(row, column).map(JobId)
}

pub(super) fn state(row: &SqliteRow, column: &'static str) -> Result<JobState, StoreError> {
    let name: String = get(row, column)?;
    name.parse()
        .map_err(|e: crate::state::UnknownState| corrupt(column, e))
}

pub(super) fn job(row: &SqliteRow) -> Result<Job, StoreError> {
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
    })
}

pub(super) fn claimed(row: &SqliteRow) -> Result<ClaimedJob, StoreError> {
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

pub(super) fn attempt(row: &SqliteRow) -> Result<Attempt, StoreError> {
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

pub(super) fn event(row: &SqliteRow) -> Result<Event, StoreError> {
    let state: Option<String> = get(row, "state")?;
    Ok(Event {
        id: EventId(get(row, "id")?),
        at: time(row, "at")?,
        event_type: get(row, "type")?,
        job_id: get::<Option<Uuid>>(row, "job_id")?.map(JobId),
        queue: get(row, "queue")?,
        kind: get(row, "kind")?,
        state: state.and_then(|s| s.parse().ok()),
        attempt: get(row, "attempt")?,
        data: opt_json(row, "data")?,
    })
}
