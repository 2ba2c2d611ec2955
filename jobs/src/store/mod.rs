//! The store: the only SQL in Longshore, one implementation per backend.
//!
//! [`Store`] is the facade every other crate uses. Each backend lives in its own module
//! (`pg`, `sqlite`) with a file per table; the Postgres functions that insert jobs take an
//! executor, so an application can enqueue inside its own transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use uuid::Uuid;

use crate::admin::{
    AuditEntry, IdempotencyClaim, JobEdit, JobFilter, NewAudit, Operation, QueueInfo, TokenRow,
    WorkerRow,
};
use crate::error::StoreError;
use crate::event::Event;
use crate::id::{EventId, JobId, WorkerId};
use crate::job::{Attempt, ClaimedJob, Enqueued, Job, NewJob};
use crate::outcome::Completion;
use crate::schedule::Schedule;
use crate::state::JobState;

mod health;
pub(crate) mod inserter;
pub mod pg;
pub mod sqlite;
mod wakeup;

pub use health::PROBE_INTERVAL;
pub use wakeup::{Signal, Wakeups};

/// How to reach the database.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://…` or `sqlite:…`. Defaults to `sqlite:longshore.db` in the working
    /// directory, created on first use.
    pub url: String,
    /// Connections kept to Postgres. Defaults to 16.
    pub max_connections: u32,
    /// Apply pending schema migrations when connecting. Defaults to true.
    pub migrate: bool,
    /// The longest an operation waits for a connection, and an enqueue for its commit; past
    /// it the caller is told, and an enqueue told so stored nothing (unless its commit was
    /// already sent: then it is reported unconfirmed). Defaults to 5 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite:longshore.db".to_owned(),
            max_connections: 16,
            migrate: true,
            timeout: Duration::from_secs(5),
        }
    }
}

impl StoreConfig {
    /// Checks the config, naming the bad field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.url.starts_with("postgres:")
            || self.url.starts_with("postgresql:")
            || self.url.starts_with("sqlite:"))
        {
            return Err((
                "database_url",
                "expected postgres://… or sqlite:…".to_owned(),
            ));
        }
        if self.max_connections < 2 {
            return Err(("max_connections", "must be at least 2".to_owned()));
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(600) {
            return Err(("timeout", "must be 100ms to 10min".to_owned()));
        }
        Ok(())
    }
}

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// PostgreSQL: many processes on many machines.
    Postgres,
    /// An embedded SQLite file.
    Sqlite,
}

/// A job whose lease expired, after the rescue.
#[derive(Clone, Debug, PartialEq)]
pub struct Rescued {
    /// The job.
    pub id: JobId,
    /// `retryable`, `discarded`, or `cancelled` when a cancel was pending.
    pub state: JobState,
    /// The worker that lost it.
    pub worker: Option<String>,
}

/// An attempt a process holds, as its heartbeat renews it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldAttempt {
    /// The job.
    pub id: JobId,
    /// The attempt the process runs (or has claimed, or is storing the outcome of).
    pub attempt: i32,
    /// The worker that claimed it.
    pub worker: WorkerId,
}

/// What a lease renewal found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Renewal {
    /// Leases extended (those due within the threshold).
    pub extended: u64,
    /// Attempts the process no longer holds: the job was rescued, or runs another attempt,
    /// or finished. Their handlers must stop, and nothing of them counts any more.
    pub lost: Vec<(JobId, i32)>,
}

/// A transaction that holds the event stream back: events committed after it began are
/// hidden from readers until it ends (Postgres only; readers stop below the oldest running
/// transaction so that they never skip an event that commits late).
#[derive(Clone, Debug, PartialEq)]
pub struct Holdback {
    /// Its server process.
    pub pid: i32,
    /// How long it has been open, in seconds.
    pub age_s: f64,
    /// The application name its client gave.
    pub application: String,
    /// Events committed that readers cannot see yet.
    pub hidden: i64,
}

