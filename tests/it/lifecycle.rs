//! The lifecycle example end to end: `longshore serve` with `examples/lifecycle/`, a real
//! Redis Stream, the game database on Postgres and an accounts service over HTTP. Entries
//! become jobs that run their cascades; a bad entry is dead-lettered; the API and the CLI say
//! which job an entry became and how the ingester stands; events also come in over the API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use longshore_jobs::JobState;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestDb, cli, eventually, ok, wait_ready};

const SCHEMA: &str = include_str!("../../examples/lifecycle/schema.sql");
const EXAMPLE: &str = include_str!("../../examples/lifecycle/longshore.toml");
/// The trace of the request that deleted user 1.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// An accounts service that is busy for its first call (503, `Retry-After: 1`), takes every
/// later one (204), and keeps each request's head.
async fn accounts_service() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let first = {
                    let mut kept = kept.lock().unwrap();
                    kept.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    kept.len() == 1
                };
                let reply = if first {
                    "HTTP/1.1 503 Busy\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                };
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (base, heads)
}

pub(crate) async fn xadd(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    fields: &[(&str, &str)],
) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query_async(conn).await.unwrap()
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// `examples/lifecycle/` ready to serve: the game database with accounts `1..=accounts`
/// (each with a session and an identity), the accounts service, a fresh stream, and the
/// config file (plus `extra`, TOML) pointing at them. `None` without Redis outside CI.
pub(crate) struct Example {
    pub path: std::path::PathBuf,
    pub stream: String,
    pub redis_url: String,
    pub game: PgPool,
    pub heads: Arc<Mutex<Vec<String>>>,
}

