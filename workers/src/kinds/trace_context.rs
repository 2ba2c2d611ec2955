//! The W3C trace context (`traceparent`) of the requests the built-in kinds send, so that the
//! services they call can join the request to a trace.

/// A W3C `traceparent` for one request: a new span in the trace of `metadata`'s
/// `traceparent` when it holds a valid one (its enqueuer's context: no OpenTelemetry context
/// lives in this process), else in a new trace.
pub(crate) fn traceparent(metadata: &serde_json::Value) -> String {
    let parent = metadata
        .get("traceparent")
        .and_then(serde_json::Value::as_str)
        .and_then(trace_of);
    let (trace_id, flags) = match parent {
        Some((trace_id, flags)) => (trace_id.to_owned(), flags.to_owned()),
        None => (format!("{:032x}", nonzero::<u128>()), "01".to_owned()),
    };
    format!("00-{trace_id}-{:016x}-{flags}", nonzero::<u64>())
}

/// The trace id and flags of a valid version-00 `traceparent`.
fn trace_of(header: &str) -> Option<(&str, &str)> {
    let mut parts = header.split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && s.bytes().any(|b| b != b'0')
    };
    let flags_ok = flags.len() == 2 && flags.bytes().all(|b| b.is_ascii_hexdigit());
    (parts.next().is_none()
        && version == "00"
        && hex(trace_id, 32)
        && hex(parent_id, 16)
        && flags_ok)
        .then_some((trace_id, flags))
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
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_request_joins_the_trace_its_job_carries_with_a_span_of_its_own() {
        let metadata = serde_json::json!({ "traceparent": PARENT });
        let first = traceparent(&metadata);
        let second = traceparent(&metadata);
        for header in [&first, &second] {
            let (trace_id, flags) = trace_of(header).unwrap();
            assert_eq!(
                (trace_id, flags),
                ("0af7651916cd43dd8448eb211c80319c", "01")
            );
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
            let (trace_id, flags) = trace_of(&header).expect("a valid traceparent");
            assert_ne!(trace_id, "0af7651916cd43dd8448eb211c80319c", "{metadata}");
            assert_eq!(flags, "01");
            assert_eq!(header.len(), 55);
        }
        assert_ne!(
            traceparent(&serde_json::json!({})),
            traceparent(&serde_json::json!({}))
        );
    }
}
