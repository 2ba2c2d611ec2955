//! Unique keys: one job per key, however many enqueue it at once.

use std::time::Duration;

use longshore_jobs::{
    Completion, EnqueueRequest, JobState, Outcome, UniqueOptions, UniqueScope, WorkerId,
};
use serde_json::json;

use crate::support::{TestDb, client};

crate::per_backend!(
    crate::support::db =>
    fifty_concurrent_enqueues_of_one_key_yield_one_job,
    frees_an_active_key_when_the_job_finishes,
    keeps_an_any_scope_key_after_the_job_finishes,
);

fn unique_request(key: &str, scope: UniqueScope) -> EnqueueRequest {
    EnqueueRequest {
        unique: Some(UniqueOptions {
            key: key.into(),
            scope,
            window: None,
        }),
        ..EnqueueRequest::new("noop", json!({}))
    }
}

/// Fifty enqueues of one key at once. Through one store they share its group-commit
/// inserter; so on Postgres they come from five stores, as from five processes, whose
/// transactions race for the key's slot in the database.
async fn fifty_concurrent_enqueues_of_one_key_yield_one_job(db: TestDb) {
    let mut clients = vec![client(&db)];
    if db.is_postgres() {
        for _ in 0..4 {
            let store = db.second_store().await;
            clients.push(longshore_jobs::Client::new(
                store,
                clients[0].registry().clone(),
            ));
        }
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            let start = std::sync::Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                client
                    .enqueue(unique_request("report:42", UniqueScope::Active))
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().unwrap());
    }
    let first = results[0].id;
    assert!(
        results.iter().all(|r| r.id == first),
        "every enqueue names the same job"
    );
    assert_eq!(results.iter().filter(|r| !r.duplicate).count(), 1);
    let counts = db.store.count_by_state(None).await.unwrap();
    assert_eq!(counts.values().sum::<i64>(), 1);
}

async fn finish(db: &TestDb, id: longshore_jobs::JobId) {
    let worker = WorkerId("default@test".into());
    let claimed = db
        .store
        .claim("default", &worker, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed[0].id, id);
    let done = Completion {
        lease: longshore_jobs::Lease {
            job: id,
            attempt: claimed[0].attempt,
            worker,
        },
        queue: "default".into(),
        outcome: Outcome::Completed { result: None },
    };
    db.store.complete(&[done]).await.unwrap();
}

async fn frees_an_active_key_when_the_job_finishes(db: TestDb) {
    let client = client(&db);
    let first = client
        .enqueue(unique_request("k", UniqueScope::Active))
        .await
        .unwrap();
    finish(&db, first.id).await;
    let second = client
        .enqueue(unique_request("k", UniqueScope::Active))
        .await
        .unwrap();
    assert!(!second.duplicate);
    assert_ne!(second.id, first.id);
    // Retrying the finished first job would give the key two holders: refused.
    let err = db.store.retry(first.id).await.unwrap_err();
    assert!(err.to_string().contains("unique key"), "{err}");
    assert_eq!(
        db.store.job(first.id).await.unwrap().unwrap().state,
        JobState::Completed
    );
}

async fn keeps_an_any_scope_key_after_the_job_finishes(db: TestDb) {
    let client = client(&db);
    let first = client
        .enqueue(unique_request("entry-1-0", UniqueScope::Any))
        .await
        .unwrap();
    finish(&db, first.id).await;
    let again = client
        .enqueue(unique_request("entry-1-0", UniqueScope::Any))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!((again.id, again.state), (first.id, JobState::Completed));
}
