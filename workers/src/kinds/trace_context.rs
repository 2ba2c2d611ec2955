//! The W3C trace context (`traceparent`) of the requests the built-in kinds send, so that the
//! services they call can join the request to a trace.

use longshore_jobs::telemetry::{
    self, ERROR_TYPE, HTTP_METHOD, HTTP_STATUS, JOB_KIND, OTEL_KIND, OTEL_NAME, OTEL_STATUS,
    OUTCOME, SERVER_ADDRESS, WEBHOOK_ENDPOINT, carried, current_traceparent,
};
use opentelemetry::KeyValue;

/// The client span of one request a built-in kind sends (`POST`, per the HTTP conventions).
/// Its `traceparent` is [`traceparent`] called inside it.
pub(crate) fn client_span(method: &str, url: &reqwest::Url) -> tracing::Span {
    tracing::info_span!(
        "request",
        { OTEL_NAME } = method,
        { OTEL_KIND } = "client",
        { HTTP_METHOD } = method,
        { SERVER_ADDRESS } = url.host_str().unwrap_or(""),
        { HTTP_STATUS } = tracing::field::Empty,
        { ERROR_TYPE } = tracing::field::Empty,
        { OUTCOME } = tracing::field::Empty,
        { WEBHOOK_ENDPOINT } = tracing::field::Empty,
        { OTEL_STATUS } = tracing::field::Empty,
    )
}

/// Records how a request ended on its span and in the deliveries counter: `delivered`,
/// `retryable` or `refused`, with the status or the class of failure (never its text).
pub(crate) fn record_delivery(
    span: &tracing::Span,
    kind: &'static str,
    status: Option<u16>,
    outcome: &'static str,
) {
    let error_type = match (status, outcome) {
        (_, "delivered") => None,
        (Some(status), _) => Some(status.to_string()),
        (None, "refused") => Some("refused".to_owned()),
        (None, _) => Some("no_answer".to_owned()),
    };
    if let Some(status) = status {
        span.record(HTTP_STATUS, status);
    }
    span.record(OUTCOME, outcome);
    let mut attributes = vec![
        KeyValue::new(JOB_KIND, kind),
        KeyValue::new(OUTCOME, outcome),
    ];
    if let Some(error_type) = error_type {
        span.record(ERROR_TYPE, error_type.as_str());
        span.record(OTEL_STATUS, "error");
        attributes.push(KeyValue::new(ERROR_TYPE, error_type));
    }
    telemetry::metrics::get().deliveries.add(1, &attributes);
}

/// A W3C `traceparent` for one request. When traces are exported, the current span's (the
/// delivery's, inside its attempt's). Otherwise a new span id in the trace of `metadata`'s
/// `traceparent` when it holds a valid one (its enqueuer's), else in a new trace.
pub(crate) fn traceparent(metadata: &serde_json::Value) -> String {
    if let Some(current) = current_traceparent() {
        return current;
    }
    let trace_id = match carried(metadata) {
        Some(parent) => parent.trace_id().to_string(),
        None => format!("{:032x}", nonzero::<u128>()),
    };
    format!("00-{trace_id}-{:016x}-01", nonzero::<u64>())
}

/// A random number other than zero (an all-zero trace or span id is invalid).
fn nonzero<T>() -> T
where
    T: Default + PartialEq,
    rand::distr::StandardUniform: rand::distr::Distribution<T>,
{
    loop {
        let n: T = rand::random();
        if n != T::default() {
            return n;
        }
    }
}

#[cfg(test)]
mod tests {
    use longshore_jobs::telemetry::parse_traceparent;

    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_request_joins_the_trace_its_job_carries_with_a_span_of_its_own() {
        let metadata = serde_json::json!({ "traceparent": PARENT });
        let first = traceparent(&metadata);
        let second = traceparent(&metadata);
        for header in [&first, &second] {
            let context = parse_traceparent(header).unwrap();
            assert_eq!(
                context.trace_id().to_string(),
                "0af7651916cd43dd8448eb211c80319c"
            );
            assert!(context.is_sampled());
            assert!(!header.contains("b7ad6b7169203331"), "a new span: {header}");
        }
        assert_ne!(first, second);
    }

    #[test]
    fn without_a_valid_trace_a_request_starts_a_new_one() {
        for metadata in [
            serde_json::json!({}),
            serde_json::json!({ "traceparent": 42 }),
            serde_json::json!({ "traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01" }),
            serde_json::json!({ "traceparent": "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01" }),
            serde_json::json!({ "traceparent": "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01" }),
            serde_json::json!({ "traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }),
            serde_json::json!({ "traceparent": format!("{PARENT}-extra") }),
        ] {
            let header = traceparent(&metadata);
            let context = parse_traceparent(&header).expect("a valid traceparent");
            assert_ne!(
                context.trace_id().to_string(),
                "0af7651916cd43dd8448eb211c80319c",
                "{metadata}"
            );
            assert!(context.is_sampled());
            assert_eq!(header.len(), 55);
        }
        assert_ne!(
            traceparent(&serde_json::json!({})),
            traceparent(&serde_json::json!({}))
        );
    }
}
