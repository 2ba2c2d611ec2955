//! The lifecycle workload:
//! - L1: stream entries made into durable `lifecycle` jobs per second by one ingester (batches
//!   of 200 in one transaction each), from a Redis Stream holding 20,000 entries of 1,000
//!   users, until every entry is a job and acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use longshore_jobs::{Client, Registry, kinds};
use longshore_workers::ingest::{Ingester, IngesterConfig};
use longshore_workers::kinds::lifecycle::StepDef;
use longshore_workers::kinds::{Lifecycle, LifecycleConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Database, connect};

const ENTRIES: usize = 20_000;

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
    let mut conn = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    for chunk in (0..ENTRIES).collect::<Vec<_>>().chunks(1000) {
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
    let stop = CancellationToken::new();
    let started = Instant::now();
    tokio::spawn(ingester.run(stop.clone()));
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
    stop.cancel();
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await?;
    Ok(json!({
        "entries": ENTRIES,
        "entries_per_s": ENTRIES as f64 / elapsed,
    }))
}
