//! The handler service: runs one attempt of a claimed job with its kind's handler and turns
//! what happened into an [`Outcome`]. It is the one place that decides: success, retry after
//! the backoff or discard once the attempts are used up, snooze, cancel, or interrupted, for
//! a handler that returned, failed, timed out, panicked or was stopped.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;
use tracing::Instrument;

use apalis_core::task::Task;
use futures::future::BoxFuture;
use longshore_jobs::{
    ClaimedJob, Client, ErrorAction, ErrorReport, JobContext, JobError, JobResult, Outcome,
    WorkerId,
};

use crate::exec::held::{HeldAttempts, StopReason, StopSignal};

/// Runs claimed jobs. One per worker; cheap to clone.
#[derive(Clone)]
pub struct Dispatch {
    client: Client,
    held: HeldAttempts,
    worker: WorkerId,
    cancel_grace: Duration,
}

impl Dispatch {
    /// A dispatcher for `worker`, running the kinds `client` knows (and giving handlers
    /// that client), that aborts a stopped handler after `cancel_grace`.
    pub fn new(
        client: Client,
        held: HeldAttempts,
        worker: WorkerId,
        cancel_grace: Duration,
    ) -> Self {
        Dispatch {
            client,
            held,
            worker,
            cancel_grace,
        }
    }
}

impl tower::Service<Task<ClaimedJob>> for Dispatch {
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Outcome, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<ClaimedJob>) -> Self::Future {
        let this = self.clone();
        let (job, _) = task.take();
        Box::pin(async move { Ok(this.run(job).await) })
    }
}

impl Dispatch {
    async fn run(self, job: ClaimedJob) -> Outcome {
        let Some(kind) = self.client.registry().get(&job.kind).cloned() else {
            // Another version of the pool may know the kind: retry rather than discard.
            let error =
                ErrorReport::message(format!("no handler for kind {:?} in this worker", job.kind));
            return retry_or_discard(&job, error, None, &longshore_jobs::Backoff::DEFAULT);
        };
        let backoff = kind.options().backoff;
        let Some(running) = self.held.start((job.id, job.attempt)) else {
            // The lease was taken while the job waited in the buffer: another process runs
            // it, and this attempt's outcome would be refused anyway.
            return Outcome::Interrupted;
        };
        let stop = running.signal();
        let context = JobContext {
            id: job.id,
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            attempt: job.attempt.max(0) as u32,
            max_attempts: job.max_attempts.max(1) as u32,
            created_at: job.created_at,
            worker: self.worker.clone(),
            metadata: job.metadata.clone(),
            cancel: stop.token().clone(),
            client: self.client.clone(),
        };
        let timeout = job
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.max(1) as u64));
        let handler = kind.run(context, job.args.clone());
        let ran = run_until_stopped(handler, timeout, stop, self.cancel_grace).await;
        match (stop.reason(), ran) {
            (_, Ran::Finished(Ok(value))) => Outcome::Completed {
                result: (!value.is_null()).then_some(value),
            },
            (Some(StopReason::Shutdown | StopReason::LeaseLost), _) => Outcome::Interrupted,
            (Some(StopReason::Cancelled), _) => Outcome::Cancel {
                reason: ErrorReport::message("cancelled by an operator"),
            },
            (None, Ran::Finished(Err(error))) => classify(&job, error, &backoff),
            (None, Ran::TimedOut(after)) => {
                let error =
                    ErrorReport::message(format!("timed out after {}ms", after.as_millis()));
                retry_or_discard(&job, error, None, &backoff)
            }
            (None, Ran::Panicked(message)) => {
                let error = ErrorReport::message(format!("handler panicked: {message}"));
                retry_or_discard(&job, error, None, &backoff)
            }
            (None, Ran::Aborted) => Outcome::Interrupted,
        }
    }
}

enum Ran {
    Finished(JobResult),
    TimedOut(Duration),
    Panicked(String),
    Aborted,
}

/// Runs the handler until it finishes, times out, or (once stopped) the grace runs out.
///
/// The handler runs on a task of its own: handlers of one queue then run in parallel on
/// every core, and one that blocks its thread holds up no other job (apalis drives a
/// worker's attempts within a single task).
async fn run_until_stopped(
    handler: BoxFuture<'static, JobResult>,
    timeout: Option<Duration>,
    stop: &StopSignal,
    grace: Duration,
) -> Ran {
    let limited = async move {
        match timeout {
            Some(limit) => match tokio::time::timeout(limit, handler).await {
                Ok(result) => Ran::Finished(result),
                Err(_) => Ran::TimedOut(limit),
            },
            None => Ran::Finished(handler.await),
        }
    };
    // In the attempt's span: what the handler logs and sends belongs to the attempt.
    let mut task = tokio::spawn(limited.instrument(tracing::Span::current()));
    let joined = tokio::select! {
        joined = &mut task => joined,
        () = stop.token().cancelled() => match tokio::time::timeout(grace, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                task.abort();
                return Ran::Aborted;
            }
        },
    };
    match joined {
        Ok(ran) => ran,
        Err(error) if error.is_panic() => Ran::Panicked(panic_message(&error.into_panic())),
        Err(_) => Ran::Aborted,
    }
}

/// The message of a panic's payload.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_owned())
}

/// What a handler's error asks for, bounded by the job's attempts.
fn classify(job: &ClaimedJob, error: JobError, backoff: &longshore_jobs::Backoff) -> Outcome {
    let report = error.report();
    match error.action() {
        ErrorAction::Retry { after } => retry_or_discard(job, report, after, backoff),
        ErrorAction::Fatal => Outcome::Discard { error: report },
        ErrorAction::Snooze(delay) => Outcome::Snooze { delay },
        ErrorAction::Cancel => Outcome::Cancel { reason: report },
    }
}

/// Retries after the backoff (or `after`), or discards when the attempts are used up.
fn retry_or_discard(
    job: &ClaimedJob,
    error: ErrorReport,
    after: Option<Duration>,
    backoff: &longshore_jobs::Backoff,
) -> Outcome {
    if job.attempt >= job.max_attempts {
        return Outcome::Discard { error };
    }
    let delay = after.unwrap_or_else(|| backoff.delay(job.attempt.max(1) as u32, &mut rand::rng()));
    Outcome::Retry { delay, error }
}
