//! Ingesters against a real Redis: one job per entry whatever is redelivered, dead letters
//! for what cannot be a job, a group shared by two processes, and Redis lost and back.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::admin::JobFilter;
use longshore_jobs::lifecycle::{Ingesters, LifecycleEvent, Origin};
use longshore_jobs::{Client, Registry, Store, kinds};
use longshore_testkit::{PrivateRedis, free_port, redis_url};
use longshore_workers::ingest::{Ingester, IngesterConfig, IngesterSet};
use longshore_workers::kinds::lifecycle::StepDef;
use longshore_workers::kinds::{Lifecycle, LifecycleConfig};
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use crate::support::{TestDb, eventually};

crate::per_backend!(
    crate::support::db =>
    turns_each_entry_into_one_job_and_dead_letters_the_rest,
    a_redelivered_entry_never_makes_a_second_job,
    two_processes_share_one_group_and_make_each_job_once,
);

const TYPES: [&str; 2] = ["user.deleted", "user.blocked"];

/// An entry's fields as bytes, and an `XRANGE` reply of such entries.
type Fields<'a> = &'a [(&'a str, &'a [u8])];
type RawEntries = Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>;

fn lifecycle_config() -> LifecycleConfig {
    let step = StepDef::job("note", "noop");
    LifecycleConfig {
        cascades: TYPES
            .iter()
            .map(|t| (t.to_string(), vec![step.clone()]))
            .collect(),
        ..LifecycleConfig::default()
    }
}

fn client(store: &Store) -> Client {
    let mut registry = Registry::new();
    kinds::register_builtins(&mut registry);
    registry.register(Lifecycle::new(Arc::new(lifecycle_config())));
    Client::new(store.clone(), Arc::new(registry))
}

/// A stream of this test's own on the shared Redis.
fn config(url: &str) -> IngesterConfig {
    IngesterConfig {
        redis_url: Some(url.to_owned()),
        stream: format!("test:{}:lifecycle", uuid::Uuid::new_v4().simple()),
        batch: 20,
        block: Duration::from_millis(100),
        min_idle: Duration::from_millis(300),
        max_deliveries: 3,
        forget_after: Duration::from_secs(1),
        ..IngesterConfig::default()
    }
}

async fn redis(url: &str) -> MultiplexedConnection {
    longshore_testkit::redis_connection(url).await.unwrap()
}

async fn add(conn: &mut MultiplexedConnection, stream: &str, fields: Fields<'_>) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query_async(conn).await.unwrap()
}

async fn add_event(conn: &mut MultiplexedConnection, stream: &str, user: &str, n: usize) -> String {
    let at = (1_764_590_000_000 + n).to_string();
    let event_type = TYPES[n % 2];
    add(
        conn,
        stream,
        &[
            ("event_type", event_type.as_bytes()),
            ("user_id", user.as_bytes()),
            ("occurred_at_ms", at.as_bytes()),
            ("source", b"accounts"),
        ],
    )
    .await
}

fn start(ingester: Ingester) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(ingester.run(stop.clone()));
    stop
}

fn known() -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    Arc::new(|t: &str| TYPES.contains(&t))
}

async fn lifecycle_jobs(store: &Store) -> usize {
    let filter = JobFilter {
        kind: Some("lifecycle".into()),
        ..JobFilter::default()
    };
    store.list_jobs(&filter, None, 10_000).await.unwrap().len()
}

async fn pending(conn: &mut MultiplexedConnection, config: &IngesterConfig) -> i64 {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(&config.stream)
        .arg(&config.group)
        .query_async(conn)
        .await
        .unwrap();
    match summary {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => panic!("an XPENDING summary: {parts:?}"),
        },
        other => panic!("an XPENDING summary: {other:?}"),
    }
}

/// The dead letters: each as its fields.
async fn dead_letters(
    conn: &mut MultiplexedConnection,
    config: &IngesterConfig,
) -> Vec<BTreeMap<String, String>> {
    let entries: RawEntries = redis::cmd("XRANGE")
        .arg(config.dead_letter())
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap_or_default();
    entries
        .into_iter()
        .map(|(_, fields)| {
            let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
            fields
                .into_iter()
                .map(|(k, v)| (text(k), text(v)))
                .collect()
        })
        .collect()
}

