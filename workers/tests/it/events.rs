//! The outbox: an event for every state change, read gap-free while writers commit out of
//! order.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::{EnqueueRequest, EventId, JobState, event};
use serde_json::json;

use crate::conformance;
use crate::support::{RunningPool, TestDb, client, enqueue, eventually, fast_pool, registry};

conformance!(
    writes_an_event_for_every_state_change,
    reads_events_gap_free_and_ordered_with_eight_writers,
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

async fn reads_events_gap_free_and_ordered_with_eight_writers(db: TestDb) {
    let client = client(&db, registry());
    // On Postgres, one transaction writes an event first and commits last: a reader that
    // trusted id order alone would skip it.
    let held = match db.store.pg_pool() {
        Some(pool) => {
            let mut tx = pool.begin().await.unwrap();
            client
                .enqueue_in(&mut *tx, EnqueueRequest::new("noop", json!({})))
                .await
                .unwrap();
            Some(tx)
        }
        None => None,
    };
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    client
                        .enqueue(EnqueueRequest::new("noop", json!({})))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let store = db.store.clone();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut cursor = EventId(0);
        while seen.len() < 201 {
            let batch = store.events_after(cursor, 37).await.unwrap();
            if let Some(last) = batch.last() {
                cursor = last.id;
            }
            seen.extend(batch.into_iter().map(|e| e.id));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        seen
    });
    for writer in writers {
        writer.await.unwrap();
    }
    let expected = if let Some(tx) = held {
        // The other writers are done; the reader must still be waiting for the held event.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !reader.is_finished(),
            "the reader got past an uncommitted event"
        );
        tx.commit().await.unwrap();
        201
    } else {
        200
    };
    let seen = if expected == 201 {
        tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .unwrap()
            .unwrap()
    } else {
        reader.abort();
        let mut all = Vec::new();
        let mut cursor = EventId(0);
        loop {
            let batch = db.store.events_after(cursor, 100).await.unwrap();
            let Some(last) = batch.last() else { break };
            cursor = last.id;
            all.extend(batch.into_iter().map(|e| e.id));
        }
        all
    };
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "ids are strictly increasing"
    );
    let all = all_event_ids(&db).await;
    assert_eq!(all.len(), expected);
    assert_eq!(
        seen, all,
        "the reader saw every event exactly once, in order"
    );
}

async fn all_event_ids(db: &TestDb) -> Vec<EventId> {
    let ids: BTreeSet<i64> = match db.store.pg_pool() {
        Some(pool) => sqlx::query_scalar("SELECT id FROM events")
            .fetch_all(pool)
            .await
            .unwrap(),
        None => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT id FROM events")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    }
    .into_iter()
    .collect();
    ids.into_iter().map(EventId).collect()
}
