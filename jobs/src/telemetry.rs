//! The catalogue of telemetry names, and the trace context jobs carry.
//!
//! Every span, log line and metric uses the constants below, so the names stay stable for
//! dashboards and queries (a test checks that no source file spells a catalogued field name
//! out). Span attributes follow the OpenTelemetry semantic conventions where one exists
//! (messaging, HTTP); Longshore's own are under `job.`, `queue.`, `worker.`, `longshore.`.
//! Metric names are in [`metrics`]; none carries a job id, args, user id or error text as an
//! attribute, so their cardinality stays bounded by queues, kinds and outcomes.
//!
//! A job carries its W3C trace context in its metadata's `traceparent`: the `send {queue}`
//! span of its enqueue (see [`send_span`]), unless its enqueuer put one there already (a
//! lifecycle entry's `trace_id`, a request's own `traceparent`), which it keeps. Each attempt's
//! `process {queue}` span is linked to it, or its child (the workers' `trace_attempts`).

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::job::NewJob;

/// The job's id.
pub const JOB_ID: &str = "job.id";
/// The job's kind.
pub const JOB_KIND: &str = "job.kind";
/// The attempt's number.
pub const JOB_ATTEMPT: &str = "job.attempt";
/// The job's queue.
pub const QUEUE_NAME: &str = "queue.name";
/// The worker's id.
pub const WORKER_ID: &str = "worker.id";
/// OpenTelemetry messaging system name (`longshore`).
pub const MESSAGING_SYSTEM: &str = "messaging.system";
/// OpenTelemetry messaging operation type (`send`, `process`, `receive`).
pub const MESSAGING_OPERATION: &str = "messaging.operation.type";
/// OpenTelemetry messaging operation name (`send`, `process`, `ingest`).
pub const MESSAGING_OPERATION_NAME: &str = "messaging.operation.name";
/// OpenTelemetry messaging destination (the queue, the push kind, or the stream read).
pub const MESSAGING_DESTINATION: &str = "messaging.destination.name";
/// OpenTelemetry messaging message id (the job's id, for one job).
pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";
/// OpenTelemetry messaging batch size (jobs of one enqueue, entries of one read).
pub const MESSAGING_BATCH_COUNT: &str = "messaging.batch.message_count";
/// HTTP method of a request served or sent.
pub const HTTP_METHOD: &str = "http.request.method";
/// The route template a request matched (`/api/v1/jobs/{id}`).
pub const HTTP_ROUTE: &str = "http.route";
/// HTTP status of the response.
pub const HTTP_STATUS: &str = "http.response.status_code";
/// The path requested.
pub const URL_PATH: &str = "url.path";
/// The host a request is sent to.
pub const SERVER_ADDRESS: &str = "server.address";
/// A failure's class (`timeout`, `connect`, a status code), never its text.
pub const ERROR_TYPE: &str = "error.type";
/// The outcome of an attempt or a delivery (`completed`, `retryable`, `delivered`, …).
pub const OUTCOME: &str = "longshore.outcome";
/// A schedule's name.
pub const SCHEDULE_NAME: &str = "longshore.schedule.name";
/// A sweep's name.
pub const SWEEP_NAME: &str = "longshore.sweep.name";
/// Rows a sweep pass matched.
pub const SWEEP_MATCHED: &str = "longshore.sweep.rows_matched";
/// Rows a sweep pass acted on.
pub const SWEEP_ACTED: &str = "longshore.sweep.rows_acted";
/// A webhook endpoint's name.
pub const WEBHOOK_ENDPOINT: &str = "longshore.webhook.endpoint";
/// OpenTelemetry span name override (the exporter names the span by it).
pub const OTEL_NAME: &str = "otel.name";
/// OpenTelemetry span kind (`producer`, `consumer`, `server`, `client`, `internal`).
pub const OTEL_KIND: &str = "otel.kind";
/// OpenTelemetry span status (`error` for a failed attempt or request).
pub const OTEL_STATUS: &str = "otel.status_code";

/// Every name above: a test checks that spans and log lines across the workspace use the
/// constants, never the names spelled out.
pub const NAMES: &[&str] = &[
    JOB_ID,
    JOB_KIND,
    JOB_ATTEMPT,
    QUEUE_NAME,
    WORKER_ID,
    MESSAGING_SYSTEM,
    MESSAGING_OPERATION,
    MESSAGING_OPERATION_NAME,
    MESSAGING_DESTINATION,
    MESSAGING_MESSAGE_ID,
    MESSAGING_BATCH_COUNT,
    HTTP_METHOD,
    HTTP_ROUTE,
    HTTP_STATUS,
    URL_PATH,
    SERVER_ADDRESS,
    ERROR_TYPE,
    OUTCOME,
    SCHEDULE_NAME,
    SWEEP_NAME,
    SWEEP_MATCHED,
    SWEEP_ACTED,
    WEBHOOK_ENDPOINT,
    OTEL_NAME,
    OTEL_KIND,
    OTEL_STATUS,
];

