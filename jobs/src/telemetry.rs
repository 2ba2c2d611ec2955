//! The catalogue of span and field names. Every span and log line uses these constants, so
//! the names stay stable for dashboards and queries.

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
/// OpenTelemetry messaging operation (`process`, `send`).
pub const MESSAGING_OPERATION: &str = "messaging.operation.type";
/// OpenTelemetry messaging destination (the queue).
pub const MESSAGING_DESTINATION: &str = "messaging.destination.name";
/// OpenTelemetry span name override (the exporter names the span by it).
pub const OTEL_NAME: &str = "otel.name";
/// OpenTelemetry span kind (`consumer` for an attempt).
pub const OTEL_KIND: &str = "otel.kind";

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
    MESSAGING_DESTINATION,
    OTEL_NAME,
    OTEL_KIND,
];