/// What a cancel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was waiting and is now `cancelled`.
    Cancelled,
    /// The job is running; its worker was asked to stop it.
    Requested,
}

/// A worker row, as registered at start.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerInfo {
    /// Unique per process start.
    pub id: WorkerId,
    /// The queue it serves.
    pub queue: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Jobs it runs at once.
    pub concurrency: u32,
    /// The kinds it can run.
    pub kinds: Vec<String>,
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

/// Renders an idempotent request's (status, body) from its stored jobs.
pub type RenderResponse = Box<dyn Fn(&[Enqueued]) -> (u16, String) + Send + Sync>;

/// The response an idempotent request gives, stored under its key in the same transaction as
/// the jobs it reports: the jobs and the key's answer commit together or not at all, so a
/// retry with the key either replays the answer or finds the key free.
pub struct KeyedResponse {
    /// Who made the request (keys are per actor).
    pub actor: String,
    /// The `Idempotency-Key`.
    pub key: String,
    /// The digest of the request body, to refuse the key with another body.
    pub request_hash: String,
    /// The status and body to replay, from the request's stored jobs.
    pub render: RenderResponse,
}

/// Per-queue figures as the backends read them; [`Store::queues`] assembles them.
#[derive(Debug, Default)]
pub(crate) struct QueueTotals {
    pub counts: BTreeMap<String, BTreeMap<JobState, i64>>,
    pub settings: BTreeMap<String, (bool, Option<i32>)>,
    pub oldest_available_s: BTreeMap<String, f64>,
    pub completed_last_minute: BTreeMap<String, i64>,
    pub workers: BTreeMap<String, i64>,
}

#[derive(Clone)]
enum Backend {
    Postgres(pg::PgStore),
    Sqlite(sqlite::SqliteStore),
}

impl Backend {
    async fn insert(&self, batch: inserter::Batch<'_>) -> Result<Vec<Enqueued>, StoreError> {
        match self {
            Backend::Postgres(s) => s.insert(batch).await,
            Backend::Sqlite(s) => s.insert(batch).await,
        }
    }
}

/// The durable job store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    wakeups: Wakeups,
    inserter: tokio::sync::mpsc::Sender<inserter::Request>,
    health: Arc<health::Health>,
    timeout: Duration,
}

/// Calls the same method on whichever backend this store runs; refuses at once while the
/// database is known to be unreachable, and learns from the result whether it is.
macro_rules! on_backend {
    ($self:ident, $s:ident => $call:expr) => {{
        $self.health.check()?;
        let result = match &$self.backend {
            Backend::Postgres($s) => $call,
            Backend::Sqlite($s) => $call,
        };
        $self.health.record(&result);
        result
    }};
}

