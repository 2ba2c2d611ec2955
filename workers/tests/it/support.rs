//! Test support: a fresh database per test through the one per-backend harness of `testkit`,
//! pool timings for tests, and kinds for fault tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use longshore_jobs::{
    Backoff, Client, JobContext, JobError, JobId, JobResult, Kind, KindOptions, Registry, Store,
    kinds,
};
use longshore_workers::{Pool, PoolConfig, QueueConfig};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use longshore_testkit::{Backend, TestDb, enqueue, per_backend};

/// A fresh database, or `None` when Postgres is unreachable outside CI.
pub async fn db(backend: Backend) -> Option<TestDb> {
    TestDb::new(backend).await
}

pub use longshore_testkit::eventually;

/// Pool timings short enough for tests.
pub fn fast_pool(queues: &[(&str, u32)]) -> PoolConfig {
    PoolConfig {
        queues: queues
            .iter()
            .map(|(name, concurrency)| {
                let queue = QueueConfig {
                    concurrency: *concurrency,
                    ..QueueConfig::default()
                };
                (name.to_string(), queue)
            })
            .collect(),
        lease: Duration::from_millis(1500),
        heartbeat_interval: Duration::from_millis(200),
        poll_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(5),
        cancel_grace: Duration::from_millis(500),
        rescue_interval: Duration::from_millis(200),
        ..PoolConfig::default()
    }
}

/// A pool running in the background of a test.
pub struct RunningPool {
    pub shutdown: CancellationToken,
    handle: JoinHandle<Result<(), longshore_workers::PoolError>>,
}

impl RunningPool {
    pub fn start(config: PoolConfig, store: Store, registry: Arc<Registry>) -> Self {
        let shutdown = CancellationToken::new();
        let pool = Pool::new(config, store, registry);
        let handle = tokio::spawn(pool.run(shutdown.clone()));
        RunningPool { shutdown, handle }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("pool task")
            .expect("pool stops cleanly");
    }
}

/// The registry tests use: the built-ins plus the fault kinds below.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    kinds::register_builtins(&mut registry);
    registry
        .register(Flaky)
        .register(Panics)
        .register(Snoozer)
        .register(Hangs)
        .register(Lingers)
        .register(longshore_workers::kinds::Stubborn);
    registry
}

pub fn client(db: &TestDb, registry: Registry) -> Client {
    Client::new(db.store.clone(), Arc::new(registry))
}

/// Fails its first `fail` attempts (retryably), then succeeds.
pub struct Flaky;

#[derive(Serialize, Deserialize)]
pub struct FlakyArgs {
    pub fail: u32,
}

impl Kind for Flaky {
    const NAME: &'static str = "test.flaky";
    type Args = FlakyArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            max_attempts: 3,
            backoff: Backoff::Fixed {
                delay: Duration::from_millis(300),
                jitter: 0.2,
            },
            ..KindOptions::default()
        }
    }

    async fn run(&self, job: JobContext, args: FlakyArgs) -> JobResult {
        if job.attempt <= args.fail {
            Err(JobError::retry(format!("planned failure {}", job.attempt)))
        } else {
            Ok(serde_json::json!({ "attempt": job.attempt }))
        }
    }
}

/// Panics on every attempt.
pub struct Panics;

impl Kind for Panics {
    const NAME: &'static str = "test.panics";
    type Args = serde_json::Value;

    fn options(&self) -> KindOptions {
        KindOptions {
            max_attempts: 2,
            backoff: Backoff::Fixed {
                delay: Duration::from_millis(50),
                jitter: 0.0,
            },
            ..KindOptions::default()
        }
    }

    async fn run(&self, _job: JobContext, _args: serde_json::Value) -> JobResult {
        panic!("boom in handler")
    }
}

/// Snoozes its first attempt for 200 ms, then succeeds.
pub struct Snoozer;

impl Kind for Snoozer {
    const NAME: &'static str = "test.snoozer";
    type Args = serde_json::Value;

    fn options(&self) -> KindOptions {
        KindOptions {
            max_attempts: 1,
            ..KindOptions::default()
        }
    }

    async fn run(&self, job: JobContext, _args: serde_json::Value) -> JobResult {
        static SNOOZED: Mutex<Vec<JobId>> = Mutex::new(Vec::new());
        let mut snoozed = SNOOZED.lock().unwrap();
        if snoozed.contains(&job.id) {
            Ok(serde_json::Value::Null)
        } else {
            snoozed.push(job.id);
            Err(JobError::snooze(Duration::from_millis(200)))
        }
    }
}

/// Notes that its handler started, then hangs for `ms` (a minute when absent): for tests that
/// must know a handler runs (a claimed job shows `running` before its handler starts).
pub struct Hangs;

static HANGING: Mutex<Vec<JobId>> = Mutex::new(Vec::new());

impl Hangs {
    /// Whether the handler of `id` started.
    pub fn started(id: JobId) -> bool {
        HANGING.lock().unwrap().contains(&id)
    }
}

impl Kind for Hangs {
    const NAME: &'static str = "test.hangs";
    type Args = serde_json::Value;

    async fn run(&self, job: JobContext, args: serde_json::Value) -> JobResult {
        HANGING.lock().unwrap().push(job.id);
        let ms = args["ms"].as_u64().unwrap_or(60_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(serde_json::Value::Null)
    }
}

/// Runs until it is asked to stop, noting when each attempt starts and why it stopped.
pub struct Lingers;

/// What [`Lingers`] saw: (job, attempt, "started" or "stopped").
static LINGERING: Mutex<Vec<(JobId, u32, &'static str)>> = Mutex::new(Vec::new());

impl Lingers {
    /// The notes of job `id`, in order.
    pub fn notes(id: JobId) -> Vec<(u32, &'static str)> {
        LINGERING
            .lock()
            .unwrap()
            .iter()
            .filter(|(job, _, _)| *job == id)
            .map(|(_, attempt, note)| (*attempt, *note))
            .collect()
    }
}

impl Kind for Lingers {
    const NAME: &'static str = "test.lingers";
    type Args = serde_json::Value;

    async fn run(&self, job: JobContext, _args: serde_json::Value) -> JobResult {
        LINGERING
            .lock()
            .unwrap()
            .push((job.id, job.attempt, "started"));
        job.cancel.cancelled().await;
        LINGERING
            .lock()
            .unwrap()
            .push((job.id, job.attempt, "stopped"));
        Err(JobError::retry("stopped"))
    }
}
