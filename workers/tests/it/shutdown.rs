//! Graceful shutdown: in-flight jobs finish, unstarted claims go back without an attempt.

use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::JobState;
use longshore_workers::{PoolConfig, Prefetch, QueueConfig};
use serde_json::json;

use crate::support::{
    Hangs, RunningPool, TestDb, client, enqueue, eventually, fast_pool, registry,
};

crate::per_backend!(
    crate::support::db =>
    finishes_in_flight_jobs_and_hands_back_unstarted_ones,
    interrupts_jobs_still_running_after_the_grace,
);

async fn finishes_in_flight_jobs_and_hands_back_unstarted_ones(db: TestDb) {
    let client = client(&db, registry());
    let mut config = fast_pool(&[]);
    config.queues.insert(
        "default".into(),
        QueueConfig {
            concurrency: 2,
            prefetch: Prefetch::Fixed(4),
        },
    );
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(enqueue(&client, "test.hangs", json!({ "ms": 600 })).await);
    }
    let pool = RunningPool::start(config, db.store.clone(), Arc::new(registry()));
    // Claimed shows `running` before the handler starts (a loaded machine may take a while):
    // wait for two handlers to have started, and four more jobs claimed behind them.
    eventually(
        Duration::from_secs(5),
        "two jobs run and four wait claimed",
        || async {
            let counts = db.store.count_by_state(None).await.unwrap();
            let started = ids.iter().filter(|id| Hangs::started(**id)).count();
            (counts.get(&JobState::Running) == Some(&6) && started == 2).then_some(())
        },
    )
    .await;
    pool.stop().await;
    let mut completed = 0;
    for id in &ids {
        let job = db.store.job(*id).await.unwrap().unwrap();
        match job.state {
            JobState::Completed => {
                completed += 1;
                assert_eq!(job.attempt, 1);
            }
            JobState::Available => {
                assert_eq!(job.attempt, 0, "a handed-back job keeps its attempt")
            }
            other => panic!("job {id} left {other} after shutdown"),
        }
    }
    assert_eq!(completed, 2, "the two in-flight jobs finished");
}

async fn interrupts_jobs_still_running_after_the_grace(db: TestDb) {
    let client = client(&db, registry());
    let config = PoolConfig {
        shutdown_grace: Duration::from_millis(200),
        ..fast_pool(&[("default", 2)])
    };
    let id = enqueue(&client, "test.hangs", json!({})).await;
    let pool = RunningPool::start(config, db.store.clone(), Arc::new(registry()));
    // Claimed is not started: wait for the handler itself.
    eventually(Duration::from_secs(5), "the handler runs", || async {
        Hangs::started(id).then_some(())
    })
    .await;
    pool.stop().await;
    let job = db.store.job(id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Available, 0));
    let outcomes: Vec<_> = db
        .store
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, ["interrupted"]);
}
