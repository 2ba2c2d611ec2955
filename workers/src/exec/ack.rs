//! The ack layer: outermost around every attempt (see `pool`). It takes the outcome the
//! dispatcher decided and hands it to the completer, fenced by the attempt's lease; an
//! attempt whose lease was lost reports nothing.

use std::task::{Context, Poll};

use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use futures::future::BoxFuture;
use longshore_jobs::telemetry::{JOB_ATTEMPT, JOB_ID, JOB_KIND};
use longshore_jobs::{ClaimedJob, Completion, Outcome, WorkerId};
use tower::{Layer, Service};

use crate::exec::completer::Completer;
use crate::exec::held::{ForgetOnDrop, HeldAttempts};

/// Builds [`AckService`]s.
#[derive(Clone)]
pub struct AckLayer {
    completer: Completer,
    worker: WorkerId,
    held: HeldAttempts,
}

impl AckLayer {
    /// A layer that reports the outcomes of `worker`'s attempts to `completer`.
    pub fn new(completer: Completer, worker: WorkerId, held: HeldAttempts) -> Self {
        AckLayer {
            completer,
            worker,
            held,
        }
    }
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AckService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Reports each attempt's outcome.
#[derive(Clone)]
pub struct AckService<S> {
    inner: S,
    layer: AckLayer,
}

impl<S> Service<Task<ClaimedJob>> for AckService<S>
where
    S: Service<Task<ClaimedJob>, Response = Outcome>,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<(), BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<ClaimedJob>) -> Self::Future {
        let job = task.args.clone();
        let attempt = self.inner.call(task);
        let layer = self.layer.clone();
        Box::pin(async move {
            let key = (job.id, job.attempt);
            let held = ForgetOnDrop::new(layer.held.clone(), key);
            let outcome = match attempt.await.map_err(Into::<BoxDynError>::into) {
                Ok(outcome) => outcome,
                // Only the layers around the dispatcher can fail (it decides every outcome):
                // nothing is stored, and the lease running out gives the job back.
                Err(error) => {
                    tracing::error!({ JOB_ID } = %job.id, %error, "an attempt ended without an outcome");
                    return Err(error);
                }
            };
            if !layer.held.holds(key) {
                tracing::debug!(
                    { JOB_ID } = %job.id, { JOB_ATTEMPT } = job.attempt,
                    "attempt ended after its lease was lost; nothing to store"
                );
                return Ok(());
            }
            log_outcome(&job, &outcome);
            let failed = outcome.error().map(|e| e.message.clone());
            let completion = Completion {
                lease: job.lease(&layer.worker),
                queue: job.queue.clone(),
                outcome,
            };
            layer.completer.submit(completion).await;
            held.disarm();
            match failed {
                Some(message) => Err(message.into()),
                None => Ok(()),
            }
        })
    }
}

fn log_outcome(job: &ClaimedJob, outcome: &Outcome) {
    match outcome {
        Outcome::Discard { error } => tracing::warn!(
            { JOB_ID } = %job.id, { JOB_KIND } = %job.kind, { JOB_ATTEMPT } = job.attempt,
            error = %error.message, "job discarded"
        ),
        Outcome::Retry { error, delay } => tracing::debug!(
            { JOB_ID } = %job.id, { JOB_KIND } = %job.kind, { JOB_ATTEMPT } = job.attempt,
            error = %error.message, delay_ms = delay.as_millis() as u64, "attempt failed"
        ),
        _ => tracing::debug!(
            { JOB_ID } = %job.id, { JOB_KIND } = %job.kind, { JOB_ATTEMPT } = job.attempt,
            outcome = outcome.name(), "attempt finished"
        ),
    }
}