impl Store {
    /// Connects, applies migrations when configured, and starts the wake-up relay.
    pub async fn connect(config: &StoreConfig) -> Result<Store, StoreError> {
        let wakeups = Wakeups::default();
        let backend = if config.url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::SqliteStore::connect(config).await?)
        } else if config.url.starts_with("postgres:") || config.url.starts_with("postgresql:") {
            Backend::Postgres(pg::PgStore::connect(config, &wakeups).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(config.url.clone()));
        };
        let health = Arc::new(health::Health::default());
        let inserter = inserter::start(backend.clone(), Arc::clone(&health));
        Ok(Store {
            backend,
            wakeups,
            inserter,
            health,
            timeout: config.timeout,
        })
    }

    /// Applies pending schema migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        on_backend!(self, s => s.migrate().await)
    }

    /// Which database this store runs on.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Postgres(_) => BackendKind::Postgres,
            Backend::Sqlite(_) => BackendKind::Sqlite,
        }
    }

    /// The Postgres pool, when on Postgres (for enqueueing inside your own transaction).
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.backend {
            Backend::Postgres(s) => Some(s.pool()),
            Backend::Sqlite(_) => None,
        }
    }

    /// The wake-up hub of this process.
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, s => s.ping().await)
    }

    /// Stores jobs; a job whose unique key is taken returns the existing job instead.
    /// Concurrent calls share one transaction (group commit). Wakes the workers of each queue
    /// that got an available job.
    ///
    /// Answers within the store's timeout. An error means nothing was stored, except
    /// [`StoreError::Unconfirmed`]: the commit was sent and not confirmed in time.
    pub async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        self.insert_keyed(jobs, None).await
    }

    /// [`Store::insert`], storing `keyed`'s response under its idempotency key in the same
    /// transaction.
    pub async fn insert_keyed(
        &self,
        jobs: Vec<NewJob>,
        keyed: Option<KeyedResponse>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        if jobs.is_empty() && keyed.is_none() {
            return Ok(Vec::new());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queues: Vec<String> = jobs.iter().map(|j| j.queue.clone()).collect();
        let request = inserter::Request {
            jobs,
            keyed,
            deadline: tokio::time::Instant::now() + self.timeout,
            reply,
        };
        let stopped = || StoreError::Corrupt {
            what: "inserter",
            detail: "the insert task stopped".to_owned(),
        };
        self.inserter.send(request).await.map_err(|_| stopped())?;
        let enqueued = answer.await.map_err(|_| stopped())??;
        self.wake_for(&queues, &enqueued);
        Ok(enqueued)
    }

    /// Stores `jobs` and the progress of job `id` in one transaction, if `worker` still
    /// holds attempt `attempt` of it: a handler that makes jobs page by page (a fan-out
    /// sweep) then never makes a page's jobs twice, nor loses them, across a crash. `None`,
    /// with nothing stored, when the attempt has lost its lease.
    pub async fn insert_with_progress(
        &self,
        jobs: Vec<NewJob>,
        id: JobId,
        attempt: i32,
        worker: &WorkerId,
        progress: &serde_json::Value,
    ) -> Result<Option<Vec<Enqueued>>, StoreError> {
        let queues: Vec<String> = jobs.iter().map(|j| j.queue.clone()).collect();
        let enqueued = on_backend!(self, s => s.insert_with_progress(&jobs, id, attempt, worker, progress).await)?;
        if let Some(enqueued) = &enqueued {
            self.wake_for(&queues, enqueued);
        }
        Ok(enqueued)
    }

    fn wake_for(&self, queues: &[String], enqueued: &[Enqueued]) {
        let mut last: Option<&str> = None;
        for (queue, result) in queues.iter().zip(enqueued) {
            if result.duplicate || result.state != JobState::Available {
                continue;
            }
            if last != Some(queue.as_str()) {
                self.wakeups.job_available(queue);
                last = Some(queue.as_str());
            }
        }
    }

    /// Claims up to `limit` runnable jobs of `queue` for `worker`, in priority then `run_at`
    /// order, unless the queue is paused. Each claimed job starts an attempt under a lease.
    pub async fn claim(
        &self,
        queue: &str,
        worker: &WorkerId,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        on_backend!(self, s => s.claim(queue, worker, limit, lease).await)
    }

    /// Records the end of attempts. Returns the ids whose report was accepted: a report from
    /// a worker that no longer holds the job's current attempt is ignored.
    pub async fn complete(&self, completions: &[Completion]) -> Result<Vec<JobId>, StoreError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let accepted = on_backend!(self, s => s.complete(completions).await)?;
        for c in completions {
            if c.outcome.state() == JobState::Available && accepted.contains(&c.id) {
                self.wakeups.job_available(&c.queue);
            }
        }
        Ok(accepted)
    }

    /// Hands back claimed jobs that never started, without consuming their attempt.
    pub async fn release(
        &self,
        worker: &WorkerId,
        jobs: &[(JobId, i32)],
    ) -> Result<u64, StoreError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        on_backend!(self, s => s.release(worker, jobs).await)
    }

    /// Extends the leases of the attempts in `held` that still hold their job and whose lease
    /// ends within `threshold`, and reports those that no longer hold it. Only these attempts:
    /// a job whose outcome was lost after its handler finished is not renewed, so its lease runs
    /// out and it is rescued.
    pub async fn extend_leases(
        &self,
        held: &[HeldAttempt],
        lease: Duration,
        threshold: Duration,
    ) -> Result<Renewal, StoreError> {
        if held.is_empty() {
            return Ok(Renewal::default());
        }
        on_backend!(self, s => s.extend_leases(held, lease, threshold).await)
    }

    /// Running jobs of `workers` that an operator asked to stop.
    pub async fn cancel_requests(&self, workers: &[WorkerId]) -> Result<Vec<JobId>, StoreError> {
        on_backend!(self, s => s.cancel_requests(workers).await)
    }

    /// Moves up to `limit` running jobs whose lease expired to `retryable`, or `discarded`
    /// when their attempts are used up. The lost attempt counts.
    pub async fn rescue_expired(&self, limit: u32) -> Result<Vec<Rescued>, StoreError> {
        let rescued = on_backend!(self, s => s.rescue_expired(limit).await)?;
        if !rescued.is_empty() {
            self.wakeups.wake_all();
        }
        Ok(rescued)
    }

    /// One job.
    pub async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        on_backend!(self, s => s.job(id).await)
    }

    /// The attempts of a job, oldest first.
    pub async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>, StoreError> {
        on_backend!(self, s => s.attempts(id).await)
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

    /// Jobs counted by state, optionally for one queue.
    pub async fn count_by_state(
        &self,
        queue: Option<&str>,
    ) -> Result<BTreeMap<JobState, i64>, StoreError> {
        on_backend!(self, s => s.count_by_state(queue).await)
    }

    /// Deletes finished jobs and old events past their retention, a batch at a time.
    pub async fn prune(&self, limits: PruneLimits) -> Result<Pruned, StoreError> {
        on_backend!(self, s => s.prune(limits).await)
    }

    /// Events after `after`, oldest first. Never skips an event that commits late.
    pub async fn events_after(&self, after: EventId, limit: u32) -> Result<Vec<Event>, StoreError> {
        on_backend!(self, s => s.events_after(after, limit).await)
    }

    /// The events of one job, oldest first.
    pub async fn job_events(&self, id: JobId) -> Result<Vec<Event>, StoreError> {
        on_backend!(self, s => s.job_events(id).await)
    }

    /// Stops workers from claiming jobs of `queue`.
    pub async fn pause_queue(&self, queue: &str) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_paused(queue, true).await)
    }

    /// Lets workers claim jobs of `queue` again.
    pub async fn resume_queue(&self, queue: &str) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_paused(queue, false).await)?;
        self.wakeups.job_available(queue);
        Ok(())
    }

    /// Registers a worker at its start.
    pub async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), StoreError> {
        on_backend!(self, s => s.register_worker(worker).await)
    }

    /// Records that workers are alive.
    pub async fn touch_workers(&self, workers: &[WorkerId]) -> Result<(), StoreError> {
        on_backend!(self, s => s.touch_workers(workers).await)
    }

    /// Records that a worker stopped cleanly.
    pub async fn stop_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        on_backend!(self, s => s.stop_worker(worker).await)
    }

    /// Deletes worker rows not seen since `before`.
    pub async fn reap_workers(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        on_backend!(self, s => s.reap_workers(before).await)
    }
}

