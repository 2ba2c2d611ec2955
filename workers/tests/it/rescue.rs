//! Leases: heartbeats keep running jobs alive; expired leases are rescued, boundedly.

use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::{JobState, WorkerId};
use serde_json::json;

use crate::support::{RunningPool, TestDb, client, enqueue, eventually, fast_pool, registry};

crate::per_backend!(
    crate::support::db =>
    keeps_a_long_job_alive_with_heartbeats,
    reruns_a_job_abandoned_by_a_dead_worker,
);

async fn keeps_a_long_job_alive_with_heartbeats(db: TestDb) {
    let client = client(&db, registry());
    // The lease is 1.5 s; the job runs 3.5 s.
    let pool = RunningPool::start(
        fast_pool(&[("default", 2)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    let id = enqueue(&client, "sleep", json!({ "ms": 3500 })).await;
    let job = eventually(Duration::from_secs(10), "long job completes", || async {
        let job = db.store.job(id).await.unwrap().unwrap();
        job.state.is_terminal().then_some(job)
    })
    .await;
    pool.stop().await;
    assert_eq!((job.state, job.attempt), (JobState::Completed, 1));
    let outcomes: Vec<_> = db
        .store
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, ["completed"]);
}

async fn reruns_a_job_abandoned_by_a_dead_worker(db: TestDb) {
    let client = client(&db, registry());
    let id = enqueue(&client, "noop", json!({})).await;
    let dead = WorkerId("default@dead".into());
    db.store
        .claim("default", &dead, 1, Duration::from_millis(300))
        .await
        .unwrap();
    let pool = RunningPool::start(
        fast_pool(&[("default", 2)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    let job = eventually(Duration::from_secs(5), "abandoned job reruns", || async {
        let job = db.store.job(id).await.unwrap().unwrap();
        job.state.is_terminal().then_some(job)
    })
    .await;
    pool.stop().await;
    assert_eq!((job.state, job.attempt), (JobState::Completed, 2));
}