/// Every text in a reply, depth first.
fn texts(value: &redis::Value) -> Vec<String> {
    match value {
        redis::Value::BulkString(bytes) => vec![String::from_utf8_lossy(bytes).into_owned()],
        redis::Value::SimpleString(s) => vec![s.clone()],
        redis::Value::Array(items) => items.iter().flat_map(texts).collect(),
        redis::Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| texts(k).into_iter().chain(texts(v)))
            .collect(),
        _ => Vec::new(),
    }
}

async fn unique_job(store: &Store, key: &str) -> usize {
    let filter = JobFilter {
        unique_key: Some(key.to_owned()),
        ..JobFilter::default()
    };
    store.list_jobs(&filter, None, 10).await.unwrap().len()
}

/// 45 good entries become 45 jobs keyed by their entry ids; an entry missing a field, times
/// that are not positive milliseconds (`yesterday`, `0`, `-5`, `NaN`), an unknown and a
/// differently-cased type, and bytes that are not UTF-8 go to the dead letters with their
/// reason, id and fields, and the entries behind them flow on; nothing stays pending.
async fn turns_each_entry_into_one_job_and_dead_letters_the_rest(db: TestDb) {
    let Some(url) = redis_url() else { return };
    let config = config(&url);
    let mut conn = redis(&url).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(add_event(&mut conn, &config.stream, &format!("u{}", n % 7), n).await);
    }
    let bad: [(Fields<'_>, &str); 8] = [
        (
            &[("event_type", b"user.deleted"), ("occurred_at_ms", b"5")],
            "user_id: is missing",
        ),
        (
            &[
                ("event_type", b"user.deleted"),
                ("user_id", b"1"),
                ("occurred_at_ms", b"yesterday"),
            ],
            "occurred_at_ms",
        ),
        (
            &[
                ("event_type", b"user.deleted"),
                ("user_id", b"1"),
                ("occurred_at_ms", b"0"),
            ],
            "occurred_at_ms",
        ),
        (
            &[
                ("event_type", b"user.deleted"),
                ("user_id", b"1"),
                ("occurred_at_ms", b"-5"),
            ],
            "occurred_at_ms",
        ),
        (
            &[
                ("event_type", b"user.deleted"),
                ("user_id", b"1"),
                ("occurred_at_ms", b"NaN"),
            ],
            "occurred_at_ms",
        ),
        (
            &[
                ("event_type", b"user.renamed"),
                ("user_id", b"1"),
                ("occurred_at_ms", b"5"),
            ],
            "no cascade handles",
        ),
        (
            &[
                ("event_type", b"User.Deleted"),
                ("user_id", b"1"),
                ("occurred_at_ms", b"5"),
            ],
            "no cascade handles",
        ),
        (
            &[
                ("event_type", b"user.deleted"),
                ("user_id", &[0xff, 0xfe]),
                ("occurred_at_ms", b"5"),
            ],
            "not UTF-8",
        ),
    ];
    let mut bad_ids = Vec::new();
    for (fields, _) in &bad {
        bad_ids.push(add(&mut conn, &config.stream, fields).await);
    }
    // The stream keeps flowing behind them.
    for n in 40..45 {
        ids.push(add_event(&mut conn, &config.stream, &format!("u{}", n % 7), n).await);
    }
    let ingester = Ingester::new(config.clone(), "p1", client(&db.store), known());
    let reporter = IngesterSet::new(vec![ingester.reporter(true)]);
    let stop = start(ingester);
    eventually(Duration::from_secs(20), "45 jobs", || async {
        (lifecycle_jobs(&db.store).await == 45).then_some(())
    })
    .await;
    for id in &ids {
        let key = format!("{}:{id}", config.stream);
        assert_eq!(unique_job(&db.store, &key).await, 1, "entry {id}");
    }
    let dead = eventually(Duration::from_secs(10), "8 dead letters", || async {
        let dead = dead_letters(&mut redis(&url).await, &config).await;
        (dead.len() == 8).then_some(dead)
    })
    .await;
    for ((_, why), (dead, id)) in bad.iter().zip(dead.iter().zip(&bad_ids)) {
        assert!(dead["reason"].contains(why), "{dead:?} should say {why}");
        assert_eq!(&dead["original_id"], id);
        assert_eq!(dead["stream"], config.stream);
        assert!(
            dead.contains_key("occurred_at_ms"),
            "the fields travel: {dead:?}"
        );
    }
    assert_eq!(pending(&mut conn, &config).await, 0);
    let reports = reporter.reports().await;
    assert_eq!(reports[0].dead_lettered, 8);
    assert_eq!(reports[0].ingested, 45);
    assert_eq!(reports[0].pending, 0);
    assert_eq!(reports[0].lag, Some(0));
    assert_eq!(reports[0].last_entry_id.as_ref(), ids.last());
    assert!(reporter.degraded().is_empty());
    stop.cancel();
}

