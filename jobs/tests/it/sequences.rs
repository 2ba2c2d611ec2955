//! Sequences: jobs that share a key run one at a time, in enqueue order, across processes.

use std::time::Duration;

use longshore_jobs::{
    ClaimedJob, Completion, EnqueueError, EnqueueRequest, ErrorReport, JobId, JobState, Lease,
    Outcome, Store, WorkerId,
};
use serde_json::json;

use crate::support::{TestDb, client};

crate::per_backend!(
    crate::support::db =>
    runs_a_sequence_one_at_a_time_in_enqueue_order,
    two_processes_never_run_two_jobs_of_one_sequence_at_once,
    refuses_a_sequence_key_it_cannot_store,
);

const LEASE: Duration = Duration::from_secs(30);

fn sequenced(key: &str, n: i64) -> EnqueueRequest {
    EnqueueRequest {
        sequence: Some(key.to_owned()),
        ..EnqueueRequest::new("noop", json!({ "n": n }))
    }
}

async fn claim(store: &Store, worker: &WorkerId) -> Vec<ClaimedJob> {
    store.claim("default", worker, 10, LEASE).await.unwrap()
}

async fn finish(store: &Store, job: &ClaimedJob, worker: &WorkerId, outcome: Outcome) {
    let done = Completion {
        lease: Lease {
            job: job.id,
            attempt: job.attempt,
            worker: worker.clone(),
        },
        queue: job.queue.clone(),
        outcome,
    };
    assert_eq!(store.complete(&[done]).await.unwrap(), [job.id]);
}

fn ids(jobs: &[ClaimedJob]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

fn failure() -> ErrorReport {
    ErrorReport {
        message: "boom".to_owned(),
        chain: Vec::new(),
    }
}

/// A sequence holds while its head waits, runs or retries, and after a discard until the
/// operator retries the discarded job; other sequences and unsequenced jobs run beside it.
async fn runs_a_sequence_one_at_a_time_in_enqueue_order(db: TestDb) {
    let client = client(&db);
    let mut user1 = Vec::new();
    for n in 0..3 {
        user1.push(client.enqueue(sequenced("user:1", n)).await.unwrap().id);
    }
    let user2 = client.enqueue(sequenced("user:2", 0)).await.unwrap().id;
    let free = client
        .enqueue(EnqueueRequest::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    let worker = WorkerId("default@seq".into());

    let first = claim(&db.store, &worker).await;
    assert_eq!(
        ids(&first),
        [user1[0], user2, free],
        "one head per sequence"
    );
    assert!(claim(&db.store, &worker).await.is_empty(), "the head runs");

    // The head retries: it keeps the sequence, and its retry runs before the next.
    let retry = Outcome::Retry {
        delay: Duration::ZERO,
        error: failure(),
    };
    finish(&db.store, &first[0], &worker, retry).await;
    let again = claim(&db.store, &worker).await;
    assert_eq!(
        ids(&again),
        [user1[0]],
        "the retry of the head, not the next"
    );
    finish(
        &db.store,
        &again[0],
        &worker,
        Outcome::Completed { result: None },
    )
    .await;

    // The next one is discarded: it holds the sequence until retried.
    let second = claim(&db.store, &worker).await;
    assert_eq!(ids(&second), [user1[1]]);
    let discard = Outcome::Discard { error: failure() };
    finish(&db.store, &second[0], &worker, discard).await;
    assert!(
        claim(&db.store, &worker).await.is_empty(),
        "a discarded job holds its sequence"
    );
    db.store.retry(user1[1]).await.unwrap();
    let retried = claim(&db.store, &worker).await;
    assert_eq!(
        ids(&retried),
        [user1[1]],
        "the retried job runs before the third"
    );
    finish(
        &db.store,
        &retried[0],
        &worker,
        Outcome::Completed { result: None },
    )
    .await;

    let third = claim(&db.store, &worker).await;
    assert_eq!(ids(&third), [user1[2]]);
    let job = db.store.job(user1[2]).await.unwrap().unwrap();
    assert_eq!(job.sequence.as_deref(), Some("user:1"));
}

/// Two processes claim the same sequences at the same moment, round after round: each
/// sequence never has two jobs running, and its jobs run in the order they were enqueued.
async fn two_processes_never_run_two_jobs_of_one_sequence_at_once(db: TestDb) {
    let client = client(&db);
    let other = db.second_store().await;
    let stores = [db.store.clone(), other];
    let workers = [WorkerId("default@a".into()), WorkerId("default@b".into())];
    let keys = ["user:a", "user:b", "user:c"];
    let mut enqueued: Vec<Vec<JobId>> = vec![Vec::new(); keys.len()];
    for n in 0..6 {
        let requests = keys.iter().map(|key| sequenced(key, n)).collect();
        let results = client.enqueue_many(requests).await.unwrap();
        for (k, result) in results.into_iter().enumerate() {
            enqueued[k].push(result.unwrap().id);
        }
    }
    let mut ran: Vec<Vec<JobId>> = vec![Vec::new(); keys.len()];
    for round in 0..40 {
        let (mine, theirs) = tokio::join!(
            claim(&stores[0], &workers[0]),
            claim(&stores[1], &workers[1])
        );
        let held: Vec<(usize, ClaimedJob)> = mine
            .into_iter()
            .map(|j| (0, j))
            .chain(theirs.into_iter().map(|j| (1, j)))
            .collect();
        if held.is_empty() {
            break;
        }
        for (k, key_jobs) in enqueued.iter().enumerate() {
            let running = held
                .iter()
                .filter(|(_, j)| key_jobs.contains(&j.id))
                .count();
            assert!(
                running <= 1,
                "round {round}: {running} jobs of {} at once",
                keys[k]
            );
        }
        for (who, job) in &held {
            let k = enqueued
                .iter()
                .position(|ids| ids.contains(&job.id))
                .unwrap();
            ran[k].push(job.id);
            let outcome = Outcome::Completed { result: None };
            finish(&stores[*who], job, &workers[*who], outcome).await;
        }
    }
    assert_eq!(
        ran, enqueued,
        "every job ran once, each sequence in enqueue order"
    );
    let counts = db.store.count_by_state(Some("default")).await.unwrap();
    assert_eq!(counts.get(&JobState::Completed), Some(&18), "{counts:?}");
}

async fn refuses_a_sequence_key_it_cannot_store(db: TestDb) {
    let client = client(&db);
    for (key, why) in [("", "1 to 512 bytes"), ("a\0b", "NUL")] {
        let error = client.enqueue(sequenced(key, 0)).await.unwrap_err();
        match error {
            EnqueueError::Invalid { field, message } => {
                assert_eq!(field, "sequence");
                assert!(message.contains(why), "{message}");
            }
            other => panic!("{key:?}: {other}"),
        }
    }
    let long = "k".repeat(513);
    assert!(client.enqueue(sequenced(&long, 0)).await.is_err());
    assert!(db.store.count_by_state(None).await.unwrap().is_empty());
}
