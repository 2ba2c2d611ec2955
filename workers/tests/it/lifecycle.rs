//! Lifecycle cascades run by a real pool: each step a child job in order (a statement on a
//! target database, a call to a real HTTP server, a push), the result listing every step, a
//! failed step failing the event until it is retried, and a user's events in their order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use longshore_jobs::lifecycle::{LifecycleEvent, Origin};
use longshore_jobs::secret::Keyring;
use longshore_jobs::target::{TargetDef, Targets};
use longshore_jobs::{Client, JobId, JobState, Registry, Store, kinds};
use longshore_workers::egress::EgressConfig;
use longshore_workers::kinds::lifecycle::{JobStep, PushStep, SqlStep, Step, StepDef};
use longshore_workers::kinds::{Http, HttpArgs, Lifecycle, LifecycleConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{RunningPool, TestDb, eventually, fast_pool};

crate::per_backend!(
    crate::support::db =>
    runs_a_cascade_step_by_step_and_reports_each_outcome,
    a_failed_step_fails_the_event_until_it_is_retried,
    retrying_the_failed_event_retries_only_its_failed_step,
    a_step_made_already_is_tracked_not_made_again,
    runs_each_users_events_one_at_a_time_in_their_order,
);

/// A service that answers every request with the status it is set to, and keeps what it got.
struct Service {
    base: String,
    status: Arc<AtomicU16>,
    received: Arc<Mutex<Vec<(String, String)>>>,
}

async fn serve() -> Service {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let status = Arc::new(AtomicU16::new(204));
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let (answer, log) = (Arc::clone(&status), Arc::clone(&received));
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (answer, log) = (Arc::clone(&answer), Arc::clone(&log));
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as content-length says.
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(str::to_owned)
                            })
                            .and_then(|n| n.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                            log.lock().unwrap().push((path, body.to_owned()));
                            break;
                        }
                    }
                }
                let status = answer.load(Ordering::SeqCst);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    Service {
        base,
        status,
        received,
    }
}

fn sql(statement: &str, params: &[&str]) -> Option<SqlStep> {
    Some(SqlStep {
        target: "game".into(),
        statement: statement.into(),
        params: params.iter().map(|p| p.to_string()).collect(),
    })
}

/// The cascades of the examples, on a game database of the test's own.
fn cascades(service: &str) -> LifecycleConfig {
    let record = StepDef {
        sql: sql(
            "INSERT INTO log (user_id, event_type, at) VALUES ($1, $2, $3)",
            &["user_id", "event_type", "occurred_at_ms"],
        ),
        ..StepDef::named("record")
    };
    let deleted = vec![
        StepDef {
            sql: sql("DELETE FROM sessions WHERE user_id = $1", &["user_id"]),
            ..StepDef::named("revoke-sessions")
        },
        StepDef {
            http: Some(HttpArgs {
                url: format!("{service}/users/{{user_id}}/deleted"),
                method: "POST".into(),
                headers: BTreeMap::new(),
                sensitive_headers: Vec::new(),
                json: Some(json!({ "user": "{user_id}", "reason": "{reason_code}" })),
                body: None,
            }),
            max_attempts: Some(2),
            ..StepDef::named("tell-accounts")
        },
        StepDef {
            push: Some(PushStep {
                kind: "account.goodbye".into(),
                payload: Some(json!({ "user": "{user_id}" })),
            }),
            ..StepDef::named("goodbye")
        },
    ];
    LifecycleConfig {
        cascades: [
            ("user.deleted".to_owned(), deleted),
            (
                "user.blocked".to_owned(),
                vec![
                    record.clone(),
                    StepDef {
                        job: Some(JobStep {
                            kind: "noop".into(),
                            args: Some(json!({ "user": "{user_id}" })),
                            queue: Some("lifecycle".into()),
                        }),
                        ..StepDef::named("audit")
                    },
                ],
            ),
            ("user.guest_converted".to_owned(), vec![record]),
        ]
        .into_iter()
        .collect(),
        ..LifecycleConfig::default()
    }
}

struct World {
    client: Client,
    pool: RunningPool,
    game: String,
    _dir: longshore_testkit::TempDir,
}