/// A consumer reads ten entries and dies before acknowledging them; five of them it had
/// already made into jobs. The ingester claims all ten after the idle time and ends with ten
/// jobs, not fifteen. An entry delivered more often than `max_deliveries` is dead-lettered.
async fn a_redelivered_entry_never_makes_a_second_job(db: TestDb) {
    let Some(url) = redis_url() else { return };
    let config = config(&url);
    let mut conn = redis(&url).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&config.stream)
        .arg(&config.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(add_event(&mut conn, &config.stream, "u1", n).await);
    }
    let poison = add_event(&mut conn, &config.stream, "u2", 99).await;
    // The consumer that dies: it reads everything and acknowledges nothing.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&config.group)
        .arg("gone@old")
        .arg("STREAMS")
        .arg(&config.stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    // The poison entry has been delivered many times already (crash after crash).
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(&config.stream)
        .arg(&config.group)
        .arg("gone@old")
        .arg(0)
        .arg(&poison)
        .arg("RETRYCOUNT")
        .arg(7)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Half were stored before it died.
    let client = client(&db.store);
    let requests = ids[..5]
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let event = LifecycleEvent {
                event_type: TYPES[n % 2].into(),
                user_id: "u1".into(),
                occurred_at_ms: 1_764_590_000_000 + n as i64,
                source: Some("accounts".into()),
                actor_type: None,
                actor_id: None,
                reason_code: None,
                trace_id: None,
            };
            event.request(Origin::Stream {
                stream: config.stream.clone(),
                entry_id: id.clone(),
            })
        })
        .collect();
    for result in client.enqueue_many(requests).await.unwrap() {
        result.unwrap();
    }
    assert_eq!(lifecycle_jobs(&db.store).await, 5);

    let stop = start(Ingester::new(config.clone(), "p2", client, known()));
    eventually(Duration::from_secs(20), "nothing pending", || async {
        let done = pending(&mut redis(&url).await, &config).await == 0;
        done.then_some(())
    })
    .await;
    assert_eq!(lifecycle_jobs(&db.store).await, 10, "one job per entry");
    for id in &ids {
        let key = format!("{}:{id}", config.stream);
        assert_eq!(unique_job(&db.store, &key).await, 1, "entry {id}");
    }
    let dead = dead_letters(&mut conn, &config).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["original_id"], poison);
    assert!(dead[0]["reason"].contains("delivered"), "{dead:?}");
    // The dead consumer, holding nothing now, is forgotten once silent past `forget_after`.
    eventually(
        Duration::from_secs(10),
        "the dead consumer forgotten",
        || async {
            let consumers: redis::Value = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(&config.stream)
                .arg(&config.group)
                .query_async(&mut redis(&url).await)
                .await
                .ok()?;
            let listed = texts(&consumers);
            let gone = listed.iter().any(|t| t == "gone@old");
            let live = listed.iter().any(|t| t.ends_with("@p2"));
            (!gone && live).then_some(())
        },
    )
    .await;
    stop.cancel();
}

/// Two processes (two stores, two consumers of one group) ingest 300 entries at once: 300
/// jobs, each entry once, and both consumers took part.
async fn two_processes_share_one_group_and_make_each_job_once(db: TestDb) {
    let Some(url) = redis_url() else { return };
    let config = config(&url);
    let mut conn = redis(&url).await;
    for n in 0..300 {
        add_event(&mut conn, &config.stream, &format!("u{}", n % 13), n).await;
    }
    let other = db.second_store().await;
    let a = Ingester::new(config.clone(), "a", client(&db.store), known());
    let b = Ingester::new(config.clone(), "b", client(&other), known());
    let reporter = IngesterSet::new(vec![a.reporter(true)]);
    let (stop_a, stop_b) = (start(a), start(b));
    eventually(Duration::from_secs(30), "300 jobs", || async {
        (lifecycle_jobs(&db.store).await >= 300).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "nothing pending", || async {
        (pending(&mut redis(&url).await, &config).await == 0).then_some(())
    })
    .await;
    assert_eq!(lifecycle_jobs(&db.store).await, 300);
    let report = &reporter.reports().await[0];
    let names: HashSet<&str> = report.consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 2, "both consumers joined the group: {names:?}");
    stop_a.cancel();
    stop_b.cancel();
}

