//! A job that aborts its process ends discarded after exactly `max_attempts` starts, while
//! 500 other jobs complete. The test restarts the process each time it dies, as a supervisor
//! (systemd, Kubernetes) would.

use std::time::{Duration, Instant};

use longshore_jobs::{EnqueueRequest, JobState};
use serde_json::json;

use crate::support::{FAST, TestDb, read};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_aborts_its_process_is_discarded_after_max_attempts_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        poison(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_aborts_its_process_is_discarded_after_max_attempts_on_sqlite() {
    poison(TestDb::sqlite().await).await;
}

async fn poison(db: TestDb) {
    let client = db.client();
    let marker = db.path("starts");
    let abort = EnqueueRequest::new(
        "test.abort",
        json!({ "marker": marker.display().to_string() }),
    );
    let poison = client.enqueue(abort).await.unwrap().id;
    let others: Vec<_> = (0..500)
        .map(|_| EnqueueRequest::new("sleep", json!({ "ms": 20 })))
        .collect();
    client.enqueue_many(others).await.unwrap();

    let args = [&["worker", "--queues", "default=20"], FAST].concat();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut restarts = 0;
    let mut process = db.spawn("worker-0", &args);
    loop {
        let job = db.store.job(poison).await.unwrap().unwrap();
        let counts = db.store.count_by_state(Some("default")).await.unwrap();
        if job.state == JobState::Discarded && counts.get(&JobState::Completed) == Some(&500) {
            break;
        }
        if process.child.try_wait().unwrap().is_some() {
            restarts += 1;
            process = db.spawn(&format!("worker-{restarts}"), &args);
        }
        assert!(
            Instant::now() < deadline,
            "not settled: poison {:?}, counts {counts:?}",
            job.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = db.store.job(poison).await.unwrap().unwrap();
    assert_eq!((job.attempt, job.max_attempts), (3, 3));
    let starts = read(&marker).lines().count();
    assert_eq!(
        starts, 3,
        "the poison job started exactly max_attempts times"
    );
    assert_eq!(restarts, 3, "the process died once per start");
    let outcomes: Vec<_> = db
        .store
        .attempts(poison)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, ["lost", "lost", "lost"]);
    let counts = db.store.count_by_state(Some("default")).await.unwrap();
    assert_eq!(counts.get(&JobState::Completed), Some(&500));
    assert_eq!(counts.get(&JobState::Running), None);
}
