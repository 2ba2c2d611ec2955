//! Claim order, paused queues, and wake-ups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use longshore_jobs::{EnqueueRequest, JobState};
use longshore_workers::PoolConfig;
use serde_json::json;

use crate::support::{RunningPool, TestDb, eventually, fast_pool, registry};

crate::per_backend!(
    crate::support::db =>
    wakes_an_idle_worker_within_milliseconds,
);

async fn wakes_an_idle_worker_within_milliseconds(db: TestDb) {
    // The worker polls only every 30 s, so a quick start proves the wake-up. On Postgres
    // the enqueue comes from another store, as from another process: it crosses by NOTIFY.
    let config = PoolConfig {
        poll_interval: Duration::from_secs(30),
        ..fast_pool(&[("default", 4)])
    };
    let pool = RunningPool::start(config, db.store.clone(), Arc::new(registry()));
    let producer = if db.is_postgres() {
        db.second_store().await
    } else {
        db.store.clone()
    };
    let producer = longshore_jobs::Client::new(producer, Arc::new(registry()));
    // Let the worker go idle first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let id = producer
            .enqueue(EnqueueRequest::new("noop", json!({})))
            .await
            .unwrap()
            .id;
        eventually(Duration::from_secs(5), "job completes", || async {
            let job = db.store.job(id).await.unwrap().unwrap();
            (job.state == JobState::Completed).then_some(())
        })
        .await;
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.stop().await;
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    eprintln!("wake-up to completion: {latencies:?}");
    assert!(
        median < Duration::from_millis(100),
        "median wake-up to completion took {median:?}"
    );
}
