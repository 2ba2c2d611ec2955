//! The apalis backend over Longshore's store: one per worker, bound to one queue.
//!
//! apalis asks for a task only when the worker has a free slot. The backend then claims as
//! many jobs as there are free slots (plus the queue's prefetch, by default as many as its
//! recent pace starts in the next few milliseconds) in one round trip, hands them out one by
//! one, and when the queue has nothing due waits for a wake-up or its next job's `run_at`.
//! Store errors never reach apalis (they would end the worker): the backend logs them and
//! tries again after a backoff.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis_core::backend::{Backend, BackendConfig, finalize::Ephemeral};
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use longshore_jobs::telemetry::QUEUE_NAME;
use longshore_jobs::{ClaimedJob, JobId, Lease, Store, StoreError, WorkerId};
use tokio::sync::Notify;
use tower::layer::util::Identity;

use crate::config::Prefetch;
use crate::exec::completer::Completer;
use crate::exec::held::HeldAttempts;

/// What every backend of one worker shares, across restarts.
pub(crate) struct Shared {
    pub store: Store,
    pub queue: String,
    pub worker: WorkerId,
    pub concurrency: u32,
    pub prefetch: Prefetch,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub idle_poll_interval: Duration,
    pub notify: Arc<Notify>,
    pub completer: Completer,
    pub held: HeldAttempts,
}

/// A claim in flight: when it started (by this process's clock), and the jobs.
type Claim = BoxFuture<'static, (DateTime<Utc>, Result<Vec<ClaimedJob>, StoreError>)>;

impl Shared {
    /// How long a worker whose claim came back short waits, unless woken: until its queue's
    /// next `run_at` (every enqueue, retry and resume wakes it, across processes on
    /// Postgres), at most `idle_poll_interval` on Postgres and `poll_interval` on SQLite,
    /// whose other processes send no wake-up. A job that was due at the claim but not taken
    /// (a global limit, a sequence, another worker's claim) is looked for again every
    /// `poll_interval`.
    async fn idle_wait(&self, claimed_at: DateTime<Utc>) -> Duration {
        let longest = if self.store.wakes_across_processes() {
            self.idle_poll_interval
        } else {
            self.poll_interval
        };
        let outlook = match self.store.queue_outlook(&self.queue).await {
            Ok(outlook) => outlook,
            Err(_) => return self.poll_interval,
        };
        match outlook.next_run_at {
            _ if outlook.paused => longest,
            None => longest,
            Some(at) if at <= claimed_at => self.poll_interval.min(longest),
            Some(at) => (at - Utc::now()).to_std().unwrap_or_default().min(longest),
        }
    }
}

/// A queue's jobs as an apalis task source.
pub struct QueueBackend {
    shared: Arc<Shared>,
    buffer: VecDeque<ClaimedJob>,
    claim: Option<(Claim, u32)>,
    idle: Option<BoxFuture<'static, ()>>,
    closing: Option<BoxFuture<'static, ()>>,
    errors: u32,
    pace: Pace,
}

/// How fast this worker hands jobs to its handlers, measured over windows of at least
/// [`Pace::WINDOW`]: what an `auto` prefetch claims ahead for.
struct Pace {
    since: Instant,
    started: u32,
    per_second: f64,
}

impl Pace {
    const WINDOW: Duration = Duration::from_millis(50);

    fn new() -> Pace {
        Pace {
            since: Instant::now(),
            started: 0,
            per_second: 0.0,
        }
    }

    /// The recent pace, closing the window when it is long enough: a window spent idle
    /// brings the pace down, so a worker that turns to slow jobs stops claiming ahead.
    fn per_second(&mut self) -> f64 {
        let elapsed = self.since.elapsed();
        if elapsed >= Self::WINDOW {
            self.per_second = f64::from(self.started) / elapsed.as_secs_f64();
            self.since = Instant::now();
            self.started = 0;
        }
        self.per_second
    }
}

