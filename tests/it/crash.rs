//! `kill -9` of a worker process holding 200+ running jobs while a second process runs.

use std::time::Duration;

use chrono::Utc;
use longshore_jobs::{EnqueueRequest, JobState};
use serde_json::json;

use crate::support::{FAST, TestDb, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_busy_worker_loses_no_job() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let client = db.client();
    let args = [&["worker", "--queues", "default=300"], FAST].concat();
    let mut a = db.spawn("a", &args);
    let jobs: Vec<_> = (0..250)
        .map(|_| EnqueueRequest::new("sleep", json!({ "ms": 4000 })))
        .collect();
    client.enqueue_many(jobs).await.unwrap();
    let held_by_a = format!("%:{}:%", a.pid());
    eventually(Duration::from_secs(20), "A runs 200+ jobs", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE state = 'running' AND locked_by LIKE $1",
        )
        .bind(&held_by_a)
        .fetch_one(&pool)
        .await
        .unwrap();
        (n >= 200).then_some(())
    })
    .await;
    let _b = db.spawn("b", &args);
    eventually(Duration::from_secs(10), "B is up", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workers WHERE stopped_at IS NULL AND queue = 'default'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (n == 2).then_some(())
    })
    .await;
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE state = 'running' AND locked_by LIKE $1",
    )
    .bind(&held_by_a)
    .fetch_one(&pool)
    .await
    .unwrap();
    a.signal(libc::SIGKILL);
    let killed_at = Utc::now();
    a.wait_for_exit(Duration::from_secs(5));

    let counts = eventually(Duration::from_secs(40), "every job completes", || async {
        let counts = db.store.count_by_state(Some("default")).await.unwrap();
        (counts.get(&JobState::Completed) == Some(&250)).then_some(counts)
    })
    .await;
    assert_eq!(
        counts.len(),
        1,
        "no job is left in another state: {counts:?}"
    );

    // Every job A held was rescued, within lease (2 s) + 2 heartbeat intervals (2 × 500 ms).
    let delays: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM at - $1)::float8 FROM events WHERE type = 'job.rescued'",
    )
    .bind(killed_at)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(held >= 200, "A held {held} jobs when killed");
    assert_eq!(
        delays.len() as i64,
        held,
        "each job A held was rescued once"
    );
    let worst = delays.iter().cloned().fold(0.0, f64::max);
    println!(
        "rescued {} jobs; the last {worst:.2}s after the kill",
        delays.len()
    );
    assert!(worst <= 3.0, "rescue took {worst:.2}s");
}
