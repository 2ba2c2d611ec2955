//! Webhook deliveries from the outside: a receiver that fails, throttles, vanishes and comes
//! back, signatures checked by an independent Standard Webhooks verifier, the breaker, an
//! ordered endpoint, and a destination inside the network.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Proc, TestDb, free_port, wait_ready};

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    headers: HashMap<String, String>,
    body: String,
    status: u16,
}

impl Received {
    fn id(&self) -> &str {
        self.headers.get("webhook-id").map_or("", String::as_str)
    }

    fn data(&self) -> Value {
        serde_json::from_str::<Value>(&self.body).unwrap()["data"].clone()
    }
}

/// How the receiver answers the `n`th request (from 1) of a message: a status and headers.
type Script = Arc<dyn Fn(&str, usize) -> (u16, Vec<(&'static str, String)>) + Send + Sync>;

/// A webhook receiver on loopback that records every request and answers by `script`.
struct Receiver {
    url: String,
    port: u16,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    async fn start(script: Script) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::<Received>::new()));
        let script = Arc::new(Mutex::new(script));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (state_got, state_script) = (Arc::clone(&got), Arc::clone(&script));
        let accepted = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (got, script) = (Arc::clone(&state_got), Arc::clone(&state_script));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (got, script) = (Arc::clone(&got), Arc::clone(&script));
                            async move {
                                use http_body_util::BodyExt;
                                let headers: HashMap<String, String> = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_owned())
                                    })
                                    .collect();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let id = headers.get("webhook-id").cloned().unwrap_or_default();
                                let mut got = got.lock().unwrap();
                                let n = got.iter().filter(|r| r.id() == id).count() + 1;
                                let (status, extra) = (script.lock().unwrap())(&id, n);
                                got.push(Received {
                                    at: Instant::now(),
                                    headers,
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                    status,
                                });
                                let mut response = hyper::Response::builder().status(status);
                                for (name, value) in extra {
                                    response = response.header(name, value);
                                }
                                Ok::<_, std::convert::Infallible>(
                                    response
                                        .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                            b"noted",
                                        )))
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
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            connections,
            got,
            script,
        }
    }

    fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The requests of one message, in order.
    fn of(&self, id: &str) -> Vec<Received> {
        self.got().into_iter().filter(|r| r.id() == id).collect()
    }
}

/// A key for sealing secrets, as an operator makes one.
const KEY: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn serve(db: &TestDb, env: &[(&str, &str)]) -> (Proc, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [&["serve", "--listen", &listen][..], crate::support::FAST].concat();
    let mut all = vec![("LONGSHORE_SECRETS__KEYS", KEY)];
    all.extend_from_slice(env);
    (
        db.spawn_env("serve", &args, &all),
        format!("http://{listen}"),
    )
}

