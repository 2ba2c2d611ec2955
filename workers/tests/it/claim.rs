//! Claim order, paused queues, and wake-ups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use longshore_jobs::{EnqueueRequest, JobState, WorkerId};
use longshore_workers::PoolConfig;
use serde_json::json;

use crate::conformance;
use crate::support::{RunningPool, TestDb, client, enqueue, eventually, fast_pool, registry};

conformance!(
    claims_by_priority_then_run_at,
    skips_paused_queues_until_resumed,
    wakes_an_idle_worker_within_milliseconds,
    discards_a_row_it_cannot_read_instead_of_wedging_the_queue,
    holds_a_queue_limit_exactly_when_two_processes_claim_at_once,
);

async fn claims_by_priority_then_run_at(db: TestDb) {
    let client = client(&db, registry());
    let earlier = Utc::now() - chrono::Duration::seconds(60);
    let mut ids = Vec::new();
    for (priority, run_at) in [(5, None), (1, None), (5, Some(earlier)), (1, Some(earlier))] {
        let request = EnqueueRequest {
            priority: Some(priority),
            run_at,
            ..EnqueueRequest::new("noop", json!({}))
        };
        ids.push(client.enqueue(request).await.unwrap().id);
    }
    let worker = WorkerId("default@test".into());
    let claimed = db
        .store
        .claim("default", &worker, 10, Duration::from_secs(30))
        .await
        .unwrap();
    let order: Vec<_> = claimed.iter().map(|j| j.id).collect();
    // Priority 1 first (the older run_at first), then priority 5.
    assert_eq!(order, [ids[3], ids[1], ids[2], ids[0]]);
    assert!(claimed.iter().all(|j| j.attempt == 1));
    let job = db.store.job(ids[0]).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.locked_by.as_deref(), Some("default@test"));
    assert!(job.lease_expires_at.unwrap() > Utc::now() + chrono::Duration::seconds(20));
}

async fn skips_paused_queues_until_resumed(db: TestDb) {
    let client = client(&db, registry());
    let id = client
        .enqueue(EnqueueRequest::new("noop", json!({})))
        .await
        .unwrap()
        .id;
    db.store.pause_queue("default").await.unwrap();
    let worker = WorkerId("default@test".into());
    let lease = Duration::from_secs(30);
    assert!(
        db.store
            .claim("default", &worker, 10, lease)
            .await
            .unwrap()
            .is_empty()
    );
    db.store.resume_queue("default").await.unwrap();
    let claimed = db.store.claim("default", &worker, 10, lease).await.unwrap();
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
}

async fn wakes_an_idle_worker_within_milliseconds(db: TestDb) {
    // The worker polls only every 30 s, so a quick start proves the wake-up. On Postgres
    // the enqueue comes from another store, as from another process: it crosses by NOTIFY.
    let config = PoolConfig {
        poll_interval: Duration::from_secs(30),
        ..fast_pool(&[("default", 4)])
    };
    let pool = RunningPool::start(config, db.store.clone(), Arc::new(registry()));
    let producer = if db.is_postgres() {
        db.second_store().await
    } else {
        db.store.clone()
    };
    let producer = longshore_jobs::Client::new(producer, Arc::new(registry()));
    // Let the worker go idle first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let id = producer
            .enqueue(EnqueueRequest::new("noop", json!({})))
            .await
            .unwrap()
            .id;
        eventually(Duration::from_secs(5), "job completes", || async {
            let job = db.store.job(id).await.unwrap().unwrap();
            (job.state == JobState::Completed).then_some(())
        })
        .await;
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.stop().await;
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    eprintln!("wake-up to completion: {latencies:?}");
    assert!(
        median < Duration::from_millis(100),
        "median wake-up to completion took {median:?}"
    );
}

/// A row no reader can decode (a time out of range, written by hand or by an older version)
/// sorts first on SQLite: it must be set aside, not fail every claim of its queue forever.
async fn discards_a_row_it_cannot_read_instead_of_wedging_the_queue(db: TestDb) {
    let client = client(&db, registry());
    let bad = enqueue(&client, "noop", json!({})).await;
    let (pg, sqlite) = (
        "UPDATE jobs SET created_at = 'infinity' WHERE id = $1::uuid",
        "UPDATE jobs SET run_at = -9221575887916830196 WHERE id = unhex(replace(?1, '-', ''))",
    );
    assert_eq!(db.execute(pg, sqlite, &[&bad.to_string()]).await, 1);
    let good = enqueue(&client, "noop", json!({})).await;
    let worker = WorkerId("default@w".into());
    let claimed = db
        .store
        .claim("default", &worker, 10, Duration::from_secs(30))
        .await
        .expect("the claim succeeds despite the bad row");
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![good]);
    let counts = db.store.count_by_state(Some("default")).await.unwrap();
    assert_eq!(counts.get(&JobState::Discarded), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&JobState::Running), Some(&1), "{counts:?}");
    let events = db.store.job_events(bad).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.event_type, longshore_jobs::event::JOB_DISCARDED);
    assert!(
        last.data.as_ref().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("cannot be read")
    );
    db.store
        .delete_job(bad)
        .await
        .expect("a bad row can be deleted");
    assert!(db.store.job(bad).await.unwrap().is_none());
}

/// Two processes claim from a queue with a global limit of 3 at the same moment, each asking
/// for 5: together they never hold more than 3.
async fn holds_a_queue_limit_exactly_when_two_processes_claim_at_once(db: TestDb) {
    let client = client(&db, registry());
    let other = db.second_store().await;
    let (a, b) = (WorkerId("q@a".into()), WorkerId("q@b".into()));
    let mut most = 0;
    for round in 0..20 {
        let queue = format!("limited-{round}");
        db.store
            .set_queue_concurrency(&queue, Some(3))
            .await
            .unwrap();
        let jobs: Vec<_> = (0..10)
            .map(|_| EnqueueRequest {
                queue: Some(queue.clone()),
                ..EnqueueRequest::new("noop", json!({}))
            })
            .collect();
        client.enqueue_many(jobs).await.unwrap();
        let lease = Duration::from_secs(30);
        let (mine, theirs) = tokio::join!(
            db.store.claim(&queue, &a, 5, lease),
            other.claim(&queue, &b, 5, lease)
        );
        let held = mine.unwrap().len() + theirs.unwrap().len();
        most = most.max(held);
        assert!(
            held <= 3,
            "round {round}: {held} jobs run at once under a limit of 3"
        );
        let running = db.store.count_by_state(Some(&queue)).await.unwrap();
        assert_eq!(
            running.get(&JobState::Running).copied().unwrap_or(0),
            held as i64
        );
    }
    assert_eq!(most, 3, "the limit is reached, not only respected");
}
