//! A worker process frozen past its lease (SIGSTOP, or a database freeze it sat through):
//! another process rescues its job, the job comes back to it under a new attempt, and the old
//! attempt's handler must stop at once rather than run beside the new one. SIGTERM then ends
//! the process within its grace periods, even with a handler that blocks its thread.

use std::time::{Duration, Instant};

use longshore_jobs::{EnqueueRequest, JobState};
use serde_json::json;

use crate::support::{FAST, TestDb, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_stops_the_attempt_it_lost_and_still_exits_on_time() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let client = db.client();
    let serve = [
        &[
            "worker",
            "--queues",
            "default=5",
            "--shutdown-grace",
            "2s",
            "--cancel-grace",
            "1s",
        ],
        FAST,
    ]
    .concat();
    let mut a = db.spawn("a", &serve);
    let _b = db.spawn("b", &[&["worker", "--queues", "other=1"], FAST].concat());
    let id = client
        .enqueue(EnqueueRequest::new("sleep", json!({ "ms": 600_000 })))
        .await
        .unwrap()
        .id;
    eventually(Duration::from_secs(10), "A runs the job", || async {
        let job = db.store.job(id).await.unwrap().unwrap();
        (job.state == JobState::Running).then_some(())
    })
    .await;

    a.signal(libc::SIGSTOP);
    eventually(Duration::from_secs(10), "B rescues the job", || async {
        let attempts = db.store.attempts(id).await.unwrap();
        attempts.iter().any(|a| a.outcome == "lost").then_some(())
    })
    .await;
    a.signal(libc::SIGCONT);
    let resumed = Instant::now();
    eventually(
        Duration::from_secs(10),
        "A runs attempt 2 and stops attempt 1",
        || async {
            let job = db.store.job(id).await.unwrap().unwrap();
            let stopped = a.log_text().lines().any(|l| {
                l.contains("lease lost to another process") && l.contains("job.attempt=1")
            });
            (job.state == JobState::Running && job.attempt == 2 && stopped).then_some(())
        },
    )
    .await;
    println!(
        "frozen worker: the lost attempt stopped {:.1} s after the process resumed",
        resumed.elapsed().as_secs_f64()
    );

    // A handler that blocks its thread and ignores every stop request.
    let stubborn = client
        .enqueue(EnqueueRequest::new(
            "test.stubborn",
            json!({ "ms": 60_000 }),
        ))
        .await
        .unwrap()
        .id;
    eventually(
        Duration::from_secs(10),
        "A runs the stubborn job",
        || async {
            let job = db.store.job(stubborn).await.unwrap().unwrap();
            (job.state == JobState::Running).then_some(())
        },
    )
    .await;
    a.signal(libc::SIGTERM);
    let sent = Instant::now();
    let status = a.wait_for_exit(Duration::from_secs(15));
    let took = sent.elapsed();
    println!(
        "frozen worker: exited {:.1} s after SIGTERM",
        took.as_secs_f64()
    );
    // 2 s of grace, 1 s of cancel grace, and one for the runtime to let go of the thread the
    // stubborn handler still blocks.
    assert!(
        took < Duration::from_millis(5000),
        "exit took {took:?}; log:\n{}",
        a.log_text()
    );
    assert_eq!(status.code(), Some(0), "log:\n{}", a.log_text());
    let stubborn_outcomes: Vec<String> = db
        .store
        .attempts(stubborn)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        stubborn_outcomes,
        ["interrupted"],
        "handed back, though its thread blocks"
    );
    let attempts = db.store.attempts(id).await.unwrap();
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["lost", "interrupted"],
        "attempt 1 reports nothing after its lease was lost"
    );
}
