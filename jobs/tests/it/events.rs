//! The outbox is read gap-free and in order while eight writers commit, and a reader can
//! start from a time.

use std::collections::BTreeSet;
use std::time::Duration;

use longshore_jobs::{EnqueueRequest, EventId};
use serde_json::json;

use crate::support::{TestDb, client};

crate::per_backend!(
    crate::support::db =>
    reads_events_gap_free_and_ordered_with_eight_writers,
    finds_the_last_event_before_a_time_even_when_ids_and_times_disagree,
);

async fn reads_events_gap_free_and_ordered_with_eight_writers(db: TestDb) {
    let client = client(&db);
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
    // The reader follows the outbox while the writers commit, and must see every event
    // exactly once, in order, on both backends (200 events; on Postgres one more, held).
    let expected = if held.is_some() { 201 } else { 200 };
    let store = db.store.clone();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut cursor = EventId(0);
        while seen.len() < expected {
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
    if let Some(tx) = held {
        // The other writers are done; the reader must still be waiting for the held event.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !reader.is_finished(),
            "the reader got past an uncommitted event"
        );
        tx.commit().await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the reader sees every event")
        .unwrap();
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

/// Sets the time event `id` was written, to `at` (RFC 3339).
async fn set_event_time(db: &TestDb, id: EventId, at: &str) {
    let micros = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp_micros()
        .to_string();
    let id = id.0.to_string();
    let (sql, time) = if db.is_postgres() {
        (
            "UPDATE events SET at = $1::timestamptz WHERE id = $2::bigint",
            at,
        )
    } else {
        (
            "UPDATE events SET at = CAST($1 AS INTEGER) WHERE id = CAST($2 AS INTEGER)",
            micros.as_str(),
        )
    };
    assert_eq!(
        longshore_testkit::execute(&db.url, sql, &[time, &id]).await,
        1
    );
}

async fn finds_the_last_event_before_a_time_even_when_ids_and_times_disagree(db: TestDb) {
    let client = client(&db);
    let before = |at: &str| {
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc();
        db.store.last_event_before(at)
    };
    assert_eq!(before("2026-01-01T00:00:00Z").await.unwrap(), EventId(0));
    // Each job's `job.enqueued`, read by job (no horizon to wait for).
    let mut ids = Vec::new();
    for _ in 0..4 {
        let id = crate::support::enqueue(&client, "noop", json!({})).await;
        ids.push(db.store.job_events(id).await.unwrap()[0].id);
    }
    // The third event carries a time before the second's, as a process whose clock is a
    // little behind would write it.
    let times = [
        "2026-01-01T10:00:00Z",
        "2026-01-01T10:00:02Z",
        "2026-01-01T10:00:01Z",
        "2026-01-01T10:00:03Z",
    ];
    for (id, at) in ids.iter().zip(times) {
        set_event_time(&db, *id, at).await;
    }
    assert_eq!(before("2026-01-01T09:00:00Z").await.unwrap(), EventId(0));
    assert_eq!(
        before("2026-01-01T10:00:00Z").await.unwrap(),
        EventId(0),
        "at is not before"
    );
    assert_eq!(before("2026-01-01T10:00:00.5Z").await.unwrap(), ids[0]);
    // The latest time before 10:00:02.5 is the second event's, but the third was written
    // before it too, and comes after it in id order.
    assert_eq!(before("2026-01-01T10:00:02.5Z").await.unwrap(), ids[2]);
    assert_eq!(before("2026-01-02T00:00:00Z").await.unwrap(), ids[3]);
}
