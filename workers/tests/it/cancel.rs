//! Cancellation: a waiting job at once; a running one through its lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use longshore_jobs::JobState;
use longshore_jobs::store::CancelOutcome;
use serde_json::json;

use crate::support::{RunningPool, TestDb, client, enqueue, eventually, fast_pool, registry};

crate::per_backend!(
    crate::support::db =>
    cancels_a_running_job_through_its_worker
);

async fn cancels_a_running_job_through_its_worker(db: TestDb) {
    let client = client(&db, registry());
    let pool = RunningPool::start(
        fast_pool(&[("default", 2)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    let id = enqueue(&client, "sleep", json!({ "ms": 60_000 })).await;
    eventually(Duration::from_secs(5), "job runs", || async {
        let job = db.store.job(id).await.unwrap().unwrap();
        (job.state == JobState::Running).then_some(())
    })
    .await;
    // On Postgres the cancel comes from another store, as an API process would send it.
    let operator = if db.is_postgres() {
        db.second_store().await
    } else {
        db.store.clone()
    };
    let asked = Instant::now();
    assert_eq!(operator.cancel(id).await.unwrap(), CancelOutcome::Requested);
    let job = eventually(Duration::from_secs(5), "job cancelled", || async {
        let job = db.store.job(id).await.unwrap().unwrap();
        job.state.is_terminal().then_some(job)
    })
    .await;
    pool.stop().await;
    assert_eq!((job.state, job.attempt), (JobState::Cancelled, 1));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "cancel took {:?}",
        asked.elapsed()
    );
    let outcomes: Vec<_> = db
        .store
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, ["cancelled"]);
}