/// Redis is down when the ingester starts: `/readyz`'s degraded list names it, and it
/// connects once Redis is up. Redis then restarts empty (it keeps nothing on disk): the
/// ingester makes the group again and takes the entries written after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_when_redis_is_down_at_start_and_after_a_restart() {
    let db = TestDb::new(longshore_testkit::Backend::Sqlite)
        .await
        .unwrap();
    let mut server = PrivateRedis::on(free_port());
    let config = IngesterConfig {
        redis_url: Some(server.url()),
        ..config("unused")
    };
    let ingester = Ingester::new(config.clone(), "p", client(&db.store), known());
    let set = IngesterSet::new(vec![ingester.reporter(true)]);
    let stop = start(ingester);
    let degraded = eventually(Duration::from_secs(10), "a degraded ingester", || async {
        set.degraded().pop()
    })
    .await;
    assert!(degraded.contains(&config.stream), "{degraded}");

    server.start();
    let mut conn = redis(&server.url()).await;
    for n in 0..5 {
        add_event(&mut conn, &config.stream, "u", n).await;
    }
    eventually(Duration::from_secs(20), "5 jobs", || async {
        (lifecycle_jobs(&db.store).await == 5).then_some(())
    })
    .await;
    assert!(set.degraded().is_empty(), "{:?}", set.degraded());

    server.stop();
    server.start();
    let mut conn = redis(&server.url()).await;
    for n in 5..10 {
        add_event(&mut conn, &config.stream, "v", n).await;
    }
    eventually(Duration::from_secs(30), "10 jobs", || async {
        (lifecycle_jobs(&db.store).await == 10).then_some(())
    })
    .await;
    stop.cancel();
}

/// Redis (keeping its data on disk) is killed and restarted while entries are written and
/// ingested: the ingester reconnects, the stream, the group and its pending entries come back,
/// and every entry of the stream ends as exactly one job, with nothing pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_during_ingestion_loses_and_doubles_nothing() {
    let db = TestDb::new(longshore_testkit::Backend::Sqlite)
        .await
        .unwrap();
    let data = longshore_testkit::TempDir::new().unwrap();
    let mut server = PrivateRedis::persistent(free_port(), data.path());
    server.start();
    let config = IngesterConfig {
        redis_url: Some(server.url()),
        ..config("unused")
    };
    let stop = start(Ingester::new(
        config.clone(),
        "p",
        client(&db.store),
        known(),
    ));
    // The producer: 2,000 entries in pipelines of 20, retrying while Redis is away.
    let url = server.url();
    let stream = config.stream.clone();
    let producer = tokio::spawn(async move {
        let mut n = 0;
        while n < 2_000 {
            let sent = async {
                let mut conn = longshore_testkit::redis_connection(url.as_str()).await?;
                let mut pipe = redis::pipe();
                for i in n..n + 20 {
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("*")
                        .arg("event_type")
                        .arg(TYPES[i % 2])
                        .arg("user_id")
                        .arg(format!("u{}", i % 50))
                        .arg("occurred_at_ms")
                        .arg(1_764_590_000_000_u64 + i as u64)
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await
            };
            match sent.await {
                Ok(()) => n += 20,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start();
    producer.await.unwrap();
    let mut conn = redis(&server.url()).await;
    let length: usize = redis::cmd("XLEN")
        .arg(&config.stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(length >= 2_000, "the stream survived the restart: {length}");
    eventually(
        Duration::from_secs(60),
        "a job per entry, nothing pending",
        || async {
            let jobs = lifecycle_jobs(&db.store).await;
            let pending = pending(&mut redis(&server.url()).await, &config).await;
            (jobs == length && pending == 0).then_some(())
        },
    )
    .await;
    let entries: RawEntries = redis::cmd("XRANGE")
        .arg(&config.stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    for (id, _) in &entries {
        let key = format!("{}:{id}", config.stream);
        assert_eq!(unique_job(&db.store, &key).await, 1, "entry {id}");
    }
    stop.cancel();
}
