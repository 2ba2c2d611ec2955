//! Leases are held per attempt: only the attempts a process holds are renewed, an attempt
//! whose lease another process took is stopped, a rescued job keeps its place in the queue,
//! and shutdown ends on time whatever a handler does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use longshore_jobs::JobState;
use serde_json::json;

use crate::support::{
    Lingers, RunningPool, TestDb, client, enqueue, eventually, fast_pool, registry,
};

crate::per_backend!(
    crate::support::db =>
    rescues_a_job_whose_stored_outcome_was_forgotten_while_its_worker_lives,
    stops_the_handler_of_an_attempt_whose_lease_another_process_took,
    shutdown_ends_on_time_even_when_a_handler_blocks_its_thread,
);

/// A crashed Postgres may forget an outcome it acknowledged (outcomes commit with
/// `synchronous_commit = off`): the row is back to how it was while the attempt ran, under a
/// worker that is alive and heartbeating. It must be rescued, not renewed forever.
async fn rescues_a_job_whose_stored_outcome_was_forgotten_while_its_worker_lives(db: TestDb) {
    let client = client(&db, registry());
    let pool = RunningPool::start(
        fast_pool(&[("default", 2)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    let id = enqueue(&client, "noop", json!({})).await;
    eventually(Duration::from_secs(5), "the job completes", || async {
        let job = db.store.job(id).await.unwrap().unwrap();
        (job.state == JobState::Completed).then_some(())
    })
    .await;
    let worker = db.store.attempts(id).await.unwrap()[0]
        .worker
        .clone()
        .unwrap();
    let forgotten = db
        .execute(
            "UPDATE jobs SET state = 'running', finished_at = NULL, locked_by = $1, \
             lease_expires_at = now() + interval '1 second' WHERE id = $2::uuid",
            "UPDATE jobs SET state = 'running', finished_at = NULL, locked_by = ?1, \
             lease_expires_at = CAST(?3 AS INTEGER) WHERE id = unhex(replace(?2, '-', ''))",
            &[
                &worker,
                &id.to_string(),
                &(chrono::Utc::now().timestamp_micros() + 1_000_000).to_string(),
            ],
        )
        .await;
    assert_eq!(forgotten, 1);
    let job = eventually(
        Duration::from_secs(10),
        "the forgotten attempt is rescued and the job runs again",
        || async {
            let job = db.store.job(id).await.unwrap().unwrap();
            (job.state == JobState::Completed && job.attempt == 2).then_some(job)
        },
    )
    .await;
    pool.stop().await;
    let outcomes: Vec<String> = db
        .store
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, ["completed", "lost", "completed"], "{job:?}");
}

async fn stops_the_handler_of_an_attempt_whose_lease_another_process_took(db: TestDb) {
    let client = client(&db, registry());
    let pool = RunningPool::start(
        fast_pool(&[("default", 2)]),
        db.store.clone(),
        Arc::new(registry()),
    );
    let id = enqueue(&client, "test.lingers", json!({})).await;
    eventually(Duration::from_secs(5), "attempt 1 starts", || async {
        Lingers::notes(id).contains(&(1, "started")).then_some(())
    })
    .await;
    // What another process's rescuer does once the lease ran out while this process was
    // frozen: the job is given back and claimed again, here by the same pool.
    // Only attempt 1 is expired: the pool's own rescuer may be the one that gives it back.
    eventually(Duration::from_secs(5), "the lease is taken", || async {
        db.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' \
             WHERE id = $1::uuid AND state = 'running' AND attempt = 1",
            "UPDATE jobs SET lease_expires_at = 0 \
             WHERE id = unhex(replace(?1, '-', '')) AND state = 'running' AND attempt = 1",
            &[&id.to_string()],
        )
        .await;
        db.store.rescue_expired(10).await.unwrap();
        let attempts = db.store.attempts(id).await.unwrap();
        let lost = attempts
            .iter()
            .any(|a| a.attempt == 1 && a.outcome == "lost");
        lost.then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(5),
        "attempt 2 runs and attempt 1 is stopped",
        || async {
            let notes = Lingers::notes(id);
            (notes.contains(&(2, "started")) && notes.contains(&(1, "stopped"))).then_some(())
        },
    )
    .await;
    assert!(
        !Lingers::notes(id).contains(&(2, "stopped")),
        "the new attempt runs on"
    );
    db.store.cancel(id).await.unwrap();
    let job = eventually(
        Duration::from_secs(5),
        "the cancel reaches attempt 2",
        || async {
            let job = db.store.job(id).await.unwrap().unwrap();
            job.state.is_terminal().then_some(job)
        },
    )
    .await;
    assert_eq!((job.state, job.attempt), (JobState::Cancelled, 2));
    let started = Instant::now();
    pool.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "nothing is left running"
    );
    let outcomes: Vec<String> = db
        .store
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        outcomes,
        ["lost", "cancelled"],
        "the stopped attempt 1 reports nothing"
    );
}

async fn shutdown_ends_on_time_even_when_a_handler_blocks_its_thread(db: TestDb) {
    let client = client(&db, registry());
    let mut config = fast_pool(&[("default", 2)]);
    config.shutdown_grace = Duration::from_millis(500);
    config.cancel_grace = Duration::from_millis(300);
    let pool = RunningPool::start(config, db.store.clone(), Arc::new(registry()));
    let id = enqueue(&client, "test.stubborn", json!({ "ms": 8000 })).await;
    eventually(Duration::from_secs(5), "the stubborn job runs", || async {
        let job = db.store.job(id).await.unwrap().unwrap();
        (job.state == JobState::Running).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    pool.stop().await;
    let took = started.elapsed();
    // The grace (0.5 s) and the cancel grace (0.3 s), then the outcome is stored; the handler
    // would block for 8 s.
    assert!(took < Duration::from_millis(2500), "shutdown took {took:?}");
    let job = db.store.job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempt),
        (JobState::Available, 0),
        "handed back as interrupted, its attempt not counted, though its thread still blocks"
    );
}