/// Operator reads and changes.
impl Store {
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

    /// Deletes a job that is not running, with its attempts.
    pub async fn delete_job(&self, id: JobId) -> Result<(), StoreError> {
        on_backend!(self, s => s.delete_job(id).await)
    }

    /// Changes a waiting job.
    pub async fn edit_job(&self, id: JobId, edit: &JobEdit) -> Result<Job, StoreError> {
        let job = on_backend!(self, s => s.edit_job(id, edit).await)?;
        if job.state == JobState::Available {
            self.wakeups.job_available(&job.queue);
        }
        Ok(job)
    }

    /// Makes a scheduled or retrying job available now.
    pub async fn promote_job(&self, id: JobId) -> Result<Job, StoreError> {
        let job = on_backend!(self, s => s.promote_job(id).await)?;
        self.wakeups.job_available(&job.queue);
        Ok(job)
    }

    /// Every queue that has jobs, settings or workers, with its figures.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, StoreError> {
        let mut totals = on_backend!(self, s => s.queue_totals().await)?;
        let mut names: Vec<String> = totals.counts.keys().cloned().collect();
        names.extend(totals.settings.keys().cloned());
        names.extend(totals.workers.keys().cloned());
        names.sort();
        names.dedup();
        Ok(names
            .into_iter()
            .map(|name| {
                let (paused, concurrency) =
                    totals.settings.get(&name).copied().unwrap_or((false, None));
                QueueInfo {
                    paused,
                    concurrency,
                    counts: totals.counts.remove(&name).unwrap_or_default(),
                    oldest_available_s: totals.oldest_available_s.get(&name).copied(),
                    completed_last_minute: totals
                        .completed_last_minute
                        .get(&name)
                        .copied()
                        .unwrap_or(0),
                    workers: totals.workers.get(&name).copied().unwrap_or(0),
                    name,
                }
            })
            .collect())
    }

    /// Sets (or with `None` removes) the limit of jobs of `queue` running at once across
    /// all workers.
    pub async fn set_queue_concurrency(
        &self,
        queue: &str,
        concurrency: Option<i32>,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_queue_concurrency(queue, concurrency).await)?;
        self.wakeups.job_available(queue);
        Ok(())
    }

    /// Workers seen since `live_since`, oldest first.
    pub async fn workers(&self, live_since: DateTime<Utc>) -> Result<Vec<WorkerRow>, StoreError> {
        on_backend!(self, s => s.workers(live_since).await)
    }

    /// Stores a token by the SHA-256 of its secret.
    pub async fn create_token(&self, token: &TokenRow, hash: &str) -> Result<(), StoreError> {
        on_backend!(self, s => s.create_token(token, hash).await)
    }

    /// The token whose secret hashes to `hash`.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        on_backend!(self, s => s.token_by_hash(hash).await)
    }

    /// Every token, revoked ones included.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        on_backend!(self, s => s.tokens().await)
    }

    /// How many tokens are not revoked.
    pub async fn active_tokens(&self) -> Result<i64, StoreError> {
        on_backend!(self, s => s.active_tokens().await)
    }

    /// Revokes a token; false when there was no such live token.
    pub async fn revoke_token(&self, id: Uuid) -> Result<bool, StoreError> {
        on_backend!(self, s => s.revoke_token(id).await)
    }

    /// Records that a token was used.
    pub async fn touch_token(&self, id: Uuid) -> Result<(), StoreError> {
        on_backend!(self, s => s.touch_token(id).await)
    }

    /// Writes an audit record.
    pub async fn write_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        on_backend!(self, s => s.write_audit(entry).await)
    }

    /// Audit records, newest first, older than `before` when given.
    pub async fn audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        on_backend!(self, s => s.audit(before, limit).await)
    }

    /// Takes an idempotency key for a request, or reports what an earlier use left.
    pub async fn claim_idempotency(
        &self,
        actor: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<IdempotencyClaim, StoreError> {
        on_backend!(self, s => s.claim_idempotency(actor, key, request_hash).await)
    }

    /// Records the response to replay for a key.
    pub async fn finish_idempotency(
        &self,
        actor: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.finish_idempotency(actor, key, status, body).await)
    }

    /// Frees a key whose request failed without a response worth replaying.
    pub async fn release_idempotency(&self, actor: &str, key: &str) -> Result<(), StoreError> {
        on_backend!(self, s => s.release_idempotency(actor, key).await)
    }

    /// Deletes idempotency keys and audit records past their retention.
    pub async fn prune_control(
        &self,
        idempotency_before: DateTime<Utc>,
        audit_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        on_backend!(self, s => s.prune_control(idempotency_before, audit_before).await)
    }

    /// Records a new bulk operation.
    pub async fn create_operation(&self, op: &Operation) -> Result<(), StoreError> {
        on_backend!(self, s => s.create_operation(op).await)
    }

    /// Records a bulk operation's progress (and renews its lease); false when `op.owner` no
    /// longer owns it (another process took it over).
    pub async fn update_operation(&self, op: &Operation) -> Result<bool, StoreError> {
        on_backend!(self, s => s.update_operation(op).await)
    }

    /// Renews the lease of a running operation; false when `owner` no longer owns it.
    pub async fn touch_operation(&self, id: Uuid, owner: &str) -> Result<bool, StoreError> {
        on_backend!(self, s => s.touch_operation(id, owner).await)
    }

    /// Makes `owner` the owner of every running operation whose lease was not renewed for
    /// `stale`, and returns them: their process died, and they are to be resumed.
    pub async fn take_over_operations(
        &self,
        owner: &str,
        stale: Duration,
    ) -> Result<Vec<Operation>, StoreError> {
        on_backend!(self, s => s.take_over_operations(owner, stale).await)
    }

    /// One bulk operation.
    pub async fn operation(&self, id: Uuid) -> Result<Option<Operation>, StoreError> {
        on_backend!(self, s => s.operation(id).await)
    }

    /// The latest bulk operations.
    pub async fn operations(&self, limit: u32) -> Result<Vec<Operation>, StoreError> {
        on_backend!(self, s => s.operations(limit).await)
    }

    /// A setting, stored as `value` by whoever asks first.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        on_backend!(self, s => s.setting_or_insert(key, value).await)
    }

    /// A setting, if set.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        on_backend!(self, s => s.setting(key).await)
    }

    /// Every event with a lower id is committed: a reader starting just below it misses
    /// nothing that commits later.
    pub async fn event_horizon(&self) -> Result<EventId, StoreError> {
        Ok(EventId(on_backend!(self, s => s.event_horizon().await)?))
    }

    /// The transaction holding the event stream back, if one is.
    pub async fn event_holdback(&self) -> Result<Option<Holdback>, StoreError> {
        on_backend!(self, s => s.event_holdback().await)
    }

    /// The highest event id deleted by retention: a reader resuming below it lost events.
    pub async fn events_pruned_through(&self) -> Result<EventId, StoreError> {
        let value = self.setting("events_pruned_through").await?;
        Ok(EventId(value.and_then(|v| v.parse().ok()).unwrap_or(0)))
    }

    /// A job's progress (a sweep's checkpoint).
    pub async fn job_progress(&self, id: JobId) -> Result<Option<serde_json::Value>, StoreError> {
        on_backend!(self, s => s.job_progress(id).await)
    }

    /// Records a running job's progress; only the worker holding the attempt may. False when
    /// it no longer does.
    pub async fn save_progress(
        &self,
        id: JobId,
        attempt: i32,
        worker: &WorkerId,
        progress: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        on_backend!(self, s => s.save_progress(id, attempt, worker, progress).await)
    }

    /// The id of the oldest event still stored.
    pub async fn oldest_event(&self) -> Result<Option<EventId>, StoreError> {
        Ok(on_backend!(self, s => s.oldest_event().await)?.map(EventId))
    }
}

