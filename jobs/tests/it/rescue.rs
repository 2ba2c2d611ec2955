//! Rescue: an expired lease gives the job back, boundedly.

use std::time::Duration;

use longshore_jobs::{EnqueueRequest, JobState, WorkerId, event};
use serde_json::json;

use crate::support::{TestDb, client, enqueue};

crate::per_backend!(
    crate::support::db =>
    rescues_job_whose_lease_expired,
    discards_a_job_that_keeps_losing_its_lease,
    rescues_many_at_once_up_to_the_limit_each_once,
);

async fn rescues_job_whose_lease_expired(db: TestDb) {
    let client = client(&db);
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
    let rescue = events.last().unwrap();
    assert_eq!(
        (rescue.event_type.as_str(), rescue.state, rescue.attempt),
        (event::JOB_RESCUED, Some(JobState::Retryable), Some(1))
    );
    let data = rescue.data.as_ref().expect("the rescue event says why");
    assert_eq!(data["worker"], "default@dead");
    assert!(data["error"].as_str().unwrap().contains("lease expired"));
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
    let client = client(&db);
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

async fn rescues_many_at_once_up_to_the_limit_each_once(db: TestDb) {
    let client = client(&db);
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(enqueue(&client, "noop", json!({})).await);
    }
    let dead = WorkerId("default@gone".into());
    let claimed = db
        .store
        .claim("default", &dead, 30, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 30);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let first = db.store.rescue_expired(20).await.unwrap();
    let second = db.store.rescue_expired(20).await.unwrap();
    assert_eq!((first.len(), second.len()), (20, 10));
    let mut rescued: Vec<_> = first.iter().chain(&second).map(|r| r.id).collect();
    rescued.sort();
    ids.sort();
    assert_eq!(rescued, ids, "every expired job rescued exactly once");
    assert!(
        first
            .iter()
            .chain(&second)
            .all(|r| r.worker.as_deref() == Some("default@gone"))
    );
    for id in ids {
        let attempts = db.store.attempts(id).await.unwrap();
        let events = db.store.job_events(id).await.unwrap();
        let rescues = events
            .iter()
            .filter(|e| e.event_type == event::JOB_RESCUED)
            .count();
        assert_eq!((attempts.len(), rescues), (1, 1), "job {id}");
    }
}
