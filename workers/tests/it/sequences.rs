//! Sequences under real pools: 1,000 jobs over 50 keys, enqueued from three processes and run
//! by three pools at once, run one at a time per key and in enqueue order, while different
//! keys run side by side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use longshore_jobs::{
    Client, EnqueueRequest, JobContext, JobId, JobResult, JobState, Kind, KindOptions, Registry,
    kinds,
};
use serde::{Deserialize, Serialize};

use crate::support::{RunningPool, TestDb, eventually, fast_pool};

crate::per_backend!(
    crate::support::db =>
    a_thousand_jobs_over_fifty_keys_run_one_at_a_time_per_key_in_order,
);

/// One run of a sequenced job: its key, its id, and when it started and ended.
type Run = (String, JobId, Instant, Instant);

/// Records each run, taking a few milliseconds.
#[derive(Clone, Default)]
struct Recorder {
    runs: Arc<Mutex<Vec<Run>>>,
}

#[derive(Serialize, Deserialize)]
struct RecordArgs {
    key: String,
}

impl Kind for Recorder {
    const NAME: &'static str = "test.record";
    type Args = RecordArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            queue: "seq".into(),
            ..KindOptions::default()
        }
    }

    async fn run(&self, job: JobContext, args: RecordArgs) -> JobResult {
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(3)).await;
        self.runs
            .lock()
            .unwrap()
            .push((args.key, job.id, start, Instant::now()));
        Ok(serde_json::Value::Null)
    }
}

async fn a_thousand_jobs_over_fifty_keys_run_one_at_a_time_per_key_in_order(db: TestDb) {
    let recorder = Recorder::default();
    let mut registry = Registry::new();
    kinds::register_builtins(&mut registry);
    registry.register(recorder.clone());
    let registry = Arc::new(registry);
    let stores = [
        db.store.clone(),
        db.second_store().await,
        db.second_store().await,
    ];
    // Three processes enqueue at once, each a third of every key's jobs, in batches.
    let enqueues = stores.iter().enumerate().map(|(p, store)| {
        let client = Client::new(store.clone(), Arc::clone(&registry));
        async move {
            let mine: Vec<usize> = (0..1000).filter(|j| j % 3 == p).collect();
            let mut ids = Vec::new();
            for chunk in mine.chunks(50) {
                let requests = chunk
                    .iter()
                    .map(|j| {
                        let key = format!("key-{}", j % 50);
                        EnqueueRequest {
                            sequence: Some(key.clone()),
                            ..EnqueueRequest::new("test.record", serde_json::json!({ "key": key }))
                        }
                    })
                    .collect();
                for result in client.enqueue_many(requests).await.unwrap() {
                    ids.push(result.unwrap().id);
                }
            }
            ids
        }
    });
    let enqueued: Vec<JobId> = futures::future::join_all(enqueues)
        .await
        .into_iter()
        .flatten()
        .collect();
    let total = enqueued.len();
    assert_eq!(total, 1000);
    let pools: Vec<RunningPool> = stores
        .iter()
        .map(|store| {
            RunningPool::start(
                fast_pool(&[("seq", 8)]),
                store.clone(),
                Arc::clone(&registry),
            )
        })
        .collect();
    eventually(Duration::from_secs(120), "every job ran", || async {
        let counts = db.store.count_by_state(Some("seq")).await.unwrap();
        (counts.get(&JobState::Completed).copied() == Some(total as i64)).then_some(())
    })
    .await;
    for pool in pools {
        pool.stop().await;
    }
    let runs = recorder.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), total, "each job ran once");
    let mut by_key: HashMap<&str, Vec<&Run>> = HashMap::new();
    for run in &runs {
        by_key.entry(run.0.as_str()).or_default().push(run);
    }
    assert_eq!(by_key.len(), 50);
    for (key, runs) in &mut by_key {
        runs.sort_by_key(|r| r.2);
        for pair in runs.windows(2) {
            assert!(pair[0].3 <= pair[1].2, "{key}: two jobs ran at once");
        }
        let order: Vec<JobId> = runs.iter().map(|r| r.1).collect();
        let mut enqueue_order = order.clone();
        enqueue_order.sort();
        assert_eq!(order, enqueue_order, "{key} ran in enqueue order");
    }
    // Different keys ran side by side: some moment had several jobs running.
    let most = runs
        .iter()
        .map(|r| runs.iter().filter(|o| o.2 <= r.2 && r.2 < o.3).count())
        .max()
        .unwrap();
    assert!(most >= 4, "at most {most} jobs ran at once");
}
