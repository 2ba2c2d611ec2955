//! The engine's path through the `jobs` table: insert (group-committed), claim under a lease,
//! complete fenced by the attempt, renew and hand back leases, rescue expired ones.

use std::time::Duration;

use chrono::{DateTime, Utc};

use tracing::Instrument;

use super::{Store, dispatch, inserter, on_backend};
use crate::error::StoreError;
use crate::id::{JobId, WorkerId};
use crate::job::{ClaimedJob, Enqueued, Lease, NewJob};
use crate::outcome::Completion;
use crate::state::JobState;
use crate::telemetry;

/// What a lease renewal found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Renewal {
    /// Leases extended (those due within the threshold).
    pub extended: u64,
    /// Attempts the process no longer holds: the job was rescued, or runs another attempt,
    /// or finished. Their handlers must stop, and nothing of them counts any more.
    pub lost: Vec<(JobId, i32)>,
}

/// A connection inside a transaction of the caller's, to enqueue in with
/// [`crate::Client::enqueue_in`]: `&mut *tx` of an `sqlx::Transaction` on Postgres or SQLite.
pub trait InTransaction: Send {
    /// Stores `jobs` and their events on this connection.
    fn insert_jobs(
        &mut self,
        jobs: &[NewJob],
    ) -> impl std::future::Future<Output = Result<Vec<Enqueued>, StoreError>> + Send;
}

impl InTransaction for sqlx::PgConnection {
    async fn insert_jobs(&mut self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
        super::pg::insert_jobs(self, jobs, Some(super::pg::IN_TRANSACTION)).await
    }
}

impl InTransaction for sqlx::SqliteConnection {
    async fn insert_jobs(&mut self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
        super::sqlite::insert_jobs(self, jobs).await
    }
}

/// A completion the store accepted.
pub(crate) struct Accepted {
    pub id: JobId,
    /// The job belongs to a sequence.
    pub sequenced: bool,
}

/// A job whose lease expired, after the rescue.
#[derive(Clone, Debug, PartialEq)]
pub struct Rescued {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// `retryable`, `discarded`, or `cancelled` when a cancel was pending.
    pub state: JobState,
    /// The worker that lost it.
    pub worker: Option<String>,
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

impl Store {
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
        mut jobs: Vec<NewJob>,
        keyed: Option<KeyedResponse>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        if jobs.is_empty() && keyed.is_none() {
            return Ok(Vec::new());
        }
        let span = telemetry::send_span(&mut jobs);
        // Counted only when metrics are exported: nothing is copied otherwise.
        let counted: Vec<(String, String)> = match telemetry::exporting() {
            true => jobs
                .iter()
                .map(|j| (j.queue.clone(), j.kind.clone()))
                .collect(),
            false => Vec::new(),
        };
        let started = std::time::Instant::now();
        let enqueued = self.send_to_inserter(jobs, keyed).instrument(span).await;
        super::record_operation("insert", started);
        let enqueued = enqueued?;
        let enqueued_metric = &telemetry::metrics::get().enqueued;
        for ((queue, kind), result) in counted.iter().zip(&enqueued) {
            if !result.duplicate {
                enqueued_metric.add(1, &telemetry::metrics::job_attributes(queue, kind));
            }
        }
        Ok(enqueued)
    }

    async fn send_to_inserter(
        &self,
        jobs: Vec<NewJob>,
        keyed: Option<KeyedResponse>,
    ) -> Result<Vec<Enqueued>, StoreError> {
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
        let stored = answer.await.map_err(|_| stopped())??;
        self.wake_for(&queues, &stored.enqueued, stored.told_others);
        Ok(stored.enqueued)
    }

