//! The outbox: every state change writes an event in the same transaction.
//!
//! Event types are `{subject}.{what happened}`; `state` carries the job's new state.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::id::{EventId, JobId};
use crate::state::JobState;

/// A job was stored (state `available` or `scheduled`).
pub const JOB_ENQUEUED: &str = "job.enqueued";
/// A worker claimed the job and an attempt started.
pub const JOB_STARTED: &str = "job.started";
/// The handler succeeded.
pub const JOB_COMPLETED: &str = "job.completed";
/// The attempt failed; the job waits for its backoff (`retryable`).
pub const JOB_FAILED: &str = "job.failed";
/// The job failed for good.
pub const JOB_DISCARDED: &str = "job.discarded";
/// The job was cancelled.
pub const JOB_CANCELLED: &str = "job.cancelled";
/// An operator asked a running job to stop.
pub const JOB_CANCEL_REQUESTED: &str = "job.cancel_requested";
/// The handler asked to run again later without consuming an attempt.
pub const JOB_SNOOZED: &str = "job.snoozed";
/// The attempt was stopped by a shutdown and handed back without consuming an attempt.
pub const JOB_INTERRUPTED: &str = "job.interrupted";
/// A claimed job that never started was handed back at shutdown.
pub const JOB_RELEASED: &str = "job.released";
/// The job's lease expired (its worker died) and it was rescued.
pub const JOB_RESCUED: &str = "job.rescued";
/// An operator retried the job.
pub const JOB_RETRIED: &str = "job.retried";
/// An operator deleted a job that was not running.
pub const JOB_DELETED: &str = "job.deleted";
/// An operator edited a waiting job.
pub const JOB_UPDATED: &str = "job.updated";
/// An operator made a scheduled or retrying job run now.
pub const JOB_PROMOTED: &str = "job.promoted";
/// A queue got a global concurrency limit, or lost it.
pub const QUEUE_UPDATED: &str = "queue.updated";
/// A schedule's tick enqueued its job.
pub const SCHEDULE_FIRED: &str = "schedule.fired";
/// A tick was skipped: the previous fire's job had not finished (overlap `skip`).
pub const SCHEDULE_SKIPPED: &str = "schedule.skipped";
/// Ticks missed during downtime were dropped by the catch-up policy.
pub const SCHEDULE_MISSED: &str = "schedule.missed";
/// A sweep pass finished a page; `data` holds the pass's counts so far.
pub const SWEEP_PAGE: &str = "sweep.page";
/// A sweep pass ended (complete, or stopped by its budget); `data` holds its counts.
pub const SWEEP_FINISHED: &str = "sweep.finished";
/// A queue was paused.
pub const QUEUE_PAUSED: &str = "queue.paused";
/// A queue was resumed.
pub const QUEUE_RESUMED: &str = "queue.resumed";

/// One event from the outbox.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Monotonic id; resume after it to get every later event.
    pub id: EventId,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// What happened, e.g. `job.completed`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The job it concerns.
    pub job_id: Option<JobId>,
    /// The queue it concerns.
    pub queue: Option<String>,
    /// The job's kind.
    pub kind: Option<String>,
    /// The job's state after the change.
    pub state: Option<JobState>,
    /// The job's attempt after the change.
    pub attempt: Option<i32>,
    /// Details, e.g. the error of a failed attempt.
    pub data: Option<serde_json::Value>,
}
