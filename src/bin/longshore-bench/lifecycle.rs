//! The lifecycle workload:
//! - L1: lifecycle events made into durable `lifecycle` jobs per second by one ingester
//!   (batches of 200, one transaction each): a pipelined producer writes 10,000 entries of
//!   1,000 users to a Redis Stream (pipelines of 500) while the ingester reads; the clock runs
//!   from the first entry written until every entry is a committed job, and the group's lag
//!   and pending entries are read at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use longshore_jobs::lifecycle::Ingesters;
use longshore_jobs::{Client, Registry, kinds};
use longshore_workers::ingest::{Ingester, IngesterConfig, IngesterSet};
use longshore_workers::kinds::lifecycle::StepDef;
use longshore_workers::kinds::{Lifecycle, LifecycleConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Database, connect};

const ENTRIES: usize = 10_000;

pub async fn l1(db: &Database, redis_url: &str) -> anyhow::Result<Value> {
    let store = connect(&db.url).await?;
    let step = StepDef::job("note", "noop");
    let config = LifecycleConfig {
        cascades: [("user.deleted".to_owned(), vec![step])].into(),
        ..LifecycleConfig::default()
    };
    let mut registry = Registry::new();
    kinds::register_builtins(&mut registry);
    registry.register(Lifecycle::new(Arc::new(config)));
    let client = Client::new(store.clone(), Arc::new(registry));

    let stream = format!("bench:{}:lifecycle", uuid::Uuid::new_v4().simple());
    // Pipelines of 500 entries may take longer than redis-rs's default 500 ms reply timeout.
    let patient =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    let mut conn = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection_with_config(&patient)
        .await?;
    let ingester = Ingester::new(
        IngesterConfig {
            redis_url: Some(redis_url.to_owned()),
            stream: stream.clone(),
            block: Duration::from_millis(100),
            ..IngesterConfig::default()
        },
        "bench",
        client,
        Arc::new(|t: &str| t == "user.deleted"),
    );
    let reports = IngesterSet::new(vec![ingester.reporter(true)]);
    let stop = CancellationToken::new();
    tokio::spawn(ingester.run(stop.clone()));
    // The group exists before the first entry: the clock starts with the producer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for chunk in (0..ENTRIES).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for n in chunk {
            let at = (1_764_590_000_000 + n).to_string();
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("event_type")
                .arg("user.deleted")
                .arg("user_id")
                .arg((n % 1000).to_string())
                .arg("occurred_at_ms")
                .arg(at)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    let produced = started.elapsed().as_secs_f64();
    loop {
        let counts = store.count_by_state(Some("lifecycle")).await?;
        if counts.values().sum::<i64>() >= ENTRIES as i64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the ingester did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = reports.reports().await.pop().unwrap_or_default();
    stop.cancel();
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await?;
    Ok(json!({
        "entries": ENTRIES,
        "entries_per_s": ENTRIES as f64 / elapsed,
        "produced_per_s": ENTRIES as f64 / produced,
        "lag_at_end": report.lag.map_or(-1, |lag| lag as i64),
        "pending_at_end": report.pending,
    }))
}
