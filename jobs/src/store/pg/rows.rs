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

/// A `timestamptz` read without panicking: sqlx's own decoder panics on values chrono cannot
/// hold ('infinity', or beyond year 262143), which would drop the connection of every request
/// that reads such a row. Here they are a [`StoreError::Corrupt`] naming the column.
struct Timestamp(DateTime<Utc>);

/// Microseconds from the Unix epoch to Postgres's (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

impl sqlx::Type<sqlx::Postgres> for Timestamp {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <DateTime<Utc> as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <DateTime<Utc> as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Timestamp {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        use sqlx::postgres::PgValueFormat;
        match value.format() {
            PgValueFormat::Binary => {
                let bytes: [u8; 8] = value
                    .as_bytes()?
                    .try_into()
                    .map_err(|_| "a timestamptz is 8 bytes")?;
                let micros = i64::from_be_bytes(bytes);
                micros
                    .checked_add(PG_EPOCH_UNIX_MICROS)
                    .and_then(DateTime::from_timestamp_micros)
                    .map(Timestamp)
                    .ok_or_else(|| "time out of range".into())
            }
            // Text comes only from simple queries; chrono's parser fails rather than panics.
            PgValueFormat::Text => {
                <DateTime<chrono::FixedOffset> as sqlx::Decode<sqlx::Postgres>>::decode(value)
                    .map(|t| Timestamp(t.with_timezone(&Utc)))
            }
        }
    }
}

/// A time column.
pub(super) fn time(row: &PgRow, column: &'static str) -> Result<DateTime<Utc>, StoreError> {
    get::<Timestamp>(row, column).map(|t| t.0)
}

/// A time column that may be NULL.
pub(super) fn opt_time(
    row: &PgRow,
    column: &'static str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<Timestamp>>(row, column).map(|t| t.map(|t| t.0))
}

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
        run_at: time(row, "run_at")?,
        created_at: time(row, "created_at")?,
        attempted_at: opt_time(row, "attempted_at")?,
        finished_at: opt_time(row, "finished_at")?,
        locked_by: get(row, "locked_by")?,
        lease_expires_at: opt_time(row, "lease_expires_at")?,
        cancel_requested_at: opt_time(row, "cancel_requested_at")?,
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
        created_at: time(row, "created_at")?,
        run_at: time(row, "run_at")?,
        timeout_ms: get(row, "timeout_ms")?,
        metadata: get(row, "metadata")?,
    })
}

pub(super) fn attempt(row: &PgRow) -> Result<Attempt, StoreError> {
    let chain: Option<Json<Vec<String>>> = get(row, "error_chain")?;
    Ok(Attempt {
        attempt: get(row, "attempt")?,
        worker: get(row, "worker")?,
        started_at: time(row, "started_at")?,
        finished_at: time(row, "finished_at")?,
        outcome: get(row, "outcome")?,
        error: get(row, "error")?,
        error_chain: chain.map(|Json(c)| c).unwrap_or_default(),
    })
}

pub(super) fn event(row: &PgRow) -> Result<Event, StoreError> {
    let state: Option<String> = get(row, "state")?;
    let at = time(row, "at")?;
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
