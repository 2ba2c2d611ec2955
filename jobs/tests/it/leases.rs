//! Leases: only held attempts are renewed; a rescued job keeps its place.

use std::time::Duration;

use longshore_jobs::{EnqueueRequest, WorkerId};
use serde_json::json;

use crate::support::{TestDb, client, enqueue};

crate::per_backend!(
    crate::support::db =>
    renews_only_the_attempts_it_is_given_and_reports_the_lost_ones,
    a_rescued_job_keeps_its_place_in_the_queue,
);

async fn renews_only_the_attempts_it_is_given_and_reports_the_lost_ones(db: TestDb) {
    let client = client(&db);
    let a = enqueue(&client, "noop", json!({})).await;
    let b = enqueue(&client, "noop", json!({})).await;
    let worker = WorkerId("default@w".into());
    let claimed = db
        .store
        .claim("default", &worker, 2, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let held = |id, attempt, worker: &str| longshore_jobs::Lease {
        job: id,
        attempt,
        worker: WorkerId(worker.into()),
    };
    let renewal = db
        .store
        .extend_leases(
            &[
                held(a, 1, "default@w"),
                held(b, 7, "default@w"),
                held(b, 1, "default@other"),
            ],
            Duration::from_secs(60),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(renewal.extended, 1, "only a's attempt 1 is held as given");
    let mut lost = renewal.lost.clone();
    lost.sort();
    assert_eq!(lost, vec![(b, 1), (b, 7)], "wrong attempt, wrong worker");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rescued: Vec<_> = db
        .store
        .rescue_expired(100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(rescued, vec![b], "b was not renewed, a was");
}

async fn a_rescued_job_keeps_its_place_in_the_queue(db: TestDb) {
    let client = client(&db);
    let first = enqueue(&client, "noop", json!({})).await;
    let dead = WorkerId("default@dead".into());
    let claimed = db
        .store
        .claim("default", &dead, 1, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(claimed[0].id, first);
    let backlog: Vec<_> = (0..5)
        .map(|_| EnqueueRequest::new("noop", json!({})))
        .collect();
    client.enqueue_many(backlog).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(db.store.rescue_expired(10).await.unwrap().len(), 1);
    let next = db
        .store
        .claim("default", &dead, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        next[0].id, first,
        "the rescued job runs before the backlog that arrived while it ran"
    );
}
