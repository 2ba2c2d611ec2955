//! `runtime.remove` against a runtime manager served by the test: what each request carries,
//! and what the operation log is told on each attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use longshore_jobs::target::{TargetDef, Targets};
use longshore_jobs::{EnqueueRequest, JobState};
use longshore_workers::kinds::{RemoveContainer, RuntimeConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Backend, RunningPool, TestDb, eventually, fast_pool, registry};

crate::per_backend!(
    crate::support::db =>
    removals_say_who_sends_them_and_log_each_attempt,
);

/// The trace an enqueuer stored in a job's metadata.
const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A request as the runtime manager received it: its path and headers (names lowercased).
type Received = (String, HashMap<String, String>);

/// Serves a runtime manager on a free port that fails (500) the removal of game 7 and
/// removes (204) any other; returns its base URL.
async fn serve_runtime_manager(received: Arc<Mutex<Vec<Received>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let received = Arc::clone(&received);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.ends_with(b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8(head).unwrap();
                let mut lines = head.lines();
                let path = lines.next().unwrap().split(' ').nth(1).unwrap().to_owned();
                let headers = lines
                    .filter_map(|line| line.split_once(": "))
                    .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
                    .collect();
                let status = if path == "/games/7/container" {
                    "500 Internal Server Error"
                } else {
                    "204 No Content"
                };
                received.lock().unwrap().push((path, headers));
                let answer =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    base
}

/// The game database holding the operation log, with the log statement for it: it uses
/// the attempt and the given-up flag but not the detail (`$3`).
async fn game_database(db: &TestDb, dir: &std::path::Path) -> Option<(String, &'static str)> {
    let (url, log) = match db.backend {
        Backend::Postgres => (
            longshore_testkit::postgres_target_url().await?,
            "INSERT INTO removals VALUES ($1, $2, $4::int, $5::boolean)",
        ),
        Backend::Sqlite => (
            format!("sqlite:{}?mode=rwc", dir.join("game.db").display()),
            "INSERT INTO removals VALUES ($1, $2, CAST($4 AS INTEGER), $5)",
        ),
    };
    let table =
        "CREATE TABLE removals (game_id TEXT, outcome TEXT, attempt INTEGER, given_up BOOLEAN)";
    longshore_testkit::execute(&url, table, &[]).await;
    Some((url, log))
}

/// The operation log: (game, outcome, attempt, given up), in order.
async fn logged(url: &str) -> Vec<(String, String, i64, String)> {
    let sql = "SELECT game_id, outcome, CAST(attempt AS BIGINT), CAST(given_up AS TEXT) \
               FROM removals ORDER BY game_id, attempt";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    }
}

async fn removals_say_who_sends_them_and_log_each_attempt(db: TestDb) {
    let dir = longshore_testkit::TempDir::new().unwrap();
    let Some((target_url, log)) = game_database(&db, dir.path()).await else {
        return;
    };
    let received = Arc::new(Mutex::new(Vec::new()));
    let base = serve_runtime_manager(Arc::clone(&received)).await;
    let config = RuntimeConfig {
        url: format!("{base}/games/{{game_id}}/container"),
        target: "game".to_owned(),
        log: log.to_owned(),
        check: None,
        timeout: Duration::from_secs(5),
        max_attempts: 2,
        retry_base: Duration::from_millis(50),
    };
    let targets = [(
        "game".to_owned(),
        TargetDef {
            url: target_url.clone(),
        },
    )];
    let targets = Arc::new(Targets::new(targets.into()));
    let mut kinds = registry();
    kinds.register(RemoveContainer::new(config, targets));
    let kinds = Arc::new(kinds);
    let client = longshore_jobs::Client::new(db.store.clone(), Arc::clone(&kinds));
    let pool = RunningPool::start(fast_pool(&[("default", 2)]), db.store.clone(), kinds);
    let failing = client
        .enqueue(EnqueueRequest {
            metadata: Some(json!({ "traceparent": PARENT })),
            ..EnqueueRequest::new("runtime.remove", json!({ "game_id": 7 }))
        })
        .await
        .unwrap()
        .id;
    let removed = client
        .enqueue(EnqueueRequest::new(
            "runtime.remove",
            json!({ "game_id": "g1" }),
        ))
        .await
        .unwrap()
        .id;
    eventually(Duration::from_secs(20), "both removals end", || async {
        let failing = db.store.job(failing).await.unwrap().unwrap().state;
        let removed = db.store.job(removed).await.unwrap().unwrap().state;
        (failing == JobState::Discarded && removed == JobState::Completed).then_some(())
    })
    .await;
    pool.stop().await;

    let received = received.lock().unwrap().clone();
    let of = |path: &str| -> Vec<HashMap<String, String>> {
        let requests = received.iter().filter(|(p, _)| p == path);
        requests.map(|(_, headers)| headers.clone()).collect()
    };
    let (sevens, ones) = (of("/games/7/container"), of("/games/g1/container"));
    assert_eq!((sevens.len(), ones.len()), (2, 1), "{received:?}");
    let user_agent = concat!("longshore/", env!("CARGO_PKG_VERSION"));
    for headers in sevens.iter().chain(&ones) {
        assert_eq!(headers["user-agent"], user_agent);
    }
    // One key per job and game, the same on the retry.
    assert_eq!(
        sevens[0]["idempotency-key"],
        format!("runtime.remove:{failing}:7")
    );
    assert_eq!(sevens[1]["idempotency-key"], sevens[0]["idempotency-key"]);
    assert_eq!(
        ones[0]["idempotency-key"],
        format!("runtime.remove:{removed}:g1")
    );
    // In the job's trace, a span of its own per request; a job without one starts a trace.
    let (first, second) = (&sevens[0]["traceparent"], &sevens[1]["traceparent"]);
    for header in [first, second] {
        assert!(
            header.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{header}"
        );
        assert!(header.ends_with("-01") && header.len() == 55, "{header}");
        assert_ne!(header, PARENT);
    }
    assert_ne!(first, second);
    let fresh: Vec<&str> = ones[0]["traceparent"].split('-').collect();
    assert_eq!(
        (fresh.len(), fresh[0], fresh[1].len(), fresh[2].len()),
        (4, "00", 32, 16)
    );
    assert_ne!(fresh[1], "0af7651916cd43dd8448eb211c80319c");

    let row = |game: &str, outcome: &str, attempt, given_up: &str| {
        (
            game.to_owned(),
            outcome.to_owned(),
            attempt,
            given_up.to_owned(),
        )
    };
    assert_eq!(
        logged(&target_url).await,
        [
            row("7", "failed", 1, "false"),
            row("7", "failed", 2, "true"),
            row("g1", "removed", 1, "false"),
        ]
    );
}
