//! The ack layer: outermost around every attempt (see `pool`). It opens the attempt's
//! `process {queue}` span, takes the outcome the dispatcher decided and hands it to the
//! completer, fenced by the attempt's lease (an attempt whose lease was lost reports
//! nothing), and records the attempt's metrics.

use std::task::{Context, Poll};

use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use futures::future::BoxFuture;
use longshore_jobs::telemetry::{
    self, JOB_ATTEMPT, JOB_ID, JOB_KIND, MESSAGING_DESTINATION, MESSAGING_OPERATION,
    MESSAGING_OPERATION_NAME, MESSAGING_SYSTEM, OTEL_KIND, OTEL_NAME, OTEL_STATUS, OUTCOME,
};
use longshore_jobs::{ClaimedJob, Completion, Outcome, WorkerId};
use opentelemetry::KeyValue;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::config::TraceAttempts;

use crate::exec::completer::Completer;
use crate::exec::held::{ForgetOnDrop, HeldAttempts};

/// Builds [`AckService`]s.
#[derive(Clone)]
pub struct AckLayer {
    completer: Completer,
    worker: WorkerId,
    held: HeldAttempts,
    trace: TraceAttempts,
}

impl AckLayer {
    /// A layer that reports the outcomes of `worker`'s attempts to `completer`, each
    /// attempt's span joined to its job's trace as `trace` says.
    pub fn new(
        completer: Completer,
        worker: WorkerId,
        held: HeldAttempts,
        trace: TraceAttempts,
    ) -> Self {
        AckLayer {
            completer,
            worker,
            held,
            trace,
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
        let span = process_span(&job, self.layer.trace);
        let started = std::time::Instant::now();
        let attempt = span.in_scope(|| self.inner.call(task));
        let layer = self.layer.clone();
        // Metrics only when exported: an attempt's attributes are built once, or not at all.
        let metered = telemetry::exporting().then(|| {
            let attributes = telemetry::metrics::job_attributes(&job.queue, &job.kind);
            let waited = (chrono::Utc::now() - job.run_at).num_milliseconds().max(0);
            telemetry::metrics::get()
                .queue_time
                .record(waited as f64 / 1000.0, &attributes);
            attributes
        });
        let recorded = span.clone();
        let attempt = async move {
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
            record_outcome(&recorded, metered, &outcome, started);
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
        };
        Box::pin(attempt.instrument(span))
    }
}

/// The span of one attempt, per the OpenTelemetry messaging conventions: `process {queue}`,
/// a consumer, linked to (or, as configured, a child of) the trace its job carries.
fn process_span(job: &ClaimedJob, trace: TraceAttempts) -> tracing::Span {
    let span = tracing::info_span!(
        "process",
        { OTEL_NAME } = %format_args!("process {}", job.queue),
        { OTEL_KIND } = "consumer",
        { MESSAGING_SYSTEM } = "longshore",
        { MESSAGING_OPERATION } = "process",
        { MESSAGING_OPERATION_NAME } = "process",
        { MESSAGING_DESTINATION } = %job.queue,
        { JOB_ID } = %job.id,
        { JOB_KIND } = %job.kind,
        { JOB_ATTEMPT } = job.attempt,
        { OUTCOME } = tracing::field::Empty,
        { OTEL_STATUS } = tracing::field::Empty,
    );
    if let Some(parent) = telemetry::carried(&job.metadata) {
        match trace {
            TraceAttempts::Link => {
                use tracing_opentelemetry::OpenTelemetrySpanExt;
                span.add_link(parent);
            }
            TraceAttempts::Child => telemetry::set_remote_parent(&span, parent),
        }
    }
    span
}

/// The attempt's outcome on its span and, when exported, in the metrics.
fn record_outcome(
    span: &tracing::Span,
    metered: Option<[KeyValue; 2]>,
    outcome: &Outcome,
    started: std::time::Instant,
) {
    span.record(OUTCOME, outcome.name());
    if outcome.error().is_some() {
        span.record(OTEL_STATUS, "error");
    }
    let Some([queue, kind]) = metered else {
        return;
    };
    let attributes = [queue, kind, KeyValue::new(OUTCOME, outcome.name())];
    let metrics = telemetry::metrics::get();
    metrics.finished.add(1, &attributes);
    metrics
        .process
        .record(started.elapsed().as_secs_f64(), &attributes);
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
