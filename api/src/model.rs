//! The API's resources, as the spec declares them, and their conversions from the model.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use longshore_jobs::admin::{
    AuditEntry, BulkAction, Operation, QueueInfo, Scope, TokenRow, WorkerRow,
};
use longshore_jobs::{Attempt, Event, Job, JobState};
use poem_openapi::{Enum, Object};
use uuid::Uuid;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its run time.
    Scheduled,
    /// Ready to be claimed.
    Available,
    /// Claimed by a worker, under a lease.
    Running,
    /// Failed; waiting for its backoff before another attempt.
    Retryable,
    /// Finished successfully.
    Completed,
    /// Stopped by an operator or by its handler.
    Cancelled,
    /// Failed for good: attempts used up or a fatal error.
    Discarded,
}

impl From<JobState> for State {
    fn from(state: JobState) -> State {
        match state {
            JobState::Scheduled => State::Scheduled,
            JobState::Available => State::Available,
            JobState::Running => State::Running,
            JobState::Retryable => State::Retryable,
            JobState::Completed => State::Completed,
            JobState::Cancelled => State::Cancelled,
            JobState::Discarded => State::Discarded,
        }
    }
}

impl From<State> for JobState {
    fn from(state: State) -> JobState {
        match state {
            State::Scheduled => JobState::Scheduled,
            State::Available => JobState::Available,
            State::Running => JobState::Running,
            State::Retryable => JobState::Retryable,
            State::Completed => JobState::Completed,
            State::Cancelled => JobState::Cancelled,
            State::Discarded => JobState::Discarded,
        }
    }
}

/// A job.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct JobView {
    /// Time-ordered id (UUIDv7).
    pub id: Uuid,
    /// The queue it runs on.
    pub queue: String,
    /// The kind that handles it.
    pub kind: String,
    /// The handler's input.
    pub args: serde_json::Value,
    /// 0 runs first, 9 last.
    pub priority: i16,
    /// Where it is in its life.
    pub state: State,
    /// Attempts started so far.
    pub attempt: i32,
    /// Attempts allowed before it is discarded.
    pub max_attempts: i32,
    /// When it may run next.
    pub run_at: DateTime<Utc>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    #[oai(skip_serializing_if_is_none)]
    pub attempted_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    #[oai(skip_serializing_if_is_none)]
    pub finished_at: Option<DateTime<Utc>>,
    /// The worker running it.
    #[oai(skip_serializing_if_is_none)]
    pub locked_by: Option<String>,
    /// When the running attempt's lease ends unless renewed.
    #[oai(skip_serializing_if_is_none)]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When an operator asked the running job to stop.
    #[oai(skip_serializing_if_is_none)]
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// Its uniqueness key.
    #[oai(skip_serializing_if_is_none)]
    pub unique_key: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// Free-form metadata.
    pub metadata: serde_json::Value,
    /// The handler's result once completed.
    #[oai(skip_serializing_if_is_none)]
    pub result: Option<serde_json::Value>,
    /// The latest attempt's error.
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    /// Per-attempt time limit in milliseconds.
    #[oai(skip_serializing_if_is_none)]
    pub timeout_ms: Option<i64>,
    /// The sequence it runs in, one job of the key at a time.
    #[oai(skip_serializing_if_is_none)]
    pub sequence: Option<String>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> JobView {
        JobView {
            id: job.id.0,
            queue: job.queue,
            kind: job.kind,
            args: job.args,
            priority: job.priority,
            state: job.state.into(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            run_at: job.run_at,
            created_at: job.created_at,
            attempted_at: job.attempted_at,
            finished_at: job.finished_at,
            locked_by: job.locked_by,
            lease_expires_at: job.lease_expires_at,
            cancel_requested_at: job.cancel_requested_at,
            unique_key: job.unique_key,
            tags: job.tags,
            metadata: job.metadata,
            result: job.result,
            last_error: job.last_error,
            timeout_ms: job.timeout_ms,
            sequence: job.sequence,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct JobPage {
    /// The jobs.
    pub items: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

/// One attempt of a job.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct AttemptView {
    /// Its number, from 1.
    pub attempt: i32,
    /// The worker that ran it.
    #[oai(skip_serializing_if_is_none)]
    pub worker: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How it ended, e.g. `completed`, `failed`, `rescued`.
    pub outcome: String,
    /// Its error message.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    /// The error's causes, outermost first.
    pub error_chain: Vec<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> AttemptView {
        AttemptView {
            attempt: a.attempt,
            worker: a.worker,
            started_at: a.started_at,
            finished_at: a.finished_at,
            outcome: a.outcome,
            error: a.error,
            error_chain: a.error_chain,
        }
    }
}

/// An event of the outbox.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct EventView {
    /// Monotonic id; resume after it.
    pub id: i64,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// What happened, e.g. `job.completed`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub event_type: String,
    /// The job it concerns.
    #[oai(skip_serializing_if_is_none)]
    pub job_id: Option<Uuid>,
    /// The queue it concerns.
    #[oai(skip_serializing_if_is_none)]
    pub queue: Option<String>,
    /// The job's kind.
    #[oai(skip_serializing_if_is_none)]
    pub kind: Option<String>,
    /// The job's state after the change.
    #[oai(skip_serializing_if_is_none)]
    pub state: Option<State>,
    /// The job's attempt after the change.
    #[oai(skip_serializing_if_is_none)]
    pub attempt: Option<i32>,
    /// Details.
    #[oai(skip_serializing_if_is_none)]
    pub data: Option<serde_json::Value>,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> EventView {
        EventView {
            id: e.id.0,
            at: e.at,
            event_type: e.event_type.clone(),
            job_id: e.job_id.map(|id| id.0),
            queue: e.queue.clone(),
            kind: e.kind.clone(),
            state: e.state.map(State::from),
            attempt: e.attempt,
            data: e.data.clone(),
        }
    }
}

/// A page of events, oldest first.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct EventPage {
    /// The events.
    pub items: Vec<EventView>,
    /// Pass as `after` for the next page.
    pub next_after: i64,
    /// True when events after the requested id were deleted by retention: the page starts
    /// at the oldest event still stored.
    pub reset: bool,
}

/// The result of an enqueue.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct EnqueuedView {
    /// The job's id; for a duplicate of a unique job, the existing job's.
    pub id: Uuid,
    /// Its state.
    pub state: State,
    /// True when a job with the same unique key existed and no new job was stored.
    pub duplicate: bool,
}

