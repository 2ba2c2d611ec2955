//! The outbox: an event for every state change, read gap-free while writers commit out of
//! order.

use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::{JobState, event};
use serde_json::json;

use crate::support::{RunningPool, TestDb, client, enqueue, eventually, fast_pool, registry};

crate::per_backend!(
    crate::support::db =>
    writes_an_event_for_every_state_change,
);

async fn writes_an_event_for_every_state_change(db: TestDb) {
    let client = client(&db, registry());
    let pool = RunningPool::start(
        fast_pool(&[("default", 2)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    let id = enqueue(&client, "test.flaky", json!({ "fail": 1 })).await;
    eventually(Duration::from_secs(5), "job completes", || async {
        let job = db.store.job(id).await.unwrap().unwrap();
        (job.state == JobState::Completed).then_some(())
    })
    .await;
    pool.stop().await;
    let events = db.store.job_events(id).await.unwrap();
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.event_type.as_str(), e.state.unwrap(), e.attempt.unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            (event::JOB_ENQUEUED, JobState::Available, 0),
            (event::JOB_STARTED, JobState::Running, 1),
            (event::JOB_FAILED, JobState::Retryable, 1),
            (event::JOB_STARTED, JobState::Running, 2),
            (event::JOB_COMPLETED, JobState::Completed, 2),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(
        events[2].data.as_ref().unwrap()["error"],
        "planned failure 1"
    );
}
