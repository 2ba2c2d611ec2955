//! OpenTelemetry end to end: `longshore serve` exporting over OTLP/HTTP (protobuf) to a
//! receiver in this test. An API request that enqueues a job, the job's `send` span and each
//! attempt's `process` span are one connected trace (the attempts linked to the `send` span,
//! by default); a lifecycle entry's `trace_id` is the trace of its cascade and of the requests
//! it sends; the metrics arrive with the catalogued names and bounded attributes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use longshore_jobs::telemetry::metrics as names;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use serde_json::{Value, json};

use crate::lifecycle::{Example, xadd};
use crate::support::{FAST, TestDb, eventually, free_port, wait_ready};

/// A span as exported, its ids in hex.
#[derive(Clone, Debug)]
pub(crate) struct Span {
    pub trace: String,
    pub id: String,
    pub parent: String,
    pub name: String,
    /// 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    pub attributes: HashMap<String, String>,
    pub links: Vec<(String, String)>,
    pub service: String,
}

/// One data point of a metric, with its attributes.
#[derive(Clone, Debug)]
pub(crate) struct Point {
    pub metric: String,
    pub attributes: HashMap<String, String>,
}

/// An OTLP/HTTP receiver: `/v1/traces` and `/v1/metrics`, protobuf, keeping what arrives.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub spans: Arc<Mutex<Vec<Span>>>,
    pub points: Arc<Mutex<Vec<Point>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

impl Receiver {
    pub(crate) async fn start() -> (Receiver, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let receiver = Receiver::default();
        let kept = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let kept = kept.clone();
                            async move {
                                use http_body_util::BodyExt;
                                let path = req.uri().path().to_owned();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let status = match path.as_str() {
                                    "/v1/traces" => kept.traces(&body),
                                    "/v1/metrics" => kept.metrics(&body),
                                    _ => 404,
                                };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/x-protobuf")
                                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (receiver, base)
    }

    fn traces(&self, body: &[u8]) -> u16 {
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return 400;
        };
        let mut spans = self.spans.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .map(|r| attributes(&r.attributes))
                .and_then(|a| a.get("service.name").cloned())
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Span {
                        trace: hex(&span.trace_id),
                        id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                        links: span
                            .links
                            .iter()
                            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                            .collect(),
                        service: service.clone(),
                    });
                }
            }
        }
        200
    }

    fn metrics(&self, body: &[u8]) -> u16 {
        let Ok(request) = ExportMetricsServiceRequest::decode(body) else {
            return 400;
        };
        let mut points = self.points.lock().unwrap();
        for resource in request.resource_metrics {
            for scope in resource.scope_metrics {
                for metric in scope.metrics {
                    let sets: Vec<HashMap<String, String>> = match &metric.data {
                        Some(Data::Sum(sum)) => sum
                            .data_points
                            .iter()
                            .map(|p| attributes(&p.attributes))
                            .collect(),
                        Some(Data::Histogram(h)) => h
                            .data_points
                            .iter()
                            .map(|p| attributes(&p.attributes))
                            .collect(),
                        Some(Data::Gauge(g)) => g
                            .data_points
                            .iter()
                            .map(|p| attributes(&p.attributes))
                            .collect(),
                        _ => Vec::new(),
                    };
                    points.extend(sets.into_iter().map(|attributes| Point {
                        metric: metric.name.clone(),
                        attributes,
                    }));
                }
            }
        }
        200
    }

    /// Waits until the spans kept satisfy `found`, and returns its answer.
    pub(crate) async fn spans_until<T>(
        &self,
        what: &str,
        found: impl Fn(&[Span]) -> Option<T>,
    ) -> T {
        eventually(Duration::from_secs(30), what, || {
            let spans = self.spans.lock().unwrap().clone();
            let answer = found(&spans);
            async move { answer }
        })
        .await
    }
}

/// The exporter's settings for a test: short batching so spans arrive within a second.
pub(crate) fn otel_env(receiver: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_owned()),
        ("OTEL_SERVICE_NAME", "longshore-it".to_owned()),
    ]
}