impl From<&longshore_jobs::Enqueued> for EnqueuedView {
    fn from(e: &longshore_jobs::Enqueued) -> EnqueuedView {
        EnqueuedView {
            id: e.id.0,
            state: e.state.into(),
            duplicate: e.duplicate,
        }
    }
}

/// A queue with its figures.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct QueueView {
    /// Its name.
    pub name: String,
    /// Whether workers skip it.
    pub paused: bool,
    /// Its global limit of running jobs across all workers.
    #[oai(skip_serializing_if_is_none)]
    pub concurrency: Option<i32>,
    /// Jobs by state.
    pub counts: BTreeMap<String, i64>,
    /// Age in seconds of the longest-waiting available job.
    #[oai(skip_serializing_if_is_none)]
    pub oldest_available_s: Option<f64>,
    /// Jobs completed in the last minute.
    pub completed_last_minute: i64,
    /// Live workers serving it.
    pub workers: i64,
}

impl From<QueueInfo> for QueueView {
    fn from(q: QueueInfo) -> QueueView {
        QueueView {
            name: q.name,
            paused: q.paused,
            concurrency: q.concurrency,
            counts: q
                .counts
                .into_iter()
                .map(|(s, n)| (s.as_str().to_owned(), n))
                .collect(),
            oldest_available_s: q.oldest_available_s,
            completed_last_minute: q.completed_last_minute,
            workers: q.workers,
        }
    }
}

/// A worker.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct WorkerView {
    /// Unique per process start.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its host.
    pub host: String,
    /// Its process id.
    pub pid: i32,
    /// Jobs it runs at once.
    pub concurrency: i32,
    /// Kinds it can run.
    pub kinds: Vec<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_seen_at: DateTime<Utc>,
    /// When it stopped cleanly.
    #[oai(skip_serializing_if_is_none)]
    pub stopped_at: Option<DateTime<Utc>>,
    /// Jobs it runs now.
    pub running: i64,
}

impl From<WorkerRow> for WorkerView {
    fn from(w: WorkerRow) -> WorkerView {
        WorkerView {
            id: w.id,
            queue: w.queue,
            host: w.host,
            pid: w.pid,
            concurrency: w.concurrency,
            kinds: w.kinds,
            started_at: w.started_at,
            last_seen_at: w.last_seen_at,
            stopped_at: w.stopped_at,
            running: w.running,
        }
    }
}

/// Counts of jobs by state, across all queues.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct StatsView {
    /// Jobs by state.
    pub counts: BTreeMap<String, i64>,
    /// All jobs stored.
    pub total: i64,
    /// Queues.
    pub queues: i64,
    /// Distinct users seen over each trailing window (by its name, e.g. `24h`), across every
    /// process: in lifecycle events, pushes and `POST /activity` reports.
    pub active_users: BTreeMap<String, i64>,
    /// When the figures were read (they are cached for a second or two).
    pub as_of: DateTime<Utc>,
}

