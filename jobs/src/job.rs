//! The job model: stored jobs, jobs about to be inserted, their attempts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::JobId;
use crate::state::JobState;

/// A stored job, as read back from the store.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    /// Time-ordered id.
    pub id: JobId,
    /// The queue it runs on.
    pub queue: String,
    /// The kind that handles it.
    pub kind: String,
    /// The handler's input.
    pub args: serde_json::Value,
    /// 0 runs first, 9 last.
    pub priority: i16,
    /// Where the job is in its life.
    pub state: JobState,
    /// Attempts started so far.
    pub attempt: i32,
    /// Attempts allowed before it is discarded.
    pub max_attempts: i32,
    /// When it may run next.
    pub run_at: DateTime<Utc>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// The worker holding its lease while it runs.
    pub locked_by: Option<String>,
    /// When the running attempt's lease ends unless it is extended.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When an operator asked a running job to stop.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// The uniqueness key the enqueuer gave.
    pub unique_key: Option<String>,
    /// Labels for filtering.
    pub tags: Vec<String>,
    /// Free-form metadata (trace context, origin).
    pub metadata: serde_json::Value,
    /// The handler's result once completed.
    pub result: Option<serde_json::Value>,
    /// The latest attempt's error message.
    pub last_error: Option<String>,
    /// Per-attempt time limit in milliseconds.
    pub timeout_ms: Option<i64>,
    /// The sequence it runs in: jobs of one key run one at a time, in enqueue order.
    pub sequence: Option<String>,
}

/// A job claimed by a worker: what the handler needs, plus the lease it runs under.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    /// The job's id.
    pub id: JobId,
    /// The queue it was claimed from.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// The handler's input.
    pub args: serde_json::Value,
    /// Priority.
    pub priority: i16,
    /// This attempt's number, from 1; with the worker id it fences the completion.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it became runnable.
    pub run_at: DateTime<Utc>,
    /// Per-attempt time limit in milliseconds.
    pub timeout_ms: Option<i64>,
    /// Metadata.
    pub metadata: serde_json::Value,
}

/// An attempt's hold on its job, the fencing token: an outcome, progress or a hand-back
/// counts only while this is the job's current attempt under this worker's lease. A worker
/// that lost the lease (it froze, and the job was rescued) changes nothing with it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The job.
    pub job: JobId,
    /// The attempt, from 1.
    pub attempt: i32,
    /// The worker that claimed it.
    pub worker: crate::id::WorkerId,
}

impl ClaimedJob {
    /// This attempt's lease, held by `worker`.
    pub fn lease(&self, worker: &crate::id::WorkerId) -> Lease {
        Lease {
            job: self.id,
            attempt: self.attempt,
            worker: worker.clone(),
        }
    }
}

/// How far a unique key reaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UniqueScope {
    /// No other job with the key may be scheduled, available, running or retryable; the key is
    /// free again once the job is completed, cancelled or discarded.
    #[default]
    Active,
    /// No other job with the key may exist in any state, until the job is pruned.
    Any,
}

impl UniqueScope {
    /// The name stored in SQL.
    pub const fn as_str(self) -> &'static str {
        match self {
            UniqueScope::Active => "active",
            UniqueScope::Any => "any",
        }
    }
}

/// Uniqueness for a job: at most one job holds a key at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueOptions {
    /// The key, chosen by the caller (`welcome:user-42`, say): 1 to 512 bytes.
    pub key: String,
    /// Which states hold the key. Defaults to [`UniqueScope::Active`].
    #[serde(default)]
    pub scope: UniqueScope,
    /// When set, the key is held per window of this length (e.g. one job per hour).
    /// Defaults to none.
    #[serde(default, with = "opt_secs")]
    pub window: Option<Duration>,
}

impl UniqueOptions {
    /// Uniqueness by an explicit key, among active jobs.
    pub fn key(key: impl Into<String>) -> Self {
        UniqueOptions {
            key: key.into(),
            scope: UniqueScope::Active,
            window: None,
        }
    }

    /// The value the unique index enforces: the key, plus the window's start when windowed.
    pub fn slot(&self, now: DateTime<Utc>) -> String {
        match self.window {
            Some(window) if window.as_secs() > 0 => {
                let secs = window.as_secs() as i64;
                let start = now.timestamp().div_euclid(secs) * secs;
                format!("{}@{start}", self.key)
            }
            _ => self.key.clone(),
        }
    }
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

/// When a new job may first run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RunAt {
    /// As soon as a worker is free.
    #[default]
    Now,
    /// After a delay from the moment it is stored (measured by the database's clock).
    After(Duration),
    /// At a point in time.
    At(DateTime<Utc>),
}

/// A validated job ready to be stored. Build one through [`crate::Client`], which applies the
/// kind's defaults and checks every field.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    /// The id it will have.
    pub id: JobId,
    /// Queue name.
    pub queue: String,
    /// Kind name.
    pub kind: String,
    /// Args.
    pub args: serde_json::Value,
    /// Priority.
    pub priority: i16,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When it may first run.
    pub run_at: RunAt,
    /// The unique key as given, the enforced slot and its scope.
    pub unique: Option<(String, String, UniqueScope)>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata object.
    pub metadata: serde_json::Value,
    /// Per-attempt time limit in milliseconds.
    pub timeout_ms: Option<i64>,
    /// The sequence it runs in, one job of the key at a time.
    pub sequence: Option<String>,
}

impl NewJob {
    /// The delay in milliseconds and absolute time, as bound into SQL.
    pub(crate) fn run_at_parts(&self) -> (i64, Option<DateTime<Utc>>) {
        match self.run_at {
            RunAt::Now => (0, None),
            RunAt::After(d) => (crate::limits::bounded(d).as_millis() as i64, None),
            RunAt::At(t) => (0, Some(t)),
        }
    }
}

/// The answer to an enqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The job's id: the new job's, or the existing job's for a duplicate.
    pub id: JobId,
    /// The job's state right after the enqueue.
    pub state: JobState,
    /// True when a job with the same unique key already existed and no job was added.
    pub duplicate: bool,
}

impl Enqueued {
    /// A job the enqueue stored, in `state`.
    pub(crate) fn stored(id: JobId, state: JobState) -> Self {
        Enqueued {
            id,
            state,
            duplicate: false,
        }
    }

    /// The job `id`, in `state`, that held the unique slot, so nothing was stored.
    pub(crate) fn duplicate_of(id: JobId, state: JobState) -> Self {
        Enqueued {
            id,
            state,
            duplicate: true,
        }
    }
}

/// One attempt of a job, as kept in its history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attempt {
    /// The attempt's number.
    pub attempt: i32,
    /// The worker that ran it.
    pub worker: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How it ended: completed, failed, discarded, cancelled, snoozed, lost, interrupted.
    pub outcome: String,
    /// The error message, if it failed.
    pub error: Option<String>,
    /// The error's sources, outermost first.
    pub error_chain: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windowed_slots_change_at_window_boundaries() {
        let unique = UniqueOptions {
            key: "report".into(),
            scope: UniqueScope::Any,
            window: Some(Duration::from_secs(60)),
        };
        let t0 = DateTime::from_timestamp(120, 0).unwrap();
        let t1 = DateTime::from_timestamp(179, 0).unwrap();
        let t2 = DateTime::from_timestamp(180, 0).unwrap();
        assert_eq!(unique.slot(t0), unique.slot(t1));
        assert_ne!(unique.slot(t1), unique.slot(t2));
        assert_eq!(UniqueOptions::key("k").slot(t0), "k");
    }
}
