//! Retention and deletion take a job's attempts with it (on Postgres no foreign key does),
//! and touch nothing that is not past its retention.

use std::time::Duration;

use chrono::Utc;
use longshore_jobs::store::PruneLimits;
use longshore_jobs::{Completion, JobId, Outcome, WorkerId};
use serde_json::json;

use crate::support::{TestDb, client, enqueue};

crate::per_backend!(
    crate::support::db =>
    retention_and_deletion_take_a_jobs_attempts_with_it,
);

/// Claims every available job and completes each: the ids in claim order.
async fn run_all(db: &TestDb) -> Vec<JobId> {
    let worker = WorkerId("default@test".into());
    let claimed = db
        .store
        .claim("default", &worker, 10, Duration::from_secs(30))
        .await
        .unwrap();
    let done: Vec<Completion> = claimed
        .iter()
        .map(|job| Completion {
            lease: job.lease(&worker),
            queue: "default".into(),
            outcome: Outcome::Completed { result: None },
        })
        .collect();
    db.store.complete(&done).await.unwrap();
    claimed.iter().map(|job| job.id).collect()
}

async fn retention_and_deletion_take_a_jobs_attempts_with_it(db: TestDb) {
    let client = client(&db);
    let (old, recent, deleted) = (
        enqueue(&client, "noop", json!({ "n": 1 })).await,
        enqueue(&client, "noop", json!({ "n": 2 })).await,
        enqueue(&client, "noop", json!({ "n": 3 })).await,
    );
    assert_eq!(run_all(&db).await.len(), 3);
    let waiting = enqueue(&client, "noop", json!({ "n": 4 })).await;
    // `old` finished two days ago.
    db.execute(
        "UPDATE jobs SET finished_at = now() - interval '2 days' WHERE id = $1::uuid",
        "UPDATE jobs SET finished_at = finished_at - 172800000000 \
         WHERE id = unhex(replace(?1, '-', ''))",
        &[&old.to_string()],
    )
    .await;
    for id in [old, recent, deleted] {
        assert_eq!(db.store.attempts(id).await.unwrap().len(), 1);
    }

    db.store.delete_job(deleted).await.unwrap();
    assert!(db.store.job(deleted).await.unwrap().is_none());
    assert!(db.store.attempts(deleted).await.unwrap().is_empty());

    let day_ago = Utc::now() - chrono::Duration::days(1);
    let pruned = db
        .store
        .prune(PruneLimits {
            finished_before: day_ago,
            discarded_before: day_ago,
            events_before: day_ago,
            batch: 100,
        })
        .await
        .unwrap();
    assert_eq!(pruned.jobs, 1);
    assert!(db.store.job(old).await.unwrap().is_none());
    assert!(db.store.attempts(old).await.unwrap().is_empty());
    assert!(db.store.job(recent).await.unwrap().is_some());
    assert_eq!(db.store.attempts(recent).await.unwrap().len(), 1);
    assert!(db.store.job(waiting).await.unwrap().is_some());
}
