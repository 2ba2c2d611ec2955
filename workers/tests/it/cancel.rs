//! Cancellation: a waiting job at once; a running one through its lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use longshore_jobs::store::CancelOutcome;
use longshore_jobs::{EnqueueRequest, JobState, StoreError, WorkerId};
use serde_json::json;

use crate::conformance;
use crate::support::{RunningPool, TestDb, client, enqueue, eventually, fast_pool, registry};

conformance!(
    cancels_a_waiting_job_at_once,
    cancels_a_running_job_through_its_worker
);

async fn cancels_a_waiting_job_at_once(db: TestDb) {
    let client = client(&db, registry());
    let request = EnqueueRequest {
        delay_ms: Some(60_000),
        ..EnqueueRequest::new("noop", json!({}))
    };
    let enqueued = client.enqueue(request).await.unwrap();
    assert_eq!(enqueued.state, JobState::Scheduled);
    assert_eq!(
        db.store.cancel(enqueued.id).await.unwrap(),
        CancelOutcome::Cancelled
    );
    let job = db.store.job(enqueued.id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert!(job.finished_at.is_some());
    // Cancelling again is refused: a finished job stays finished.
    let again = db.store.cancel(enqueued.id).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict { .. }), "{again}");
    let worker = WorkerId("default@w".into());
    assert!(
        db.store
            .claim("default", &worker, 10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
}

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
