//! The `auto` prefetch: large claims for quick jobs, nothing held back for slow ones. A claim
//! stamps every job it takes with the same `attempted_at` (the claim's one clock reading), so
//! the jobs grouped by it are the claims, and the largest group is the largest claim.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::admin::JobFilter;
use longshore_jobs::{Client, EnqueueRequest, JobState, Store};
use longshore_workers::Prefetch;
use serde_json::json;

use crate::support::{RunningPool, TestDb, client, eventually, fast_pool, registry};

crate::per_backend!(
    crate::support::db =>
    auto_prefetch_claims_no_further_ahead_than_slow_jobs_start,
    auto_prefetch_claims_ahead_for_quick_jobs_within_its_cap,
);

/// The largest claim among the queue's jobs, once all completed, and how many completed.
async fn largest_claim(store: &Store, queue: &str) -> (usize, usize) {
    let filter = JobFilter {
        queue: Some(queue.to_owned()),
        ..JobFilter::default()
    };
    let jobs = store.list_jobs(&filter, None, 10_000).await.unwrap();
    let mut claims: BTreeMap<_, usize> = BTreeMap::new();
    for job in &jobs {
        assert_eq!(job.state, JobState::Completed, "{job:?}");
        *claims.entry(job.attempted_at).or_default() += 1;
    }
    (claims.into_values().max().unwrap_or(0), jobs.len())
}

async fn enqueue_many(client: &Client, queue: &str, kind: &str, args: serde_json::Value, n: usize) {
    let requests = (0..n)
        .map(|_| EnqueueRequest {
            queue: Some(queue.into()),
            ..EnqueueRequest::new(kind, args.clone())
        })
        .collect();
    for result in client.enqueue_many(requests).await.unwrap() {
        result.unwrap();
    }
}

async fn drain(db: &TestDb, queue: &str, concurrency: u32, jobs: usize) {
    let pool = RunningPool::start(
        fast_pool(&[(queue, concurrency)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    eventually(Duration::from_secs(60), "every job completed", || async {
        let counts = db.store.count_by_state(Some(queue)).await.unwrap();
        (counts.get(&JobState::Completed) == Some(&(jobs as i64))).then_some(())
    })
    .await;
    pool.stop().await;
}

/// Jobs of 150 ms on two slots start about 13 a second: `auto` claims at most the one job
/// that starts within its horizon beyond the free slots, so a second process would find the
/// rest of the queue waiting for it.
async fn auto_prefetch_claims_no_further_ahead_than_slow_jobs_start(db: TestDb) {
    let client = client(&db, registry());
    enqueue_many(&client, "slow", "test.hangs", json!({ "ms": 150 }), 8).await;
    drain(&db, "slow", 2, 8).await;
    let (largest, completed) = largest_claim(&db.store, "slow").await;
    assert_eq!(completed, 8);
    assert!(largest <= 3, "a claim took {largest} slow jobs for 2 slots");
}

/// No-op jobs start thousands a second: claims take more than the free slots, but never
/// more than the slots and three times as many again.
async fn auto_prefetch_claims_ahead_for_quick_jobs_within_its_cap(db: TestDb) {
    let client = client(&db, registry());
    enqueue_many(&client, "quick", "noop", json!({}), 2_000).await;
    drain(&db, "quick", 2, 2_000).await;
    let (largest, completed) = largest_claim(&db.store, "quick").await;
    assert_eq!(completed, 2_000);
    let cap = 2 * (1 + Prefetch::MAX_FACTOR as usize);
    assert!(
        (3..=cap).contains(&largest),
        "the largest claim took {largest} jobs for 2 slots (cap {cap})"
    );
}
