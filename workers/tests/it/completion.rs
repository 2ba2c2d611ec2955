//! Completions: fencing, durable backoff, attempts, snooze, panics and timeouts.

use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::{EnqueueRequest, JobState};
use serde_json::json;

use crate::support::{RunningPool, TestDb, client, enqueue, eventually, fast_pool, registry};

crate::per_backend!(
    crate::support::db =>
    stores_the_backoff_in_run_at_and_frees_the_slot,
    discards_after_max_attempts_keeping_every_attempt,
    snoozes_without_consuming_an_attempt,
    counts_a_panic_as_a_failed_attempt,
    fails_an_attempt_that_exceeds_its_timeout,
);

async fn stores_the_backoff_in_run_at_and_frees_the_slot(db: TestDb) {
    let client = client(&db, registry());
    // One slot: while the flaky job waits out its backoff, the other job must run.
    let pool = RunningPool::start(
        fast_pool(&[("default", 1)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    let flaky = enqueue(&client, "test.flaky", json!({ "fail": 1 })).await;
    let attempts = eventually(Duration::from_secs(5), "first attempt recorded", || async {
        let a = db.store.attempts(flaky).await.unwrap();
        (!a.is_empty()).then_some(a)
    })
    .await;
    let job = db.store.job(flaky).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Retryable);
    assert_eq!(job.last_error.as_deref(), Some("planned failure 1"));
    // The Flaky kind's backoff is a fixed 300 ms ± 20 %.
    let waited = (job.run_at - attempts[0].finished_at).num_milliseconds();
    assert!(
        (230..=370).contains(&waited),
        "run_at is {waited} ms after the failure"
    );

    let other = enqueue(&client, "noop", json!({})).await;
    let flaky_state = eventually(
        Duration::from_secs(5),
        "other job completes during the backoff",
        || async {
            let other = db.store.job(other).await.unwrap().unwrap();
            let flaky = db.store.job(flaky).await.unwrap().unwrap();
            (other.state == JobState::Completed).then_some(flaky.state)
        },
    )
    .await;
    assert_ne!(
        flaky_state,
        JobState::Running,
        "the waiting job held no slot"
    );
    let job = eventually(Duration::from_secs(5), "flaky job completes", || async {
        let job = db.store.job(flaky).await.unwrap().unwrap();
        (job.state == JobState::Completed).then_some(job)
    })
    .await;
    assert_eq!(job.attempt, 2);
    pool.stop().await;
}

async fn discards_after_max_attempts_keeping_every_attempt(db: TestDb) {
    let client = client(&db, registry());
    let pool = RunningPool::start(
        fast_pool(&[("default", 2)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    let id = enqueue(&client, "test.flaky", json!({ "fail": 99 })).await;
    let job = eventually(Duration::from_secs(10), "job discarded", || async {
        let job = db.store.job(id).await.unwrap().unwrap();
        (job.state == JobState::Discarded).then_some(job)
    })
    .await;
    pool.stop().await;
    assert_eq!((job.attempt, job.max_attempts), (3, 3));
    assert!(job.finished_at.is_some());
    let attempts = db.store.attempts(id).await.unwrap();
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, [(1, "failed"), (2, "failed"), (3, "discarded")]);
    assert_eq!(attempts[2].error.as_deref(), Some("planned failure 3"));
}

async fn snoozes_without_consuming_an_attempt(db: TestDb) {
    let client = client(&db, registry());
    let pool = RunningPool::start(
        fast_pool(&[("default", 2)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    // max_attempts is 1: a snooze that consumed the attempt would discard the job.
    let id = enqueue(&client, "test.snoozer", json!({})).await;
    let job = eventually(Duration::from_secs(5), "snoozed job completes", || async {
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
    assert_eq!(outcomes, ["snoozed", "completed"]);
}

async fn counts_a_panic_as_a_failed_attempt(db: TestDb) {
    let client = client(&db, registry());
    let pool = RunningPool::start(
        fast_pool(&[("default", 2)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    let panicking = enqueue(&client, "test.panics", json!({})).await;
    let job = eventually(
        Duration::from_secs(5),
        "panicking job discarded",
        || async {
            let job = db.store.job(panicking).await.unwrap().unwrap();
            (job.state == JobState::Discarded).then_some(job)
        },
    )
    .await;
    assert_eq!(job.attempt, 2, "a panic is retried like any failure");
    assert!(job.last_error.unwrap().contains("boom in handler"));
    // The worker survived: it still runs jobs.
    let after = enqueue(&client, "noop", json!({})).await;
    eventually(Duration::from_secs(5), "worker still runs jobs", || async {
        let job = db.store.job(after).await.unwrap().unwrap();
        (job.state == JobState::Completed).then_some(())
    })
    .await;
    pool.stop().await;
}

async fn fails_an_attempt_that_exceeds_its_timeout(db: TestDb) {
    let client = client(&db, registry());
    let pool = RunningPool::start(
        fast_pool(&[("default", 2)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    let request = EnqueueRequest {
        timeout_ms: Some(100),
        max_attempts: Some(1),
        ..EnqueueRequest::new("sleep", json!({ "ms": 10_000 }))
    };
    let id = client.enqueue(request).await.unwrap().id;
    let job = eventually(
        Duration::from_secs(5),
        "timed-out job discarded",
        || async {
            let job = db.store.job(id).await.unwrap().unwrap();
            (job.state == JobState::Discarded).then_some(job)
        },
    )
    .await;
    pool.stop().await;
    assert_eq!(job.last_error.as_deref(), Some("timed out after 100ms"));
}