/// The metrics every process records, exported over OTLP when an endpoint is configured
/// (`/metrics` adds the cluster-wide figures read from the database). Durations are in
/// seconds, as the semantic conventions ask.
pub mod metrics {
    use std::sync::OnceLock;

    use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
    use opentelemetry::{KeyValue, global};

    /// Jobs stored by enqueues (`messaging.destination.name`, `job.kind`).
    pub const JOBS_ENQUEUED: &str = "longshore.jobs.enqueued";
    /// Attempts finished (`messaging.destination.name`, `job.kind`, `longshore.outcome`).
    pub const JOBS_FINISHED: &str = "longshore.jobs.finished";
    /// How long an attempt ran (`messaging.destination.name`, `job.kind`, `longshore.outcome`).
    pub const PROCESS_DURATION: &str = "messaging.process.duration";
    /// How long a job waited between becoming due and being claimed
    /// (`messaging.destination.name`, `job.kind`).
    pub const QUEUE_TIME: &str = "longshore.job.queue_time";
    /// Webhook and HTTP deliveries by outcome (`longshore.outcome`: `delivered`, `retryable`,
    /// `refused`; `error.type`).
    pub const DELIVERIES: &str = "longshore.deliveries";
    /// Rows sweep passes matched and acted on (`longshore.sweep.name`, `longshore.outcome`:
    /// `matched`, `acted`).
    pub const SWEEP_ROWS: &str = "longshore.sweep.rows";
    /// Clients connected to the event stream (SSE) of this process.
    pub const SSE_CLIENTS: &str = "longshore.sse.clients";
    /// Requests served by the API (`http.request.method`, `http.route`,
    /// `http.response.status_code`).
    pub const HTTP_DURATION: &str = "http.server.request.duration";
    /// Store operations (`db.operation.name`: the store method).
    pub const STORE_DURATION: &str = "longshore.store.operation.duration";
    /// The attribute naming a store operation.
    pub const DB_OPERATION: &str = "db.operation.name";

    /// Every metric name above, for the test that reads them back.
    pub const ALL: &[&str] = &[
        JOBS_ENQUEUED,
        JOBS_FINISHED,
        PROCESS_DURATION,
        QUEUE_TIME,
        DELIVERIES,
        SWEEP_ROWS,
        SSE_CLIENTS,
        HTTP_DURATION,
        STORE_DURATION,
    ];

    /// The instruments, made from the global meter at first use: after the process has set
    /// its meter provider (or never: then they record nothing, at the cost of a call).
    pub struct Instruments {
        /// [`JOBS_ENQUEUED`].
        pub enqueued: Counter<u64>,
        /// [`JOBS_FINISHED`].
        pub finished: Counter<u64>,
        /// [`PROCESS_DURATION`].
        pub process: Histogram<f64>,
        /// [`QUEUE_TIME`].
        pub queue_time: Histogram<f64>,
        /// [`DELIVERIES`].
        pub deliveries: Counter<u64>,
        /// [`SWEEP_ROWS`].
        pub sweep_rows: Counter<u64>,
        /// [`SSE_CLIENTS`].
        pub sse_clients: UpDownCounter<i64>,
        /// [`HTTP_DURATION`].
        pub http: Histogram<f64>,
        /// [`STORE_DURATION`].
        pub store: Histogram<f64>,
    }

    /// The process's instruments.
    pub fn get() -> &'static Instruments {
        static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
        INSTRUMENTS.get_or_init(|| {
            let meter = global::meter("longshore");
            let seconds = |name: &'static str, what: &'static str| {
                meter
                    .f64_histogram(name)
                    .with_unit("s")
                    .with_description(what)
                    .build()
            };
            Instruments {
                enqueued: meter
                    .u64_counter(JOBS_ENQUEUED)
                    .with_description("jobs stored by enqueues")
                    .build(),
                finished: meter
                    .u64_counter(JOBS_FINISHED)
                    .with_description("attempts finished, by outcome")
                    .build(),
                process: seconds(PROCESS_DURATION, "how long an attempt ran"),
                queue_time: seconds(QUEUE_TIME, "from due to started"),
                deliveries: meter
                    .u64_counter(DELIVERIES)
                    .with_description("webhook and HTTP deliveries, by outcome")
                    .build(),
                sweep_rows: meter
                    .u64_counter(SWEEP_ROWS)
                    .with_description("rows sweep passes matched and acted on")
                    .build(),
                sse_clients: meter
                    .i64_up_down_counter(SSE_CLIENTS)
                    .with_description("clients connected to the event stream")
                    .build(),
                http: seconds(HTTP_DURATION, "API requests served"),
                store: seconds(STORE_DURATION, "store operations"),
            }
        })
    }

    /// The attributes of a job's metrics.
    pub fn job_attributes(queue: &str, kind: &str) -> [KeyValue; 2] {
        [
            KeyValue::new(super::MESSAGING_DESTINATION, queue.to_owned()),
            KeyValue::new(super::JOB_KIND, kind.to_owned()),
        ]
    }
}