/// Cron schedules.
impl Store {
    /// Creates or replaces a schedule's definition and next tick.
    pub async fn put_schedule(&self, schedule: &Schedule) -> Result<Schedule, StoreError> {
        on_backend!(self, s => s.put_schedule(schedule).await)
    }

    /// One schedule.
    pub async fn schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        on_backend!(self, s => s.schedule(id).await)
    }

    /// Every schedule, by id.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        on_backend!(self, s => s.schedules().await)
    }

    /// Enabled schedules whose next tick is at or before `now`.
    pub async fn due_schedules(&self, now: DateTime<Utc>) -> Result<Vec<Schedule>, StoreError> {
        on_backend!(self, s => s.due_schedules(now).await)
    }

    /// Deletes a schedule (its jobs stay); false when there was none.
    pub async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError> {
        on_backend!(self, s => s.delete_schedule(id).await)
    }

    /// Moves a schedule's next tick from `expected` to `next`, recording the latest fire and
    /// adding to its tick counts; false when another scheduler moved it first.
    pub async fn advance_schedule(
        &self,
        id: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        fired: Option<(DateTime<Utc>, JobId)>,
        counts: crate::schedule::TickCounts,
    ) -> Result<bool, StoreError> {
        on_backend!(self, s => s.advance_schedule(id, expected, next, fired, counts).await)
    }

    /// Writes an event that no job change carries (e.g. `schedule.missed`).
    pub async fn write_event(
        &self,
        event_type: &str,
        queue: Option<&str>,
        job_id: Option<JobId>,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.write_event(event_type, queue, job_id, data).await)
    }
}

