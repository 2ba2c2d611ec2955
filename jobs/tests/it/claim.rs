//! Claims: order, paused queues, unreadable rows, and a queue's global limit.

use std::time::Duration;

use chrono::Utc;
use longshore_jobs::{EnqueueRequest, JobState, WorkerId};
use serde_json::json;

use crate::support::{TestDb, client, enqueue};

crate::per_backend!(
    crate::support::db =>
    claims_by_priority_then_run_at,
    skips_paused_queues_until_resumed,
    discards_a_row_it_cannot_read_instead_of_wedging_the_queue,
    holds_a_queue_limit_exactly_when_two_processes_claim_at_once,
);

async fn claims_by_priority_then_run_at(db: TestDb) {
    let client = client(&db);
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
    let client = client(&db);
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

/// A row no reader can decode (a time out of range, written by hand or by an older version)
/// sorts first on SQLite: it must be set aside, not fail every claim of its queue forever.
async fn discards_a_row_it_cannot_read_instead_of_wedging_the_queue(db: TestDb) {
    let client = client(&db);
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
    let client = client(&db);
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