/// A token's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ScopeView {
    /// Read everything.
    Read,
    /// Read, and enqueue.
    Enqueue,
    /// Enqueue, and act on jobs, queues and operations.
    Operate,
    /// Everything, including tokens and the audit log.
    Admin,
}

impl From<Scope> for ScopeView {
    fn from(s: Scope) -> ScopeView {
        match s {
            Scope::Read => ScopeView::Read,
            Scope::Enqueue => ScopeView::Enqueue,
            Scope::Operate => ScopeView::Operate,
            Scope::Admin => ScopeView::Admin,
        }
    }
}

impl From<ScopeView> for Scope {
    fn from(s: ScopeView) -> Scope {
        match s {
            ScopeView::Read => Scope::Read,
            ScopeView::Enqueue => Scope::Enqueue,
            ScopeView::Operate => Scope::Operate,
            ScopeView::Admin => Scope::Admin,
        }
    }
}

/// An API token (never its secret, except once at creation).
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct TokenView {
    /// Its id.
    pub id: Uuid,
    /// A name for people.
    pub name: String,
    /// The first characters of the token.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<ScopeView>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used (to the minute).
    #[oai(skip_serializing_if_is_none)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[oai(skip_serializing_if_is_none)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The token itself: only in the response that created it.
    #[oai(skip_serializing_if_is_none)]
    pub token: Option<String>,
}

impl From<TokenRow> for TokenView {
    fn from(t: TokenRow) -> TokenView {
        TokenView {
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            scopes: t.scopes.into_iter().map(ScopeView::from).collect(),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
            token: None,
        }
    }
}

/// An audit record.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct AuditView {
    /// Monotonic id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `token:<name>`, or `local` when auth is off.
    pub actor: String,
    /// What, e.g. `jobs.retry`.
    pub action: String,
    /// Which ids.
    pub targets: Vec<String>,
    /// Details.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<serde_json::Value>,
    /// The request it came from.
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
}

impl From<AuditEntry> for AuditView {
    fn from(a: AuditEntry) -> AuditView {
        AuditView {
            id: a.id,
            at: a.at,
            actor: a.actor,
            action: a.action,
            targets: a.targets,
            detail: a.detail,
            request_id: a.request_id,
        }
    }
}

/// A page of audit records, newest first.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct AuditPage {
    /// The records.
    pub items: Vec<AuditView>,
    /// Pass as `before` for the next page.
    #[oai(skip_serializing_if_is_none)]
    pub next_before: Option<i64>,
}

/// What a bulk operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ActionView {
    /// Make failed, cancelled or finished jobs available again.
    Retry,
    /// Cancel waiting jobs; ask running ones to stop.
    Cancel,
    /// Delete jobs that are not running.
    Delete,
}

impl From<ActionView> for BulkAction {
    fn from(a: ActionView) -> BulkAction {
        match a {
            ActionView::Retry => BulkAction::Retry,
            ActionView::Cancel => BulkAction::Cancel,
            ActionView::Delete => BulkAction::Delete,
        }
    }
}

impl From<BulkAction> for ActionView {
    fn from(a: BulkAction) -> ActionView {
        match a {
            BulkAction::Retry => ActionView::Retry,
            BulkAction::Cancel => ActionView::Cancel,
            BulkAction::Delete => ActionView::Delete,
        }
    }
}

/// A bulk operation and its progress.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct OperationView {
    /// Its id.
    pub id: Uuid,
    /// What it does.
    pub action: ActionView,
    /// Which jobs, as given.
    pub filter: serde_json::Value,
    /// `running`, `completed` or `failed`.
    pub state: String,
    /// Jobs matched when it started.
    pub total: i64,
    /// Jobs acted on so far.
    pub done: i64,
    /// Jobs whose state did not allow the action.
    pub skipped: i64,
    /// Who started it.
    pub actor: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    #[oai(skip_serializing_if_is_none)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
}

/// A page of bulk operations, newest first.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct OperationPage {
    /// The operations.
    pub items: Vec<OperationView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

impl From<Operation> for OperationView {
    fn from(o: Operation) -> OperationView {
        OperationView {
            id: o.id,
            action: o.action.into(),
            filter: serde_json::to_value(&o.filter).unwrap_or_default(),
            state: o.state,
            total: o.total,
            done: o.done,
            skipped: o.skipped,
            actor: o.actor,
            created_at: o.created_at,
            finished_at: o.finished_at,
            error: o.error,
        }
    }
}