async fn world(db: &TestDb, service: &str) -> World {
    let dir = longshore_testkit::TempDir::new().unwrap();
    let game = format!("sqlite:{}?mode=rwc", dir.path().join("game.db").display());
    for statement in [
        "CREATE TABLE sessions (user_id TEXT, token TEXT)",
        "CREATE TABLE log (id INTEGER PRIMARY KEY, user_id TEXT, event_type TEXT, at INTEGER)",
        "INSERT INTO sessions VALUES ('42', 'a'), ('42', 'b'), ('7', 'c')",
    ] {
        longshore_testkit::execute(&game, statement, &[]).await;
    }
    let targets = Arc::new(Targets::new(
        [("game".to_owned(), TargetDef { url: game.clone() })].into(),
    ));
    let config = Arc::new(cascades(service));
    let egress = EgressConfig {
        allow: vec!["127.0.0.1".into()],
    }
    .guard()
    .unwrap();
    let mut registry = Registry::new();
    kinds::register_builtins(&mut registry);
    registry
        .register(Lifecycle::new(Arc::clone(&config)))
        .register(Step::new(config, targets))
        .register(Http::new(
            Keyring::default(),
            egress,
            Duration::from_secs(5),
        ));
    let registry = Arc::new(registry);
    let pool = RunningPool::start(
        fast_pool(&[("lifecycle", 8)]),
        db.store.clone(),
        Arc::clone(&registry),
    );
    World {
        client: Client::new(db.store.clone(), registry),
        pool,
        game,
        _dir: dir,
    }
}

fn event(event_type: &str, user: &str, at: i64) -> LifecycleEvent {
    LifecycleEvent {
        event_type: event_type.into(),
        user_id: user.into(),
        occurred_at_ms: at,
        source: Some("accounts".into()),
        actor_type: Some("admin".into()),
        actor_id: Some("9".into()),
        reason_code: Some("gdpr".into()),
        trace_id: None,
    }
}

async fn send(client: &Client, event: LifecycleEvent, id: &str) -> JobId {
    let origin = Origin::Api {
        event_id: id.into(),
    };
    client.enqueue(event.request(origin)).await.unwrap().id
}

async fn settled(store: &Store, id: JobId, state: JobState) -> longshore_jobs::Job {
    eventually(
        Duration::from_secs(30),
        "the lifecycle job to settle",
        || async { store.job(id).await.unwrap().filter(|j| j.state == state) },
    )
    .await
}

async fn count(url: &str, sql: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

async fn runs_a_cascade_step_by_step_and_reports_each_outcome(db: TestDb) {
    let service = serve().await;
    let world = world(&db, &service.base).await;
    let id = send(&world.client, event("user.deleted", "42", 1_000), "e1").await;
    let done = settled(&db.store, id, JobState::Completed).await;

    let result = done.result.unwrap();
    let steps = result["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["revoke-sessions", "tell-accounts", "goodbye"]);
    assert!(steps.iter().all(|s| s["state"] == "completed"), "{result}");
    assert_eq!(
        steps[0]["result"]["rows"], 2,
        "both sessions of user 42 revoked"
    );
    assert_eq!(count(&world.game, "SELECT count(*) FROM sessions").await, 1);
    let received = service.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].0, "/users/42/deleted");
    let body: serde_json::Value = serde_json::from_str(&received[0].1).unwrap();
    assert_eq!(body, json!({ "user": "42", "reason": "gdpr" }));
    let pushes = db.store.pushes_after(0, 10).await.unwrap();
    assert_eq!(pushes.len(), 1);
    assert_eq!(
        (pushes[0].user_id.as_str(), pushes[0].kind.as_str()),
        ("42", "account.goodbye")
    );
    // Each step is a child job of its own, named in its metadata.
    let child: JobId = steps[1]["job_id"].as_str().unwrap().parse().unwrap();
    let child = db.store.job(child).await.unwrap().unwrap();
    assert_eq!(child.kind, "http");
    assert_eq!(child.metadata["parent"], id.to_string());
    assert_eq!(child.metadata["step"], "tell-accounts");
    world.pool.stop().await;
}

