//! What a worker reports after an attempt, and how each outcome moves the job.

use std::time::Duration;

use crate::event;
use crate::job::Lease;
use crate::kind::ErrorReport;
use crate::state::JobState;

/// The end of one attempt, reported by the worker that held the lease.
///
/// The store accepts it only if the job is still `running` under the same attempt and worker:
/// a late report from a worker whose lease was taken over changes nothing.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The attempt being reported, and who ran it.
    pub lease: Lease,
    /// The job's queue.
    pub queue: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The handler succeeded, with an optional result.
    Completed {
        /// Stored as the job's result.
        result: Option<serde_json::Value>,
    },
    /// The attempt failed; run again after `delay`.
    Retry {
        /// The stored backoff.
        delay: Duration,
        /// Why it failed.
        error: ErrorReport,
    },
    /// The job failed for good.
    Discard {
        /// Why.
        error: ErrorReport,
    },
    /// The handler cancelled the job, or an operator's cancel took effect.
    Cancel {
        /// Why.
        reason: ErrorReport,
    },
    /// Run again after `delay` without consuming an attempt.
    Snooze {
        /// How long to wait.
        delay: Duration,
    },
    /// A shutdown stopped the attempt: run again at once without consuming an attempt.
    Interrupted,
}

impl Outcome {
    /// The job's state after this outcome.
    pub fn state(&self) -> JobState {
        match self {
            Outcome::Completed { .. } => JobState::Completed,
            Outcome::Retry { .. } => JobState::Retryable,
            Outcome::Discard { .. } => JobState::Discarded,
            Outcome::Cancel { .. } => JobState::Cancelled,
            Outcome::Snooze { .. } => JobState::Scheduled,
            Outcome::Interrupted => JobState::Available,
        }
    }

    /// The name kept in the attempt history.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Completed { .. } => "completed",
            Outcome::Retry { .. } => "failed",
            Outcome::Discard { .. } => "discarded",
            Outcome::Cancel { .. } => "cancelled",
            Outcome::Snooze { .. } => "snoozed",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// The event written for this outcome.
    pub fn event_type(&self) -> &'static str {
        match self {
            Outcome::Completed { .. } => event::JOB_COMPLETED,
            Outcome::Retry { .. } => event::JOB_FAILED,
            Outcome::Discard { .. } => event::JOB_DISCARDED,
            Outcome::Cancel { .. } => event::JOB_CANCELLED,
            Outcome::Snooze { .. } => event::JOB_SNOOZED,
            Outcome::Interrupted => event::JOB_INTERRUPTED,
        }
    }

    /// Whether the attempt counts against `max_attempts`.
    pub fn consumes_attempt(&self) -> bool {
        !matches!(self, Outcome::Snooze { .. } | Outcome::Interrupted)
    }

    /// How long until the job may run again, in milliseconds (0 when it does not wait).
    pub fn delay_ms(&self) -> i64 {
        match self {
            Outcome::Retry { delay, .. } | Outcome::Snooze { delay } => {
                crate::limits::bounded(*delay).as_millis() as i64
            }
            _ => 0,
        }
    }

    /// The error kept with the attempt.
    pub fn error(&self) -> Option<&ErrorReport> {
        match self {
            Outcome::Retry { error, .. } | Outcome::Discard { error } => Some(error),
            Outcome::Cancel { reason } => Some(reason),
            _ => None,
        }
    }

    /// The result to store.
    pub fn result(&self) -> Option<&serde_json::Value> {
        match self {
            Outcome::Completed { result } => result.as_ref(),
            _ => None,
        }
    }
}