static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that this process exports traces or metrics: what only telemetry needs (an HTTP
/// request's route template) is then worked out.
pub fn set_exporting() {
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process exports traces or metrics.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The span context of a valid version-00 W3C `traceparent`, as a remote parent.
pub fn parse_traceparent(header: &str) -> Option<SpanContext> {
    let mut parts = header.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if parts.next().is_some()
        || version != "00"
        || !hex(trace_id, 32)
        || !hex(span_id, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & 1),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// A span context as a W3C `traceparent`.
pub fn format_traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// The trace context a job's metadata carries, when valid.
pub fn carried(metadata: &serde_json::Value) -> Option<SpanContext> {
    metadata
        .get("traceparent")
        .and_then(serde_json::Value::as_str)
        .and_then(parse_traceparent)
}

/// The context of `span` when traces are exported (none when they are not: without an
/// OpenTelemetry layer every span's context is empty).
pub fn context_of(span: &tracing::Span) -> Option<SpanContext> {
    let context = span.context();
    let own = context.span().span_context().clone();
    own.is_valid().then_some(own)
}

/// The current span as a W3C `traceparent`, when traces are exported.
pub fn current_traceparent() -> Option<String> {
    context_of(&tracing::Span::current()).map(|c| format_traceparent(&c))
}

/// Makes `span` a child of `parent` (a remote context: a job's, a request's).
pub fn set_remote_parent(span: &tracing::Span, parent: SpanContext) {
    let context = opentelemetry::Context::new().with_remote_span_context(parent);
    // Fails only when the span has already started, which a new span has not.
    let _ = span.set_parent(context);
}

/// A producer span, `{operation} {destination}` per the messaging conventions, over `count`
/// messages to one destination (a queue, a push kind), or to several (then unnamed).
pub(crate) fn producer_span<'a>(
    operation: &'static str,
    mut destinations: impl Iterator<Item = &'a str>,
    count: usize,
) -> tracing::Span {
    let first = destinations.next().unwrap_or("");
    let destination = if destinations.all(|d| d == first) {
        first
    } else {
        ""
    };
    let name = match destination {
        "" => operation.to_owned(),
        destination => format!("{operation} {destination}"),
    };
    let span = tracing::info_span!(
        "send",
        { OTEL_NAME } = %name,
        { OTEL_KIND } = "producer",
        { MESSAGING_SYSTEM } = "longshore",
        { MESSAGING_OPERATION } = "send",
        { MESSAGING_OPERATION_NAME } = operation,
        { MESSAGING_DESTINATION } = destination,
        { MESSAGING_BATCH_COUNT } = tracing::field::Empty,
        { MESSAGING_MESSAGE_ID } = tracing::field::Empty,
    );
    if count > 1 {
        span.record(MESSAGING_BATCH_COUNT, count);
    }
    span
}

/// The `send {queue}` span of one enqueue, a child of the current span. When traces are
/// exported, each job without a `traceparent` of its own gets this span's; a job that
/// carries one keeps it, and the span links to it.
pub(crate) fn send_span(jobs: &mut [NewJob]) -> tracing::Span {
    let queues = jobs.iter().map(|j| j.queue.as_str());
    let span = producer_span("send", queues, jobs.len());
    if span.is_disabled() {
        return span;
    }
    if let [one] = &*jobs {
        span.record(MESSAGING_MESSAGE_ID, tracing::field::display(one.id));
    }
    // Links are set before the span starts (reading its context starts it).
    let mut linked = 0;
    for job in jobs.iter() {
        if let Some(theirs) = carried(&job.metadata)
            && linked < 32
        {
            span.add_link(theirs);
            linked += 1;
        }
    }
    let Some(own) = context_of(&span) else {
        return span;
    };
    let header = serde_json::Value::String(format_traceparent(&own));
    for job in jobs.iter_mut() {
        if carried(&job.metadata).is_none()
            && let Some(metadata) = job.metadata.as_object_mut()
        {
            metadata.insert("traceparent".to_owned(), header.clone());
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_reads_back_as_written() {
        let header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let context = parse_traceparent(header).unwrap();
        assert!(context.is_remote() && context.is_sampled());
        assert_eq!(format_traceparent(&context), header);
    }

    #[test]
    fn a_malformed_traceparent_is_no_context() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_exporter_there_is_no_current_traceparent() {
        assert_eq!(current_traceparent(), None);
    }
}