const CALLER_TRACE: &str = "5b8efff798038103d269b633813fc60c";
const CALLER_SPAN: &str = "eee19b7ec3c1b174";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_its_send_span_and_each_attempt_are_one_connected_trace() {
    let db = TestDb::sqlite().await;
    let (receiver, otlp) = Receiver::start().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [&["serve", "--listen", listen.as_str()], FAST].concat();
    let mut env = otel_env(&otlp);
    env.push(("LONGSHORE_LOG__FORMAT", "json".to_owned()));
    env.push(("LONGSHORE_LOG", "warn,longshore_workers=debug".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = db.spawn_env("serve", &args, &env);
    let base = format!("http://{listen}");
    wait_ready(&base).await;

    // A job whose first attempt fails and whose second (run at once by an operator) succeeds.
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/api/v1/jobs"))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({
            "kind": "sleep",
            "args": { "ms": 1, "fail": "flaky", "fail_attempts": 1 },
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("the job's id").to_owned();
    let state = |id: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let job: Value = http
                .get(format!("{base}/api/v1/jobs/{id}"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            job["state"].as_str().map(str::to_owned)
        }
    };
    eventually(Duration::from_secs(20), "the first attempt failed", || {
        let state = state(id.clone());
        async move { (state.await? == "retryable").then_some(()) }
    })
    .await;
    let run = http
        .post(format!("{base}/api/v1/jobs/{id}/run"))
        .send()
        .await
        .unwrap();
    assert!(run.status().is_success(), "{}", run.text().await.unwrap());
    eventually(
        Duration::from_secs(20),
        "the second attempt completed",
        || {
            let state = state(id.clone());
            async move { (state.await? == "completed").then_some(()) }
        },
    )
    .await;

    // The request's span is the caller's child, with the HTTP conventions' attributes.
    let server_span = receiver
        .spans_until("the enqueue request's span", |spans| {
            spans
                .iter()
                .find(|s| s.name == "POST /api/v1/jobs")
                .cloned()
        })
        .await;
    assert_eq!(server_span.kind, 2, "a server span");
    assert_eq!(
        (server_span.trace.as_str(), server_span.parent.as_str()),
        (CALLER_TRACE, CALLER_SPAN)
    );
    assert_eq!(server_span.attributes["http.request.method"], "POST");
    assert_eq!(server_span.attributes["http.route"], "/api/v1/jobs");
    assert_eq!(server_span.attributes["http.response.status_code"], "201");
    assert_eq!(server_span.service, "longshore-it");

    // The send span is the request's child, a producer on the queue.
    let send = receiver
        .spans_until("the send span", |spans| {
            spans.iter().find(|s| s.name == "send default").cloned()
        })
        .await;
    assert_eq!(send.kind, 4, "a producer span");
    assert_eq!(
        (send.trace.as_str(), send.parent.as_str()),
        (CALLER_TRACE, server_span.id.as_str())
    );
    for (key, value) in [
        ("messaging.system", "longshore"),
        ("messaging.operation.type", "send"),
        ("messaging.destination.name", "default"),
        ("messaging.message.id", id.as_str()),
    ] {
        assert_eq!(send.attributes[key], value, "{key}");
    }

    // Each attempt: a consumer span of its own trace, linked to the send span.
    let attempts = receiver
        .spans_until("both attempts' spans", |spans| {
            let attempts: Vec<Span> = spans
                .iter()
                .filter(|s| s.name == "process default")
                .cloned()
                .collect();
            (attempts.len() == 2).then_some(attempts)
        })
        .await;
    let mut outcomes = Vec::new();
    for attempt in &attempts {
        assert_eq!(attempt.kind, 5, "a consumer span");
        assert_eq!(
            attempt.links,
            vec![(CALLER_TRACE.to_owned(), send.id.clone())],
            "linked to the send span"
        );
        assert_ne!(
            attempt.trace, CALLER_TRACE,
            "a trace of its own (link mode)"
        );
        assert_eq!(attempt.attributes["messaging.operation.type"], "process");
        assert_eq!(attempt.attributes["messaging.destination.name"], "default");
        assert_eq!(attempt.attributes["job.id"], id);
        outcomes.push((
            attempt.attributes["job.attempt"].clone(),
            attempt.attributes["longshore.outcome"].clone(),
        ));
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("1".to_owned(), "failed".to_owned()),
            ("2".to_owned(), "completed".to_owned())
        ]
    );

    // The metrics, by their catalogued names, attributes bounded: no job id anywhere.
    let points = eventually(Duration::from_secs(20), "the metrics", || {
        let points = receiver.points.lock().unwrap().clone();
        let has = |name: &str, key: &str, value: &str| {
            points.iter().any(|p| {
                p.metric == name && p.attributes.get(key).map(String::as_str) == Some(value)
            })
        };
        let all = has(names::JOBS_ENQUEUED, "job.kind", "sleep")
            && has(names::JOBS_FINISHED, "longshore.outcome", "failed")
            && has(names::JOBS_FINISHED, "longshore.outcome", "completed")
            && has(
                names::PROCESS_DURATION,
                "messaging.destination.name",
                "default",
            )
            && has(names::QUEUE_TIME, "job.kind", "sleep")
            && has(names::HTTP_DURATION, "http.route", "/api/v1/jobs")
            && has(names::STORE_DURATION, names::DB_OPERATION, "claim");
        async move { all.then_some(points) }
    })
    .await;
    for point in &points {
        assert!(
            !point.attributes.contains_key("job.id")
                && !point.attributes.values().any(|v| v == &id),
            "{point:?}"
        );
    }

    // A JSON log line written inside an attempt names its trace and span.
    server.signal(15);
    server.wait_for_exit(Duration::from_secs(20));
    let logged = server.log_text();
    let line: Value = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "attempt failed")
        .unwrap_or_else(|| panic!("the failed attempt's log line:\n{logged}"));
    let failed = attempts
        .iter()
        .find(|a| a.attributes["job.attempt"] == "1")
        .unwrap();
    assert_eq!(line["trace_id"], failed.trace.as_str(), "{line}");
    assert_eq!(line["span_id"], failed.id.as_str(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycle_entry_s_trace_holds_its_cascade_and_its_deliveries() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // The attempts as children of the job's trace: the cascade reads as one tree.
    let extra = "[pool]\ntrace_attempts = \"child\"";
    let Some(example) = Example::prepare(&db, 1, extra).await else {
        return;
    };
    let Example {
        path,
        stream,
        redis_url,
        heads,
        ..
    } = example;
    let (receiver, otlp) = Receiver::start().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [
        &[
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            listen.as_str(),
        ],
        FAST,
    ]
    .concat();
    let env = otel_env(&otlp);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _server = db.spawn_env("serve", &args, &env);
    wait_ready(&format!("http://{listen}")).await;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let mut conn = longshore_testkit::redis_connection(redis_url.as_str())
        .await
        .unwrap();
    xadd(
        &mut conn,
        &stream,
        &[
            ("event_type", "user.deleted"),
            ("user_id", "1"),
            ("occurred_at_ms", "1764590000000"),
            ("reason_code", "gdpr"),
            ("trace_id", TRACE),
        ],
    )
    .await;

    // The accounts service is called twice (busy, then taken), each call a client span in the
    // entry's trace, whose id is the `traceparent` the service received.
    let calls = receiver
        .spans_until("both calls to the accounts service", |spans| {
            let calls: Vec<Span> = spans
                .iter()
                .filter(|s| s.kind == 3 && s.name == "POST")
                .cloned()
                .collect();
            (calls.len() == 2).then_some(calls)
        })
        .await;
    let received = heads.lock().unwrap().clone();
    for call in &calls {
        assert_eq!(call.trace, TRACE, "{call:?}");
        assert_eq!(call.attributes["server.address"], "127.0.0.1");
        let header = format!("traceparent: 00-{TRACE}-{}-01", call.id);
        assert!(
            received.iter().any(|head| head.contains(&header)),
            "the service got {header}: {received:?}"
        );
    }
    let mut outcomes: Vec<&str> = calls
        .iter()
        .map(|c| c.attributes["longshore.outcome"].as_str())
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["delivered", "retryable"]);

    // The cascade's attempts and its push are in the same trace; the read that took the
    // entry is linked to it.
    let spans = receiver
        .spans_until("the push of the cascade", |spans| {
            spans
                .iter()
                .any(|s| s.name == "publish account.deleted")
                .then(|| spans.to_vec())
        })
        .await;
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let publish = spans
        .iter()
        .find(|s| s.name == "publish account.deleted")
        .unwrap();
    assert_eq!(publish.trace, TRACE);
    assert!(
        spans.iter().any(|s| s.trace == TRACE
            && s.attributes.get("job.kind").map(String::as_str) == Some("lifecycle")),
        "the lifecycle job's attempt is in the entry's trace"
    );
    // Every call hangs, through its attempt, from a span of the trace.
    for call in &calls {
        let attempt = by_id
            .get(call.parent.as_str())
            .expect("the call's parent was exported");
        assert_eq!(attempt.kind, 5, "{attempt:?}");
        assert_eq!(attempt.trace, TRACE);
    }
    let read = spans
        .iter()
        .find(|s| s.name == format!("receive {stream}"))
        .expect("the read's span");
    assert_eq!(read.kind, 5);
    assert_eq!(read.attributes["messaging.system"], "redis");
    assert!(
        read.links.iter().any(|(trace, _)| trace == TRACE),
        "{read:?}"
    );
}
