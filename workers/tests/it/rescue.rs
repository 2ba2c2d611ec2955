//! Leases: heartbeats keep running jobs alive; expired leases are rescued, boundedly.

use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::{EnqueueRequest, JobState, WorkerId, event};
use serde_json::json;

use crate::conformance;
use crate::support::{RunningPool, TestDb, client, enqueue, eventually, fast_pool, registry};

conformance!(
    rescues_job_whose_lease_expired,
    discards_a_job_that_keeps_losing_its_lease,
    keeps_a_long_job_alive_with_heartbeats,
    reruns_a_job_abandoned_by_a_dead_worker,
);

async fn rescues_job_whose_lease_expired(db: TestDb) {
    let client = client(&db, registry());
    let id = enqueue(&client, "noop", json!({})).await;
    let dead = WorkerId("default@dead".into());
    db.store
        .claim("default", &dead, 1, Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rescued = db.store.rescue_expired(100).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(
        (rescued[0].state, rescued[0].worker.as_deref()),
        (JobState::Retryable, Some("default@dead"))
    );
    let job = db.store.job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempt, job.locked_by),
        (JobState::Retryable, 1, None)
    );
    assert!(job.last_error.unwrap().contains("lease expired"));
    let attempts = db.store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].outcome.as_str(), attempts[0].worker.as_deref()),
        ("lost", Some("default@dead"))
    );
    let events = db.store.job_events(id).await.unwrap();
    assert_eq!(events.last().unwrap().event_type, event::JOB_RESCUED);
    // A live lease is left alone.
    let live = enqueue(&client, "noop", json!({})).await;
    db.store
        .claim("default", &dead, 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        db.store
            .rescue_expired(100)
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != live)
    );
}

async fn discards_a_job_that_keeps_losing_its_lease(db: TestDb) {
    let client = client(&db, registry());
    let request = EnqueueRequest {
        max_attempts: Some(2),
        ..EnqueueRequest::new("noop", json!({}))
    };
    let id = client.enqueue(request).await.unwrap().id;
    let dead = WorkerId("default@crashing".into());
    for expected in [JobState::Retryable, JobState::Discarded] {
        let claimed = db
            .store
            .claim("default", &dead, 1, Duration::from_millis(1))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rescued = db.store.rescue_expired(100).await.unwrap();
        assert_eq!(rescued[0].state, expected);
    }
    assert!(
        db.store
            .claim("default", &dead, 1, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    let job = db.store.job(id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Discarded, 2));
}

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
