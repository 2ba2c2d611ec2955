//! The ack layer: the backend's tower layer, outermost around every attempt. It sees the
//! final result (including caught panics) and hands the outcome to the completer.

use std::sync::Arc;
use std::task::{Context, Poll};

use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use futures::future::BoxFuture;
use longshore_jobs::{Backoff, ClaimedJob, Completion, ErrorReport, Outcome, Registry, WorkerId};
use tower::{Layer, Service};

use crate::completer::Completer;
use crate::dispatch::retry_or_discard;
use crate::held::{ForgetOnDrop, HeldAttempts};

/// A handler panicked; the panic is an attempt failure like any other.
#[derive(Debug, thiserror::Error)]
#[error("handler panicked: {0}")]
pub struct HandlerPanicked(pub String);

/// Builds [`AckService`]s.
#[derive(Clone)]
pub struct AckLayer {
    completer: Completer,
    worker: WorkerId,
    registry: Arc<Registry>,
    held: HeldAttempts,
}

impl AckLayer {
    /// A layer that reports outcomes of `worker`'s attempts to `completer`; an attempt whose
    /// lease was lost (see [`HeldAttempts`]) reports nothing.
    pub fn new(
        completer: Completer,
        worker: WorkerId,
        registry: Arc<Registry>,
        held: HeldAttempts,
    ) -> Self {
        AckLayer {
            completer,
            worker,
            registry,
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

/// Reports each attempt's outcome, fenced by the worker id and attempt.
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
            let result = attempt.await.map_err(Into::<BoxDynError>::into);
            if !layer.held.holds(key) {
                tracing::debug!(
                    job.id = %job.id, job.attempt = job.attempt,
                    "attempt ended after its lease was lost; nothing to store"
                );
                return Ok(());
            }
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(error) => {
                    let backoff = layer
                        .registry
                        .get(&job.kind)
                        .map_or(Backoff::DEFAULT, |k| k.options().backoff);
                    retry_or_discard(
                        &job,
                        ErrorReport::from_error(error.as_ref()),
                        None,
                        &backoff,
                    )
                }
            };
            log_outcome(&job, &outcome);
            let failed = outcome.error().map(|e| e.message.clone());
            layer
                .completer
                .submit(Completion {
                    id: job.id,
                    queue: job.queue.clone(),
                    attempt: job.attempt,
                    worker: layer.worker.clone(),
                    outcome,
                })
                .await;
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
            job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempt,
            error = %error.message, "job discarded"
        ),
        Outcome::Retry { error, delay } => tracing::debug!(
            job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempt,
            error = %error.message, delay_ms = delay.as_millis() as u64, "attempt failed"
        ),
        _ => tracing::debug!(
            job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempt,
            outcome = outcome.name(), "attempt finished"
        ),
    }
}