/// Sweeps (their passes are jobs of kind `sweep`).
impl Store {
    /// Creates or replaces a sweep's definition; a changed definition starts its next pass
    /// at the beginning.
    pub async fn put_sweep(
        &self,
        def: &crate::sweep::SweepDef,
        source: crate::schedule::Source,
    ) -> Result<crate::sweep::StoredSweep, StoreError> {
        on_backend!(self, s => s.put_sweep(def, source).await)
    }

    /// One sweep.
    pub async fn sweep(&self, name: &str) -> Result<Option<crate::sweep::StoredSweep>, StoreError> {
        on_backend!(self, s => s.sweep(name).await)
    }

    /// Every sweep, by name.
    pub async fn sweeps(&self) -> Result<Vec<crate::sweep::StoredSweep>, StoreError> {
        on_backend!(self, s => s.sweeps().await)
    }

    /// Records where the sweep's next pass starts (`None`: at the beginning).
    pub async fn set_sweep_resume(
        &self,
        name: &str,
        after: Option<&str>,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_sweep_resume(name, after).await)
    }

    /// Deletes a sweep (its passes stay); false when there was none.
    pub async fn delete_sweep(&self, name: &str) -> Result<bool, StoreError> {
        on_backend!(self, s => s.delete_sweep(name).await)
    }
}

/// A claimed job whose row cannot be read, with the reason.
pub(crate) type Unreadable = (JobId, String);

/// Reads claimed rows, setting aside those that cannot be read (a time out of range written
/// by hand, say) with the reason: the claim discards them instead of failing, so one bad row
/// never stops a queue. Fails only when not even a row's id can be read.
pub(crate) fn split_readable<R, T>(
    rows: &[R],
    read: impl Fn(&R) -> Result<T, StoreError>,
    id: impl Fn(&R) -> Result<JobId, StoreError>,
) -> Result<(Vec<T>, Vec<Unreadable>), StoreError> {
    let mut good = Vec::with_capacity(rows.len());
    let mut broken = Vec::new();
    for row in rows {
        match read(row) {
            Ok(item) => good.push(item),
            Err(error) => {
                let id = id(row)?;
                tracing::error!(job.id = %id, %error, "discarding a job whose row cannot be read");
                broken.push((id, format!("the stored job cannot be read: {error}")));
            }
        }
    }
    Ok((good, broken))
}

/// Milliseconds of a duration, as bound into SQL.
pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