async fn create_endpoint(base: &str, body: Value) -> (String, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/webhook-endpoints"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    (
        created["endpoint"]["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

async fn push(base: &str, event_id: &str, user: &str, kind: &str) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/push"))
        .json(&json!({"event_id": event_id, "user_id": user, "kind": kind, "payload": {"n": event_id}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

async fn get(base: &str, path: &str) -> Value {
    reqwest::get(format!("{base}/api/v1{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Verifies requests with PyPI's `standardwebhooks` (an implementation Longshore did not
/// write): one `ok` or `fail: …` per case.
fn verify(cases: &[(String, String, HashMap<String, String>)]) -> Vec<String> {
    let python = match std::env::var("LONGSHORE_TEST_PYTHON") {
        Ok(python) => python,
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("LONGSHORE_TEST_PYTHON (a python with standardwebhooks) is not set, and CI=true")
        }
        Err(_) => return cases.iter().map(|_| "skipped".to_owned()).collect(),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/verify-webhooks.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for (secret, body, headers) in cases {
        let mut wanted = HashMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            wanted.insert(name, headers[name].clone());
        }
        input.push_str(&json!({"secret": secret, "body": body, "headers": wanted}).to_string());
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deliveries_retry_on_schedule_honour_retry_after_and_verify_independently() {
    let db = TestDb::sqlite().await;
    // 500, 500, then 429 asking for 2 s, then 200.
    let receiver = Receiver::start(Arc::new(|_, n| match n {
        1 | 2 => (500, vec![]),
        3 => (429, vec![("retry-after", "2".to_owned())]),
        _ => (200, vec![]),
    }))
    .await;
    let (_serve, base) = serve(
        &db,
        &[
            ("LONGSHORE_EGRESS__ALLOW", "[\"127.0.0.1\"]"),
            (
                "LONGSHORE_WEBHOOKS__RETRY_SCHEDULE",
                "[\"1s\", \"3s\", \"5s\"]",
            ),
            ("LONGSHORE_WEBHOOKS__BREAKER_FAILURES", "100"),
        ],
    );
    wait_ready(&base).await;
    let (endpoint, secret) =
        create_endpoint(&base, json!({"url": receiver.url, "kinds": ["note"]})).await;
    for n in 0..3 {
        push(&base, &format!("m{n}"), "alice", "note").await;
    }
    push(&base, "other", "alice", "not.subscribed").await;

    let ids: Vec<String> = (0..3).map(|n| format!("push_m{n}")).collect();
    wait_for("every message delivered", || {
        ids.iter()
            .all(|id| receiver.of(id).iter().any(|r| r.status == 200))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut cases = Vec::new();
    for id in &ids {
        let got = receiver.of(id);
        let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [500, 500, 429, 200],
            "{id}: delivered once, after three failures"
        );
        // The schedule's 1 s and 3 s (±10 %), then the 2 s the receiver asked for; the
        // worker polls every 200 ms, hence the slack above.
        for (gap, want) in got
            .windows(2)
            .map(|w| w[1].at - w[0].at)
            .zip([1.0, 3.0, 2.0])
        {
            let gap = gap.as_secs_f64();
            assert!(
                gap >= want * 0.9 - 0.05 && gap <= want * 1.1 + 0.8,
                "{id}: {gap:.2}s for {want}s"
            );
        }
        assert!(got.iter().all(|r| r.headers["webhook-id"] == *id));
        assert_eq!(got[3].data()["event_id"], id.trim_start_matches("push_"));
        cases.push((secret.clone(), got[3].body.clone(), got[3].headers.clone()));
    }
    assert!(
        receiver.got().iter().all(|r| r.id().starts_with("push_m")),
        "only subscribed kinds"
    );

    // A tampered body and a stale timestamp fail the independent verifier.
    let sample = receiver.of(&ids[0]).pop().unwrap();
    let mut stale = sample.headers.clone();
    stale.insert(
        "webhook-timestamp".into(),
        (chrono::Utc::now().timestamp() - 3600).to_string(),
    );
    cases.push((
        secret.clone(),
        sample.body.replace("alice", "mallory"),
        sample.headers.clone(),
    ));
    cases.push((secret.clone(), sample.body.clone(), stale));
    let verdicts = verify(&cases);
    if verdicts[0] != "skipped" {
        assert_eq!(verdicts[..3], ["ok", "ok", "ok"]);
        assert!(verdicts[3].starts_with("fail"), "tampered: {}", verdicts[3]);
        assert!(verdicts[4].contains("too old"), "stale: {}", verdicts[4]);
    }

    // The delivery log has every attempt.
    let log = get(
        &base,
        &format!("/webhook-endpoints/{endpoint}/attempts?limit=100"),
    )
    .await;
    assert_eq!(log["items"].as_array().unwrap().len(), 12);

    // A rotated secret: both the new and the old one verify while the old one's grace runs.
    let rotated: Value = reqwest::Client::new()
        .post(format!(
            "{base}/api/v1/webhook-endpoints/{endpoint}/rotate-secret"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    receiver.set(Arc::new(|_, _| (200, vec![])));
    push(&base, "after-rotation", "alice", "note").await;
    let got = wait_for("the delivery after rotation", || {
        receiver.of("push_after-rotation").pop()
    })
    .await;
    assert_eq!(got.headers["webhook-signature"].split(' ').count(), 2);
    let verdicts = verify(&[
        (new_secret, got.body.clone(), got.headers.clone()),
        (secret, got.body.clone(), got.headers.clone()),
    ]);
    if verdicts[0] != "skipped" {
        assert_eq!(verdicts, ["ok", "ok"]);
    }
}

#[tokio::test]
async fn gone_disables_the_breaker_opens_and_closes_ordered_never_overtake() {
    let db = TestDb::sqlite().await;
    let gone = Receiver::start(Arc::new(|_, _| (410, vec![]))).await;
    let flaky = Receiver::start(Arc::new(|_, _| (500, vec![]))).await;
    // The first message of u1 fails twice; the ones after it must wait for it.
    let ordered = Receiver::start(Arc::new(|id, n| {
        if id == "push_o0" && n <= 2 {
            (503, vec![])
        } else {
            (200, vec![])
        }
    }))
    .await;
    let (_serve, base) = serve(
        &db,
        &[
            ("LONGSHORE_EGRESS__ALLOW", "[\"127.0.0.1\"]"),
            (
                "LONGSHORE_WEBHOOKS__RETRY_SCHEDULE",
                "[\"300ms\", \"300ms\", \"300ms\", \"300ms\"]",
            ),
            ("LONGSHORE_WEBHOOKS__BREAKER_FAILURES", "3"),
            ("LONGSHORE_WEBHOOKS__BREAKER_COOLDOWN", "2s"),
        ],
    );
    wait_ready(&base).await;
    let (gone_id, _) = create_endpoint(&base, json!({"url": gone.url, "kinds": ["gone"]})).await;
    let (flaky_id, _) = create_endpoint(&base, json!({"url": flaky.url, "kinds": ["flaky"]})).await;
    create_endpoint(
        &base,
        json!({"url": ordered.url, "kinds": ["ordered"], "ordered": true}),
    )
    .await;

    // 410 disables the endpoint at once.
    push(&base, "g0", "u", "gone").await;
    push(&base, "g1", "u", "gone").await;
    let endpoint = wait_for_endpoint(&base, &gone_id, |e| e["enabled"] == false).await;
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        gone.got().len() <= 2,
        "no delivery after the endpoint was disabled"
    );

    // Three failures in a row open the breaker; nothing is sent while it is open.
    for n in 0..4 {
        push(&base, &format!("f{n}"), "u", "flaky").await;
    }
    let open = wait_for_endpoint(&base, &flaky_id, |e| e["breaker"] == "open").await;
    assert!(open["consecutive_failures"].as_i64().unwrap() >= 3);
    let sent_when_opened = flaky.got().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        flaky.got().len(),
        sent_when_opened,
        "nothing sent while the breaker is open"
    );
    // It recovers: the probe after the cooldown succeeds and the breaker closes.
    flaky.set(Arc::new(|_, _| (200, vec![])));
    wait_for_endpoint(&base, &flaky_id, |e| e["breaker"] == "closed").await;
    for n in 0..4 {
        let id = format!("push_f{n}");
        wait_for("every flaky delivery", || {
            flaky.of(&id).iter().any(|r| r.status == 200).then_some(())
        })
        .await;
    }
    let types: Vec<String> = get(&base, "/events?type=endpoint.*&limit=100").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    for wanted in [
        "endpoint.disabled",
        "endpoint.failing",
        "endpoint.recovered",
    ] {
        assert!(types.iter().any(|t| t == wanted), "{wanted} in {types:?}");
    }

    // Ordered: u1's later messages wait until its first is delivered; u2's do not wait.
    for (n, user) in ["u1", "u1", "u2", "u1"].iter().enumerate() {
        push(&base, &format!("o{n}"), user, "ordered").await;
    }
    wait_for("every ordered delivery", || {
        (0..4)
            .all(|n| {
                ordered
                    .of(&format!("push_o{n}"))
                    .iter()
                    .any(|r| r.status == 200)
            })
            .then_some(())
    })
    .await;
    let first_done = ordered
        .of("push_o0")
        .into_iter()
        .find(|r| r.status == 200)
        .unwrap()
        .at;
    for later in ["push_o1", "push_o3"] {
        let first_try = ordered.of(later)[0].at;
        assert!(first_try >= first_done, "{later} overtook push_o0");
    }
    let u1: Vec<String> = ordered
        .got()
        .into_iter()
        .filter(|r| r.status == 200 && r.data()["user_id"] == "u1")
        .map(|r| r.id().to_owned())
        .collect();
    assert_eq!(u1, ["push_o0", "push_o1", "push_o3"]);
}

async fn wait_for_endpoint(base: &str, id: &str, test: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let endpoint = get(base, &format!("/webhook-endpoints/{id}")).await;
        if test(&endpoint) {
            return endpoint;
        }
        assert!(
            Instant::now() < deadline,
            "endpoint never got there: {endpoint}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_destination_inside_the_network_is_refused_with_no_connection_made() {
    let db = TestDb::sqlite().await;
    let inside = Receiver::start(Arc::new(|_, _| (200, vec![]))).await;
    // No allow list: loopback is inside.
    let (_serve, base) = serve(&db, &[]);
    wait_ready(&base).await;
    let by_name = format!("http://localhost:{}/hook", inside.port);
    let (endpoint, _) = create_endpoint(&base, json!({"url": by_name, "kinds": ["x"]})).await;
    let (by_address, _) = create_endpoint(&base, json!({"url": inside.url, "kinds": ["x"]})).await;
    let metadata = "http://169.254.169.254/latest/meta-data/";
    let (cloud, _) = create_endpoint(&base, json!({"url": metadata, "kinds": ["x"]})).await;
    push(&base, "x0", "u", "x").await;
    for id in [&endpoint, &by_address, &cloud] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = get(&base, &format!("/webhook-endpoints/{id}/attempts")).await;
            if let Some(attempt) = log["items"].as_array().unwrap().first() {
                let error = attempt["error"].as_str().unwrap();
                assert!(error.contains("refused to connect"), "{error}");
                assert!(attempt["status"].is_null());
                break;
            }
            assert!(Instant::now() < deadline, "no attempt logged for {id}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let connections = inside.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(connections, 0, "the receiver inside got no connection");
}

#[tokio::test]
async fn the_cli_manages_endpoints_and_shows_a_secret_once() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = serve(&db, &[]);
    wait_ready(&base).await;
    let run = |args: &[&str]| crate::support::cli(&base, None, args);
    let created = crate::support::ok(&run(&[
        "webhooks",
        "create",
        "--url",
        "https://hooks.example.com/in",
        "--kind",
        "job.*",
        "--kind",
        "friend.request",
        "-o",
        "json",
    ]));
    let created: Value = serde_json::from_str(&created).unwrap();
    let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));

    let list = crate::support::ok(&run(&["webhooks", "list"]));
    assert!(
        list.contains(&id) && list.contains("job.*,friend.request"),
        "{list}"
    );
    assert!(!list.contains(&secret), "the list never shows a secret");
    let shown = crate::support::ok(&run(&["webhooks", "get", &id, "-o", "json"]));
    assert!(!shown.contains("whsec_"), "{shown}");

    let disabled = crate::support::ok(&run(&["webhooks", "disable", &id]));
    assert!(disabled.contains("disabled"), "{disabled}");
    let enabled = crate::support::ok(&run(&["webhooks", "enable", &id, "-o", "json"]));
    assert_eq!(
        serde_json::from_str::<Value>(&enabled).unwrap()["enabled"],
        true
    );
    let rotated = crate::support::ok(&run(&["webhooks", "rotate-secret", &id]));
    assert!(
        rotated.contains("whsec_") && !rotated.contains(&secret),
        "{rotated}"
    );
    let attempts = crate::support::ok(&run(&["webhooks", "attempts", &id]));
    assert!(attempts.contains("MESSAGE"), "{attempts}");

    let bad = run(&["webhooks", "create", "--url", "ftp://x", "--kind", "x"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("url"));
    let missing = run(&["webhooks", "get", "01a234d6-e249-74b4-815f-5492ea73e2cf"]);
    assert_eq!(missing.status.code(), Some(3));
    crate::support::ok(&run(&["webhooks", "delete", &id]));
    assert_eq!(run(&["webhooks", "get", &id]).status.code(), Some(3));
}

#[tokio::test]
async fn canary_secrets_are_found_nowhere_at_rest_while_deliveries_carry_them() {
    let db = TestDb::sqlite().await;
    let receiver = Receiver::start(Arc::new(|_, _| (200, vec![]))).await;
    let (serve, base) = serve(
        &db,
        &[
            ("LONGSHORE_EGRESS__ALLOW", "[\"127.0.0.1\"]"),
            ("LONGSHORE_LOG", "debug"),
        ],
    );
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let canary = format!("Bearer CANARY-{}", uuid::Uuid::new_v4().simple());
    let job: Value = http
        .post(format!("{base}/api/v1/jobs"))
        .json(&json!({"kind": "http", "args": {
            "url": receiver.url, "headers": {"Authorization": canary, "X-Request": "r1"},
            "json": {"hello": "world"},
        }}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = job["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{job}"))
        .to_owned();
    let (endpoint, secret) =
        create_endpoint(&base, json!({"url": receiver.url, "kinds": ["note"]})).await;
    push(&base, "canary-push", "u", "note").await;

    // The request carries the header, and the delivery is signed with the secret.
    let sent = wait_for("the http job's request", || {
        receiver
            .got()
            .into_iter()
            .find(|r| r.headers.contains_key("authorization"))
    })
    .await;
    assert_eq!(sent.headers["authorization"], canary);
    assert_eq!(sent.body, r#"{"hello":"world"}"#);
    let delivered = wait_for("the delivery", || receiver.of("push_canary-push").pop()).await;
    let verdicts = verify(&[(
        secret.clone(),
        delivered.body.clone(),
        delivered.headers.clone(),
    )]);
    assert!(
        verdicts[0] == "ok" || verdicts[0] == "skipped",
        "{verdicts:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&base, &format!("/jobs/{job_id}")).await["state"] != "completed" {
        assert!(Instant::now() < deadline, "the http job completes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nowhere at rest or in what readers see: not the header, not the secret, not its key.
    let key = secret.trim_start_matches("whsec_").to_owned();
    let canaries = [
        canary.trim_start_matches("Bearer ").to_owned(),
        secret.clone(),
        key,
    ];
    let mut places: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(db.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains(".db") || name.ends_with(".log") {
            places.push((
                name,
                String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned(),
            ));
        }
    }
    assert!(
        places.iter().any(|(n, _)| n.ends_with(".db")),
        "the database file is searched"
    );
    for path in [
        format!("/jobs/{job_id}"),
        format!("/jobs/{job_id}/attempts"),
        format!("/jobs/{job_id}/events"),
        "/events?after=0&limit=1000".to_owned(),
        "/jobs?limit=100".to_owned(),
        "/webhook-endpoints".to_owned(),
        format!("/webhook-endpoints/{endpoint}/attempts"),
        "/audit".to_owned(),
    ] {
        places.push((path.clone(), get(&base, &path).await.to_string()));
    }
    places.push(("the serve log".to_owned(), serve.log_text()));
    for canary in &canaries {
        for (place, text) in &places {
            assert!(
                !text.contains(canary.as_str()),
                "{canary:?} found in {place}"
            );
        }
    }
}

/// With traces exported, each delivery is a client span inside its attempt, and the
/// `traceparent` the endpoint receives is that span's; the deliveries counter says how
/// each ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_delivery_sends_the_traceparent_of_its_exported_span() {
    use longshore_jobs::telemetry::metrics::DELIVERIES;
    let db = TestDb::sqlite().await;
    let receiver = Receiver::start(Arc::new(|_, n| match n {
        1 => (500, vec![]),
        _ => (200, vec![]),
    }))
    .await;
    let (otlp, otlp_base) = crate::otel::Receiver::start().await;
    let mut env = crate::otel::otel_env(&otlp_base);
    env.push(("LONGSHORE_EGRESS__ALLOW", "[\"127.0.0.1\"]".to_owned()));
    env.push(("LONGSHORE_WEBHOOKS__RETRY_SCHEDULE", "[\"1s\"]".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_serve, base) = serve(&db, &env);
    wait_ready(&base).await;
    let (endpoint, _) =
        create_endpoint(&base, json!({"url": receiver.url, "kinds": ["note"]})).await;
    push(&base, "traced", "alice", "note").await;
    wait_for("the message delivered", || {
        receiver
            .of("push_traced")
            .iter()
            .any(|r| r.status == 200)
            .then_some(())
    })
    .await;
    let requests = receiver.of("push_traced");
    assert_eq!(requests.len(), 2, "one failure, then the delivery");
    let calls = otlp
        .spans_until("both deliveries' spans", |spans| {
            let calls: Vec<_> = spans
                .iter()
                .filter(|s| {
                    s.kind == 3 && s.attributes.get("longshore.webhook.endpoint") == Some(&endpoint)
                })
                .cloned()
                .collect();
            (calls.len() == 2).then_some(calls)
        })
        .await;
    let spans = otlp.spans.lock().unwrap().clone();
    for (request, (status, outcome)) in requests
        .iter()
        .zip([("500", "retryable"), ("200", "delivered")])
    {
        let header = &request.headers["traceparent"];
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4, "{header}");
        let call = calls
            .iter()
            .find(|c| c.id == parts[2])
            .unwrap_or_else(|| panic!("no exported span is {header}: {calls:?}"));
        assert_eq!(call.trace, parts[1]);
        assert_eq!(call.name, "POST");
        assert_eq!(call.attributes["http.response.status_code"], status);
        assert_eq!(call.attributes["longshore.outcome"], outcome);
        let attempt = spans
            .iter()
            .find(|s| s.id == call.parent)
            .expect("the delivery's attempt was exported");
        assert_eq!(attempt.name, "process webhooks");
        assert_eq!(attempt.trace, call.trace);
    }
    crate::support::eventually(Duration::from_secs(20), "the deliveries counted", || {
        let points = otlp.points.lock().unwrap().clone();
        let counted = |outcome: &str, error: Option<&str>| {
            points.iter().any(|p| {
                p.metric == DELIVERIES
                    && p.attributes.get("job.kind").map(String::as_str) == Some("longshore.webhook")
                    && p.attributes.get("longshore.outcome").map(String::as_str) == Some(outcome)
                    && p.attributes.get("error.type").map(String::as_str) == error
            })
        };
        let both = counted("retryable", Some("500")) && counted("delivered", None);
        async move { both.then_some(()) }
    })
    .await;
}