/// The service refuses (400: retrying cannot help): the step is discarded, the event fails
/// naming it, and the user's next event waits. The service is fixed and the operator retries
/// the step: the event completes, then the next one runs.
async fn a_failed_step_fails_the_event_until_it_is_retried(db: TestDb) {
    let service = serve().await;
    service.status.store(400, Ordering::SeqCst);
    let world = world(&db, &service.base).await;
    let first = send(&world.client, event("user.deleted", "42", 1_000), "e1").await;
    let failed = settled(&db.store, first, JobState::Discarded).await;
    let error = failed.last_error.unwrap();
    assert!(error.contains("step tell-accounts (http"), "{error}");
    let next = send(&world.client, event("user.blocked", "42", 2_000), "e2").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let waiting = db.store.job(next).await.unwrap().unwrap();
    assert_eq!(
        waiting.state,
        JobState::Available,
        "the user's next event waits"
    );
    assert_eq!(count(&world.game, "SELECT count(*) FROM log").await, 0);

    service.status.store(204, Ordering::SeqCst);
    let progress = db.store.job_progress(first).await.unwrap().unwrap();
    let step: JobId = progress["steps"][1]["job"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    db.store.retry(step).await.unwrap();
    let done = settled(&db.store, first, JobState::Completed).await;
    let steps = done.result.unwrap()["steps"].clone();
    assert!(
        steps
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "completed"),
        "{steps}"
    );
    settled(&db.store, next, JobState::Completed).await;
    assert_eq!(count(&world.game, "SELECT count(*) FROM log").await, 1);
    assert_eq!(
        service.received.lock().unwrap().len(),
        2,
        "one refused, one taken"
    );
    world.pool.stop().await;
}

/// The operator retries the failed lifecycle job itself: only the step that failed runs
/// again, and the event completes.
async fn retrying_the_failed_event_retries_only_its_failed_step(db: TestDb) {
    let service = serve().await;
    service.status.store(400, Ordering::SeqCst);
    let world = world(&db, &service.base).await;
    let id = send(&world.client, event("user.deleted", "42", 1_000), "e1").await;
    settled(&db.store, id, JobState::Discarded).await;
    service.status.store(204, Ordering::SeqCst);
    db.store.retry(id).await.unwrap();
    let done = settled(&db.store, id, JobState::Completed).await;
    let result = done.result.unwrap();
    let mut attempts = Vec::new();
    for step in result["steps"].as_array().unwrap() {
        let child: JobId = step["job_id"].as_str().unwrap().parse().unwrap();
        attempts.push(db.store.job(child).await.unwrap().unwrap().attempt);
    }
    assert_eq!(
        attempts,
        [1, 2, 1],
        "only tell-accounts ran again: {result}"
    );
    world.pool.stop().await;
}

/// A step job that exists already under its key (made by an attempt whose progress was lost)
/// is the one the event waits for and reports; no second one is made.
async fn a_step_made_already_is_tracked_not_made_again(db: TestDb) {
    let service = serve().await;
    db.store.pause_queue("lifecycle").await.unwrap();
    let world = world(&db, &service.base).await;
    let id = send(&world.client, event("user.blocked", "7", 1_000), "e1").await;
    let made = world
        .client
        .enqueue(longshore_jobs::EnqueueRequest {
            queue: Some("lifecycle".into()),
            unique: Some(longshore_jobs::UniqueOptions {
                key: format!("{id}:audit"),
                scope: longshore_jobs::UniqueScope::Any,
                window: None,
            }),
            ..longshore_jobs::EnqueueRequest::new("noop", json!({}))
        })
        .await
        .unwrap()
        .id;
    db.store.resume_queue("lifecycle").await.unwrap();
    let done = settled(&db.store, id, JobState::Completed).await;
    let result = done.result.unwrap();
    assert_eq!(result["steps"][1]["name"], "audit");
    assert_eq!(result["steps"][1]["job_id"], made.to_string(), "{result}");
    let filter = longshore_jobs::admin::JobFilter {
        unique_key: Some(format!("{id}:audit")),
        ..Default::default()
    };
    assert_eq!(
        db.store.list_jobs(&filter, None, 10).await.unwrap().len(),
        1
    );
    world.pool.stop().await;
}

/// Four users' events, five each, enqueued in order and run by eight slots at once: each
/// user's run one at a time, in the order they came.
async fn runs_each_users_events_one_at_a_time_in_their_order(db: TestDb) {
    let service = serve().await;
    let world = world(&db, &service.base).await;
    let mut last = Vec::new();
    for n in 0..5 {
        for user in ["a", "b", "c", "d"] {
            let kind = if n % 2 == 0 {
                "user.blocked"
            } else {
                "user.guest_converted"
            };
            let id = send(
                &world.client,
                event(kind, user, n + 1),
                &format!("{user}{n}"),
            )
            .await;
            last.push(id);
        }
    }
    for id in last {
        settled(&db.store, id, JobState::Completed).await;
    }
    let pool = sqlx::SqlitePool::connect(&world.game).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT user_id, at FROM log ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    for user in ["a", "b", "c", "d"] {
        let order: Vec<i64> = rows
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, at)| *at)
            .collect();
        assert_eq!(
            order,
            [1, 2, 3, 4, 5],
            "user {user}'s events in their order"
        );
    }
    world.pool.stop().await;
}