impl Example {
    pub(crate) async fn prepare(db: &TestDb, accounts: i64, extra: &str) -> Option<Example> {
        let redis_url = longshore_testkit::redis_url()?;
        let target_url = longshore_testkit::postgres_target_url().await.unwrap();
        let game = PgPool::connect(&target_url).await.unwrap();
        sqlx::raw_sql(SCHEMA).execute(&game).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO accounts (id) SELECT g FROM generate_series(1, {accounts}) g; \
             INSERT INTO sessions SELECT id, 't' || id FROM accounts; \
             INSERT INTO identities SELECT id, 'device' FROM accounts;"
        )))
        .execute(&game)
        .await
        .unwrap();
        let (service, heads) = accounts_service().await;
        let stream = format!(
            "test:{}:user:lifecycle_events",
            uuid::Uuid::new_v4().simple()
        );
        let mut config: toml::Table = EXAMPLE
            .replace("TARGET_URL", &target_url)
            .replace("http://accounts:8080", &service)
            .replace("\"user:lifecycle_events\"", &format!("{stream:?}"))
            .parse()
            .unwrap();
        let ingester = config["ingesters"][0].as_table_mut().unwrap();
        ingester.insert("redis_url".into(), redis_url.clone().into());
        ingester.insert("block".into(), "200ms".into());
        let egress: toml::Table = "allow = [\"127.0.0.1\"]".parse().unwrap();
        config.insert("egress".into(), egress.into());
        config.extend(extra.parse::<toml::Table>().unwrap());
        let path = db.path("longshore.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        Some(Example {
            path,
            stream,
            redis_url,
            game,
            heads,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_cascades_run_once_per_stream_entry_and_per_api_event() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let Some(example) = Example::prepare(&db, 4, "").await else {
        return;
    };
    let Example {
        path,
        stream,
        redis_url,
        game,
        heads,
    } = example;
    let (_server, base) = db.serve(&path, &[]);
    wait_ready(&base).await;

    let mut conn = longshore_testkit::redis_connection(redis_url.as_str())
        .await
        .unwrap();
    // The events happened an hour ago: inside the gauge's windows (the prune forgets users
    // seen before the longest), and far enough back that "seen at the event's time" and
    // "seen when handled" differ.
    let event_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let at = |offset: i64| (event_ms + offset).to_string();
    let deleted = xadd(
        &mut conn,
        &stream,
        &[
            ("event_type", "user.deleted"),
            ("user_id", "1"),
            ("occurred_at_ms", &at(0)),
            ("reason_code", "gdpr"),
            ("actor_type", "user"),
            ("trace_id", TRACE),
        ],
    )
    .await;
    let blocked = xadd(
        &mut conn,
        &stream,
        &[
            ("event_type", "user.blocked"),
            ("user_id", "2"),
            ("occurred_at_ms", &at(1)),
            ("reason_code", "cheating"),
        ],
    )
    .await;
    let converted = xadd(
        &mut conn,
        &stream,
        &[
            ("event_type", "user.guest_converted"),
            ("user_id", "3"),
            ("occurred_at_ms", &at(2)),
        ],
    )
    .await;
    xadd(
        &mut conn,
        &stream,
        &[("event_type", "user.deleted"), ("user_id", "4")],
    )
    .await;

    // Which job each entry became, by its unique key, from the CLI; each completes.
    for entry in [&deleted, &blocked, &converted] {
        let key = format!("{stream}:{entry}");
        let job: Value = eventually(Duration::from_secs(30), "the entry's job completed", || {
            let key = key.clone();
            let base = base.clone();
            async move {
                let out = cli(
                    &base,
                    None,
                    &["jobs", "list", "--unique-key", &key, "-o", "json"],
                );
                let page: Value = serde_json::from_slice(&out.stdout).ok()?;
                let job = page["items"].get(0)?.clone();
                (job["state"] == "completed").then_some(job)
            }
        })
        .await;
        assert_eq!(job["kind"], "lifecycle");
        let steps = job["result"]["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s["state"] == "completed"), "{job}");
    }
    assert_eq!(
        scalar(
            &game,
            "SELECT count(*) FROM sessions WHERE account_id = 1 AND revoked_at IS NULL"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &game,
            "SELECT count(*) FROM identities WHERE account_id = 1"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &game,
            "SELECT count(*) FROM accounts WHERE id = 2 AND blocked_why = 'cheating'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &game,
            "SELECT count(*) FROM sessions WHERE account_id = 2 AND revoked_at IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &game,
            "SELECT count(*) FROM accounts WHERE id = 3 AND kind = 'registered'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(&game, "SELECT count(*) FROM identities").await,
        3,
        "only user 1's identity went"
    );
    // The accounts service was busy at first: the step retried after its `Retry-After` while
    // the other entries flowed on, and was told in the trace of the request that deleted the
    // user, on each attempt.
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in &heads {
        assert!(
            head.starts_with("POST /internal/users/1/deleted "),
            "{head}"
        );
        assert!(
            head.contains(&format!("traceparent: 00-{TRACE}-")),
            "{head}"
        );
    }
    let calls = longshore_jobs::admin::JobFilter {
        kind: Some("http".into()),
        ..Default::default()
    };
    let calls = db.store.list_jobs(&calls, None, 10).await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].attempt, calls[0].state), (2, JobState::Completed));
    let pushes = db.store.pushes_after(0, 10).await.unwrap();
    let mut kinds: Vec<(&str, &str)> = pushes
        .iter()
        .map(|p| (p.user_id.as_str(), p.kind.as_str()))
        .collect();
    kinds.sort();
    assert_eq!(kinds, [("1", "account.deleted"), ("2", "account.blocked")]);

    // The bad entry is a dead letter; nothing is pending; the API and the CLI say so.
    let http = reqwest::Client::new();
    let list: Value = http
        .get(format!("{base}/api/v1/ingesters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ingester = &list["items"][0];
    assert_eq!(ingester["stream"], stream);
    assert_eq!(ingester["dead_lettered"], 1, "{ingester}");
    assert_eq!(ingester["pending"], 0, "{ingester}");
    assert_eq!(ingester["lag"], 0, "{ingester}");
    assert_eq!(ingester["connected"], true, "{ingester}");
    let table = ok(&cli(&base, None, &["ingesters", "list"]));
    assert!(
        table.contains(&stream) && table.contains("reading"),
        "{table}"
    );
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ready, "ready");

    // Events over the API: the same checks, the same one job per event id.
    let refused = http
        .post(format!("{base}/api/v1/lifecycle-events/batch"))
        .json(&json!({ "events": [
            { "event_id": "a1", "event_type": "user.blocked", "user_id": "4", "occurred_at_ms": 5 },
            { "event_id": "a2", "event_type": "user.blocked", "user_id": "4", "occurred_at_ms": -1 },
            { "event_id": "a3", "event_type": "user.renamed", "user_id": "4", "occurred_at_ms": 5 },
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["events[1].occurred_at_ms", "events[2].event_type"],
        "{problem}"
    );
    let event = json!({ "event_id": "a1", "event_type": "user.blocked", "user_id": "4",
        "occurred_at_ms": event_ms + 9, "reason_code": "spam" });
    let send = || async {
        let answer = http
            .post(format!("{base}/api/v1/lifecycle-events"))
            .json(&event);
        answer.send().await.unwrap().json::<Value>().await.unwrap()
    };
    let (first, again) = (send().await, send().await);
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(first["job_id"], again["job_id"]);
    assert_eq!(first["unique_key"], "lifecycle:a1");
    let id = first["job_id"].as_str().unwrap().parse().unwrap();
    eventually(
        Duration::from_secs(30),
        "the API event's cascade",
        || async {
            let job = db.store.job(longshore_jobs::JobId(id)).await.unwrap()?;
            (job.state == JobState::Completed).then_some(())
        },
    )
    .await;
    assert_eq!(
        scalar(
            &game,
            "SELECT count(*) FROM accounts WHERE id = 4 AND blocked_why = 'spam'"
        )
        .await,
        1
    );
    // Each handled event marked its user seen at the event's time, not when it was handled:
    // all four since a second before the first event; since a minute after it, only the
    // three whose cascades stored a push (a push marks its user seen when it is stored), not
    // user 3, whose conversion stored none.
    let event_time = chrono::DateTime::from_timestamp_millis(event_ms).unwrap();
    let since = [
        event_time - chrono::Duration::seconds(1),
        event_time + chrono::Duration::minutes(1),
    ];
    assert_eq!(db.store.active_users(&since).await.unwrap(), vec![4, 3]);
}

/// An ingester whose Redis does not answer: the API is ready (jobs keep running) and
/// `/readyz` names the ingester as degraded; `ingesters list` says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_an_ingester_that_cannot_reach_redis() {
    let db = TestDb::sqlite().await;
    let port = longshore_testkit::free_port();
    let config = format!(
        "[[ingesters]]\nredis_url = \"redis://127.0.0.1:{port}\"\nstream = \"nowhere\"\n\n\
         [[lifecycle.cascades.\"user.deleted\"]]\nname = \"note\"\njob = {{ kind = \"noop\" }}\n"
    );
    let path = db.path("longshore.toml");
    std::fs::write(&path, config).unwrap();
    let (_server, base) = db.serve(&path, &[]);
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(10), "a degraded line", || async {
        let answer = http.get(format!("{base}/readyz")).send().await.ok()?;
        let status = answer.status();
        let text = answer.text().await.ok()?;
        text.contains("degraded").then_some((status, text))
    })
    .await;
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert!(
        ready
            .1
            .starts_with("ready\ndegraded: ingester nowhere: redis:"),
        "{}",
        ready.1
    );
    let table = ok(&cli(&base, None, &["ingesters", "list"]));
    assert!(
        table.contains("nowhere") && table.contains("redis:"),
        "{table}"
    );
    let job = cli(&base, None, &["jobs", "enqueue", "noop", "--wait"]);
    ok(&job);
}

/// Acceptance of the ingesters under `kill -9`: 10,000 entries written by a pipelined
/// producer, two `longshore worker` processes reading them as one group, one of them killed
/// with SIGKILL three times while its batches sit between their commit and their `XACK` (a
/// debug-only pause holds each batch there): every entry ends as exactly one job, found by its
/// unique key, and nothing is left pending after the idle time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_entries_make_one_job_each_across_kill_9_of_an_ingester() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let Some(redis_url) = longshore_testkit::redis_url() else {
        return;
    };
    let stream = format!("test:{}:kill9", uuid::Uuid::new_v4().simple());
    let config = format!(
        "[[ingesters]]\nredis_url = {redis_url:?}\nstream = {stream:?}\nbatch = 100\n\
         block = \"100ms\"\nmin_idle = \"1s\"\n\n\
         [[lifecycle.cascades.\"user.deleted\"]]\nname = \"note\"\njob = {{ kind = \"noop\" }}\n"
    );
    let path = db.path("longshore.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.to_str().unwrap().to_owned();
    // The jobs are not run here: the test is about making them.
    db.store.pause_queue("lifecycle").await.unwrap();
    let args = [&["worker", "--config", path.as_str()], crate::support::FAST].concat();
    let env = [("LONGSHORE_TEST_INGEST_ACK_DELAY_MS", "150")];
    let reading = |proc: &crate::support::Proc| proc.log_text().contains("ingester reading");
    let steady = db.spawn_env("steady", &args, &env);
    let mut victim = db.spawn_env("victim-0", &args, &env);
    eventually(
        Duration::from_secs(20),
        "both ingesters reading",
        || async { (reading(&steady) && reading(&victim)).then_some(()) },
    )
    .await;

    let producer = {
        let (url, stream) = (redis_url.clone(), stream.clone());
        tokio::spawn(async move {
            let mut conn = longshore_testkit::redis_connection(url.as_str())
                .await
                .unwrap();
            for chunk in 0..100_u64 {
                let mut pipe = redis::pipe();
                for i in chunk * 100..chunk * 100 + 100 {
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("*")
                        .arg("event_type")
                        .arg("user.deleted")
                        .arg("user_id")
                        .arg(i % 997)
                        .arg("occurred_at_ms")
                        .arg(1_764_590_000_000 + i)
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        victim.signal(libc::SIGKILL);
        victim.wait_for_exit(Duration::from_secs(5));
        victim = db.spawn_env(&format!("victim-{round}"), &args, &env);
    }
    producer.await.unwrap();

    let pool = PgPool::connect(&db.url).await.unwrap();
    let mut conn = longshore_testkit::redis_connection(redis_url.as_str())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(90),
        "a job per entry and nothing pending",
        || async {
            let jobs = scalar(&pool, "SELECT count(*) FROM jobs WHERE kind = 'lifecycle'").await;
            let summary: redis::Value = redis::cmd("XPENDING")
                .arg(&stream)
                .arg("longshore")
                .query_async(&mut conn.clone())
                .await
                .ok()?;
            let pending = match summary {
                redis::Value::Array(parts) => match parts.first() {
                    Some(redis::Value::Int(n)) => *n,
                    _ => -1,
                },
                _ => -1,
            };
            (jobs >= 10_000 && pending == 0).then_some(())
        },
    )
    .await;
    let ids: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids.len(), 10_000);
    let keys: Vec<String> = ids.iter().map(|(id, _)| format!("{stream}:{id}")).collect();
    let matched: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT unique_key) FROM jobs WHERE kind = 'lifecycle' AND unique_key = ANY($1)",
    )
    .bind(&keys)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(matched, 10_000, "every entry has its job");
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM jobs WHERE kind = 'lifecycle'").await,
        10_000,
        "and no entry has two"
    );
    // The kills landed between commit and XACK: entries of a killed consumer were claimed.
    let claimed = ["steady", "victim-1", "victim-2", "victim-3"]
        .iter()
        .map(|name| crate::support::read(&db.path(&format!("{name}.log"))))
        .filter(|log| log.contains("claimed entries a stopped consumer left pending"))
        .count();
    assert!(
        claimed >= 1,
        "no entry was ever reclaimed: the kills missed the window"
    );
    drop(steady);
    drop(victim);
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
}