impl QueueBackend {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        QueueBackend {
            shared,
            buffer: VecDeque::new(),
            claim: None,
            idle: None,
            closing: None,
            errors: 0,
            pace: Pace::new(),
        }
    }

    /// Waits for a wake-up of the queue or until [`Shared::idle_wait`] says, whichever comes
    /// first. The jobs of the short claim are handed out meanwhile: the outlook is read
    /// while they run, not before. A wake-up that arrives while it is read is kept by the
    /// `Notify` and ends the wait at once.
    fn sleep(&mut self, claimed_at: DateTime<Utc>) {
        let shared = Arc::clone(&self.shared);
        self.idle = Some(
            async move {
                let wait = shared.idle_wait(claimed_at).await;
                tokio::select! {
                    () = shared.notify.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
            .boxed(),
        );
    }

    /// How many jobs a claim may take now: the free slots plus the prefetch, less what is
    /// already buffered. Jobs held by this worker never exceed `concurrency + prefetch`.
    fn room(&mut self, worker: &WorkerContext) -> u32 {
        let busy = u32::try_from(worker.task_count()).unwrap_or(u32::MAX);
        let buffered = u32::try_from(self.buffer.len()).unwrap_or(u32::MAX);
        let concurrency = self.shared.concurrency;
        let ahead = self
            .shared
            .prefetch
            .ahead(concurrency, self.pace.per_second());
        concurrency
            .saturating_add(ahead)
            .saturating_sub(busy)
            .saturating_sub(buffered)
    }

    /// Claims the next jobs while the buffer still holds some, so that the handlers do not
    /// wait a round trip each time it runs dry. Only while the queue is busy: an idle or
    /// failing worker waits as usual.
    fn read_ahead(&mut self, worker: &WorkerContext) {
        let low_water = (self.shared.concurrency / 2).max(1) as usize;
        if self.claim.is_some() || self.idle.is_some() || self.buffer.len() > low_water {
            return;
        }
        if self.room(worker) >= low_water as u32 {
            self.start_claim(worker);
        }
    }

    fn start_claim(&mut self, worker: &WorkerContext) {
        let limit = self.room(worker).max(1);
        let shared = Arc::clone(&self.shared);
        let claim = async move {
            let claimed_at = Utc::now();
            let store = &shared.store;
            let jobs = store
                .claim(&shared.queue, &shared.worker, limit, shared.lease)
                .await;
            (claimed_at, jobs)
        };
        self.claim = Some((claim.boxed(), limit));
    }

    /// Takes the result of a finished claim: buffers the jobs, or arranges the next wait.
    fn take_claim(
        &mut self,
        claimed: (DateTime<Utc>, Result<Vec<ClaimedJob>, StoreError>),
        limit: u32,
    ) {
        let (claimed_at, result) = claimed;
        match result {
            Ok(jobs) => {
                self.errors = 0;
                // A short batch means nothing more is due: wait before claiming again.
                if (jobs.len() as u32) < limit {
                    self.sleep(claimed_at);
                }
                self.shared.held.hold(&self.shared.worker, &jobs);
                self.buffer.extend(jobs);
            }
            Err(error) => {
                self.errors += 1;
                let wait = Duration::from_millis(100 << self.errors.min(6));
                tracing::warn!(
                    { QUEUE_NAME } = %self.shared.queue, %error, retry_ms = wait.as_millis() as u64,
                    "cannot claim jobs; retrying"
                );
                self.idle = Some(tokio::time::sleep(wait).boxed());
            }
        }
    }
}

impl Drop for QueueBackend {
    /// A backend dropped without closing (its worker restarts) stops holding what it buffered:
    /// those jobs are rescued once their leases run out.
    fn drop(&mut self) {
        let buffered = self.buffer.drain(..).map(|j| (j.id, j.attempt));
        self.shared.held.forget(buffered);
    }
}

impl Backend for QueueBackend {
    type Task = Task<ClaimedJob>;
    type Error = Infallible;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Infallible>>> {
        loop {
            if let Some((claim, limit)) = &mut self.claim
                && let Poll::Ready(result) = claim.poll_unpin(cx)
            {
                let limit = *limit;
                self.claim = None;
                self.take_claim(result, limit);
            }
            if let Some(job) = self.buffer.pop_front() {
                self.pace.started += 1;
                self.read_ahead(worker);
                return Poll::Ready(Some(Ok(Task::new(job))));
            }
            if self.claim.is_some() {
                return Poll::Pending;
            }
            if let Some(idle) = &mut self.idle {
                std::task::ready!(idle.poll_unpin(cx));
                self.idle = None;
            }
            self.start_claim(worker);
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Infallible>> {
        if self.closing.is_none() {
            let unstarted: Vec<ClaimedJob> = self.buffer.drain(..).collect();
            let claim = self.claim.take().map(|(claim, _)| claim);
            let shared = Arc::clone(&self.shared);
            self.closing = Some(close(shared, unstarted, claim).boxed());
        }
        match self.closing.as_mut().map(|closing| closing.poll_unpin(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// Hands back claimed jobs that never started (including those of a claim still in flight),
/// waits for this worker's outcomes to be stored, and marks the worker stopped.
async fn close(shared: Arc<Shared>, mut unstarted: Vec<ClaimedJob>, claim: Option<Claim>) {
    if let Some(claim) = claim
        && let (_, Ok(jobs)) = claim.await
    {
        unstarted.extend(jobs);
    }
    let handed: Vec<Lease> = unstarted.iter().map(|j| j.lease(&shared.worker)).collect();
    // Forgotten first: if the hand-back fails, the leases run out and the jobs are rescued.
    shared
        .held
        .forget(handed.iter().map(|l| (l.job, l.attempt)));
    match shared.store.release(&handed).await {
        Ok(released) if released > 0 => {
            // Other processes' idle workers take them at once.
            shared.store.wakeups().job_available(&shared.queue);
            tracing::info!({ QUEUE_NAME } = %shared.queue, released, "handed back unstarted jobs")
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "cannot hand back unstarted jobs; they will be rescued")
        }
    }
    shared.completer.flush().await;
    if let Err(error) = shared.store.stop_worker(&shared.worker).await {
        tracing::warn!(%error, "cannot mark worker stopped");
    }
}

impl BackendConfig for QueueBackend {
    type Args = ClaimedJob;
    type Id = JobId;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = Identity;

    fn config(&self) -> &Self::Config {
        &()
    }

    /// No layer of the backend's own: `pool` builds the whole stack in one place.
    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        Identity::new()
    }
}