    /// Stores `jobs` and the progress of the job `lease` holds in one transaction, while the
    /// lease holds: a handler that makes jobs page by page (a fan-out sweep) then never makes
    /// a page's jobs twice, nor loses them, across a crash. `None`, with nothing stored, when
    /// the attempt has lost its lease.
    pub async fn insert_with_progress(
        &self,
        jobs: Vec<NewJob>,
        lease: &Lease,
        progress: &serde_json::Value,
    ) -> Result<Option<Vec<Enqueued>>, StoreError> {
        let queues: Vec<String> = jobs.iter().map(|j| j.queue.clone()).collect();
        let enqueued =
            on_backend!(self, s => s.insert_with_progress(&jobs, lease, progress).await)?;
        if let Some(enqueued) = &enqueued {
            self.wake_for(&queues, enqueued, true);
        }
        Ok(enqueued)
    }

    /// Records the end of attempts. Returns the ids whose report was accepted: a report from
    /// a worker that no longer holds the job's current attempt is ignored.
    pub async fn complete(&self, completions: &[Completion]) -> Result<Vec<JobId>, StoreError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let accepted = on_backend!(self, s => s.complete(completions).await)?;
        let mut woken: Option<&str> = None;
        for c in completions {
            let Some(done) = accepted.iter().find(|a| a.id == c.lease.job) else {
                continue;
            };
            // A job to run again, now or after its backoff (a worker with nothing due sleeps
            // until its queue's next run_at), or the end of a sequenced job (the next of its
            // sequence may run now), wakes its queue.
            let state = c.outcome.state();
            let again = matches!(
                state,
                JobState::Available | JobState::Scheduled | JobState::Retryable
            );
            let wakes = again || (done.sequenced && state.is_terminal());
            if wakes && woken != Some(c.queue.as_str()) {
                self.wakeups.job_available(&c.queue);
                woken = Some(c.queue.as_str());
            }
        }
        Ok(accepted.into_iter().map(|a| a.id).collect())
    }

    /// Hands back claimed jobs that never started, without consuming their attempt.
    pub async fn release(&self, leases: &[Lease]) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        on_backend!(self, s => s.release(leases).await)
    }

    /// Extends the leases in `held` that still hold their job and end within `threshold`,
    /// and reports those that no longer hold it. Only these: a job whose outcome was lost
    /// after its handler finished is not renewed, so its lease runs out and it is rescued.
    pub async fn extend_leases(
        &self,
        held: &[Lease],
        lease: Duration,
        threshold: Duration,
    ) -> Result<Renewal, StoreError> {
        if held.is_empty() {
            return Ok(Renewal::default());
        }
        on_backend!(self, s => s.extend_leases(held, lease, threshold).await)
    }

    /// When the next lease of a running job ends, as the database knows it now.
    pub async fn next_lease_expiry(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        on_backend!(self, s => s.next_lease_expiry().await)
    }

    /// Moves up to `limit` running jobs whose lease expired to `retryable`, or `discarded`
    /// when their attempts are used up. The lost attempt counts.
    pub async fn rescue_expired(&self, limit: u32) -> Result<Vec<Rescued>, StoreError> {
        let rescued = on_backend!(self, s => s.rescue_expired(limit).await)?;
        let mut queues: Vec<&str> = rescued
            .iter()
            .filter(|r| r.state == JobState::Retryable)
            .map(|r| r.queue.as_str())
            .collect();
        queues.sort_unstable();
        queues.dedup();
        for queue in queues {
            self.wakeups.job_available(queue);
        }
        Ok(rescued)
    }
}

dispatch! {
    /// Claims up to `limit` runnable jobs of `queue` for `worker`, in priority then `run_at`
    /// order, unless the queue is paused. Each claimed job starts an attempt under a lease.
    fn claim(
        &self,
        queue: &str,
        worker: &WorkerId,
        limit: u32,
        lease: Duration,
    ) -> Vec<ClaimedJob>;
    /// Running jobs of `workers` that an operator asked to stop.
    fn cancel_requests(&self, workers: &[WorkerId]) -> Vec<JobId>;
    /// A job's progress (a sweep's checkpoint).
    fn job_progress(&self, id: JobId) -> Option<serde_json::Value>;
    /// Records a running job's progress, while `lease` holds; false when it no longer does.
    fn save_progress(&self, lease: &Lease, progress: &serde_json::Value) -> bool;
}
