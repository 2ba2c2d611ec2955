//! The push log stores each event id once however many processes race to store it, and is
//! read gap-free and in position order while other transactions commit late.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use longshore_jobs::push::NewPush;
use serde_json::json;

use crate::support::TestDb;

crate::per_backend!(
    crate::support::db =>
    stores_each_event_id_once_across_racing_processes,
    reads_pushes_gap_free_while_a_transaction_commits_late,
);

fn pushes(ids: impl IntoIterator<Item = usize>) -> Vec<NewPush> {
    ids.into_iter()
        .map(|n| NewPush {
            event_id: format!("e{n}"),
            user_id: format!("u{}", n % 7),
            kind: "note".to_owned(),
            payload: json!({ "n": n }),
        })
        .collect()
}

async fn stores_each_event_id_once_across_racing_processes(db: TestDb) {
    // Six stores (six processes' pools) send overlapping batches of 0..120 at once, each
    // batch with an id twice.
    let mut tasks = Vec::new();
    for writer in 0..6 {
        let store = db.second_store().await;
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for round in 0..4 {
                let start = (writer * 13 + round * 17) % 80;
                let mut batch = pushes(start..start + 40);
                batch.push(batch[0].clone());
                let stored = store.insert_pushes(&batch).await.unwrap();
                assert_eq!(stored.len(), batch.len());
                assert!(stored.last().unwrap().duplicate, "the repeat in a batch");
                assert_eq!(stored.last().unwrap().position, stored[0].position);
                answers.extend(stored);
            }
            answers
        }));
    }
    let mut positions: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut fresh: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        for answer in task.await.unwrap() {
            positions
                .entry(answer.event_id.clone())
                .or_default()
                .insert(answer.position);
            if !answer.duplicate {
                *fresh.entry(answer.event_id).or_default() += 1;
            }
        }
    }
    // Every answer for an event id names the same position, and one answer stored it.
    assert!(positions.values().all(|p| p.len() == 1), "{positions:?}");
    assert!(fresh.values().all(|n| *n == 1), "{fresh:?}");
    assert_eq!(fresh.len(), positions.len());
    let stored = db.store.pushes_after(0, 1000).await.unwrap();
    assert_eq!(stored.len(), positions.len(), "one row an event id");
    for push in &stored {
        assert_eq!(positions[&push.event_id], BTreeSet::from([push.position]));
    }
}

async fn reads_pushes_gap_free_while_a_transaction_commits_late(db: TestDb) {
    // On Postgres, one transaction stores a push first and commits last: a reader that
    // trusted position order alone would skip it.
    let held = match db.store.pg_pool() {
        Some(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO pushes (event_id, user_id, kind, payload, at) \
                 VALUES ('held', 'u', 'note', '{}', now())",
            )
            .execute(&mut *tx)
            .await
            .unwrap();
            Some(tx)
        }
        None => None,
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = db.store.clone();
            tokio::spawn(async move {
                for round in 0..10 {
                    let from = w * 1000 + round * 5;
                    store.insert_pushes(&pushes(from..from + 5)).await.unwrap();
                }
            })
        })
        .collect();
    let expected = if held.is_some() { 401 } else { 400 };
    let store = db.store.clone();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut after = 0;
        while seen.len() < expected {
            let batch = store.pushes_after(after, 37).await.unwrap();
            if let Some(last) = batch.last() {
                after = last.position;
            }
            seen.extend(batch.into_iter().map(|p| (p.position, p.event_id)));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        seen
    });
    for writer in writers {
        writer.await.unwrap();
    }
    if let Some(tx) = held {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !reader.is_finished(),
            "the reader got past an uncommitted push"
        );
        tx.commit().await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the reader sees every push")
        .unwrap();
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "positions increase"
    );
    let ids: BTreeSet<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), expected, "every push once");
    assert_eq!(
        ids.contains("held"),
        db.is_postgres(),
        "the late one is read too"
    );
    // Everything stored was read, and nothing more.
    assert!(
        db.store
            .pushes_after(seen.last().unwrap().0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
