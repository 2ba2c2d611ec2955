//! A property test of the job lifecycle, on both backends: random sequences of enqueue, claim,
//! heartbeat, completion, late completion from a worker that crashed, crash, a pause past the
//! leases, rescue, cancel and retry, checked after every step against what the engine
//! promises:
//!
//! - a completion is accepted exactly when its worker holds the job's current attempt, so at
//!   most one worker's outcome ever counts for an attempt (late ones from crashed workers are
//!   refused once another worker took the job);
//! - after a heartbeat, every attempt a live worker still believes it holds is the job's
//!   current attempt under that worker's lease: the renewal reports exactly what was lost;
//! - terminal states are absorbing except for an explicit retry;
//! - the attempt history only grows, and a job's attempt count never goes back between two
//!   moments when it is not running;
//! - once crashes stop, every job reaches a terminal state.

use std::collections::BTreeMap;
use std::time::Duration;

use longshore_jobs::admin::JobFilter;
use longshore_jobs::{
    Completion, EnqueueRequest, ErrorReport, JobId, JobState, Outcome, StoreError, WorkerId,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

use crate::support::{Backend, TestDb, client, db};

const WORKERS: usize = 3;

#[derive(Clone, Copy, Debug)]
enum Ending {
    Completed,
    Retry,
    Discard,
    Snooze,
    Cancel,
}

#[derive(Clone, Debug)]
enum Op {
    Enqueue {
        max_attempts: i64,
    },
    Claim {
        worker: usize,
        limit: u32,
    },
    Heartbeat {
        worker: usize,
    },
    Complete {
        worker: usize,
        pick: usize,
        ending: Ending,
    },
    LateComplete {
        worker: usize,
        pick: usize,
    },
    Crash {
        worker: usize,
    },
    Pause {
        worker: usize,
    },
    Rescue,
    Cancel {
        pick: usize,
    },
    Retry {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let worker = 0..WORKERS;
    let ending = prop_oneof![
        3 => Just(Ending::Completed),
        2 => Just(Ending::Retry),
        1 => Just(Ending::Discard),
        1 => Just(Ending::Snooze),
        1 => Just(Ending::Cancel),
    ];
    prop_oneof![
        3 => (1..=3i64).prop_map(|max_attempts| Op::Enqueue { max_attempts }),
        3 => (worker.clone(), 1..=3u32).prop_map(|(worker, limit)| Op::Claim { worker, limit }),
        2 => worker.clone().prop_map(|worker| Op::Heartbeat { worker }),
        4 => (worker.clone(), 0..4usize, ending)
            .prop_map(|(worker, pick, ending)| Op::Complete { worker, pick, ending }),
        3 => (worker.clone(), 0..4usize).prop_map(|(worker, pick)| Op::LateComplete { worker, pick }),
        2 => worker.clone().prop_map(|worker| Op::Crash { worker }),
        2 => worker.clone().prop_map(|worker| Op::Pause { worker }),
        3 => Just(Op::Rescue),
        1 => (0..8usize).prop_map(|pick| Op::Cancel { pick }),
        1 => (0..8usize).prop_map(|pick| Op::Retry { pick }),
    ]
}

/// One job as a step left it.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    state: JobState,
    attempt: i32,
    locked_by: Option<String>,
    history: usize,
}

/// What the test's workers believe.
struct Model {
    queue: String,
    /// Each worker's id; a crash restarts it under a new one, as a new process would.
    ids: Vec<WorkerId>,
    generation: usize,
    held: Vec<Vec<(JobId, i32)>>,
    /// Attempts of crashed workers whose outcomes may still arrive, late.
    crashed: Vec<(WorkerId, JobId, i32)>,
    jobs: Vec<JobId>,
}

impl Model {
    fn new(case: usize) -> Model {
        let queue = format!("prop-{case}-{}", uuid::Uuid::new_v4().simple());
        let mut model = Model {
            ids: Vec::new(),
            generation: 0,
            held: vec![Vec::new(); WORKERS],
            crashed: Vec::new(),
            jobs: Vec::new(),
            queue,
        };
        model.ids = (0..WORKERS).map(|w| model.worker_id(w)).collect();
        model
    }

    fn worker_id(&mut self, worker: usize) -> WorkerId {
        self.generation += 1;
        WorkerId(format!("{}@w{worker}:{}", self.queue, self.generation))
    }
}

#[test]
fn the_lifecycle_keeps_its_promises_on_sqlite() {
    lifecycle(Backend::Sqlite);
}

#[test]
fn the_lifecycle_keeps_its_promises_on_postgres() {
    lifecycle(Backend::Postgres);
}

fn lifecycle(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = runtime.block_on(db(backend)) else {
        return;
    };
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    let (cases, steps) = (
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    );
    runner
        .run(&prop::collection::vec(op(), 1..60), |ops| {
            let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            steps.fetch_add(ops.len(), std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(run_case(&db, case, &ops));
            Ok(())
        })
        .unwrap();
    println!(
        "lifecycle property on {backend:?}: {} cases, {} steps, every promise held",
        cases.into_inner(),
        steps.into_inner()
    );
}

async fn run_case(db: &TestDb, case: usize, ops: &[Op]) {
    let client = client(db);
    let mut model = Model::new(case);
    let mut before = snapshot(db, &model).await;
    for op in ops {
        step(db, &client, &mut model, &before, op).await;
        let after = snapshot(db, &model).await;
        check(&model, &before, &after, op);
        before = after;
    }
    drain(db, &mut model).await;
    let after = snapshot(db, &model).await;
    for (id, seen) in &after {
        assert!(
            seen.state.is_terminal(),
            "job {id} is {} once crashes stopped: {ops:?}",
            seen.state
        );
    }
}

async fn step(
    db: &TestDb,
    client: &longshore_jobs::Client,
    model: &mut Model,
    before: &BTreeMap<JobId, Seen>,
    op: &Op,
) {
    let lease = Duration::from_secs(60);
    match op {
        Op::Enqueue { max_attempts } => {
            let request = EnqueueRequest {
                queue: Some(model.queue.clone()),
                max_attempts: Some(*max_attempts),
                ..EnqueueRequest::new("noop", json!({}))
            };
            model.jobs.push(client.enqueue(request).await.unwrap().id);
        }
        Op::Claim { worker, limit } => {
            let id = model.ids[*worker].clone();
            let claimed = db
                .store
                .claim(&model.queue, &id, *limit, lease)
                .await
                .unwrap();
            for job in claimed {
                model.held[*worker].push((job.id, job.attempt));
            }
        }
        Op::Heartbeat { worker } => {
            let id = &model.ids[*worker];
            let held: Vec<longshore_jobs::Lease> = model.held[*worker]
                .iter()
                .map(|&(job, attempt)| longshore_jobs::Lease {
                    job,
                    attempt,
                    worker: id.clone(),
                })
                .collect();
            let renewal = db.store.extend_leases(&held, lease, lease).await.unwrap();
            model.held[*worker].retain(|key| !renewal.lost.contains(key));
            // What it kept must be exactly what it holds.
            let now = snapshot(db, model).await;
            for (job, attempt) in &model.held[*worker] {
                let seen = &now[job];
                assert_eq!(
                    (seen.state, seen.attempt, seen.locked_by.as_deref()),
                    (JobState::Running, *attempt, Some(id.as_str())),
                    "a renewal kept an attempt its worker does not hold"
                );
            }
        }
        Op::Complete {
            worker,
            pick,
            ending,
        } => {
            if model.held[*worker].is_empty() {
                return;
            }
            let index = pick % model.held[*worker].len();
            let (job, attempt) = model.held[*worker].remove(index);
            let id = model.ids[*worker].clone();
            complete(db, before, job, attempt, id, *ending).await;
        }
        Op::LateComplete { worker, pick } => {
            if model.crashed.is_empty() {
                return;
            }
            let index = (pick + worker) % model.crashed.len();
            let (id, job, attempt) = model.crashed.remove(index);
            complete(db, before, job, attempt, id, Ending::Completed).await;
        }
        Op::Crash { worker } => {
            let id = model.ids[*worker].clone();
            for (job, attempt) in model.held[*worker].drain(..) {
                model.crashed.push((id.clone(), job, attempt));
            }
            // Its leases run out (played at once rather than waited for).
            db.execute(
                "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE locked_by = $1",
                "UPDATE jobs SET lease_expires_at = 0 WHERE locked_by = ?1",
                &[id.as_str()],
            )
            .await;
            model.ids[*worker] = model.worker_id(*worker);
        }
        Op::Pause { worker } => {
            // Frozen past its leases (SIGSTOP, a long GC pause): it keeps believing it holds
            // its attempts, which another worker may meanwhile be given.
            db.execute(
                "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE locked_by = $1",
                "UPDATE jobs SET lease_expires_at = 0 WHERE locked_by = ?1",
                &[model.ids[*worker].as_str()],
            )
            .await;
        }
        Op::Rescue => {
            db.store.rescue_expired(100).await.unwrap();
        }
        Op::Cancel { pick } => {
            let Some(job) = pick_job(model, *pick) else {
                return;
            };
            let result = db.store.cancel(job).await;
            match (before[&job].state, result) {
                (JobState::Running, Ok(_)) => {}
                (state, Ok(_)) => assert!(state.is_pending(), "cancelled a {state} job"),
                (state, Err(StoreError::Conflict { .. })) => {
                    assert!(state.is_terminal(), "refused to cancel a {state} job")
                }
                (_, Err(error)) => panic!("cancel failed: {error}"),
            }
        }
        Op::Retry { pick } => {
            let Some(job) = pick_job(model, *pick) else {
                return;
            };
            let result = db.store.retry(job).await;
            let running = before[&job].state == JobState::Running;
            match result {
                Ok(_) => assert!(!running, "retried a running job"),
                Err(StoreError::Conflict { .. }) => assert!(running, "refused a retry"),
                Err(error) => panic!("retry failed: {error}"),
            }
        }
    }
}

fn pick_job(model: &Model, pick: usize) -> Option<JobId> {
    (!model.jobs.is_empty()).then(|| model.jobs[pick % model.jobs.len()])
}

/// Reports an attempt's end as `worker`, deciding retry or discard as the dispatcher does,
/// and checks it was accepted exactly when the worker held the job's current attempt.
async fn complete(
    db: &TestDb,
    before: &BTreeMap<JobId, Seen>,
    job: JobId,
    attempt: i32,
    worker: WorkerId,
    ending: Ending,
) {
    let max_attempts = db.store.job(job).await.unwrap().unwrap().max_attempts;
    let error = || ErrorReport::message("planned");
    let outcome = match ending {
        Ending::Completed => Outcome::Completed { result: None },
        Ending::Retry if attempt >= max_attempts => Outcome::Discard { error: error() },
        Ending::Retry => Outcome::Retry {
            delay: Duration::ZERO,
            error: error(),
        },
        Ending::Discard => Outcome::Discard { error: error() },
        Ending::Snooze => Outcome::Snooze {
            delay: Duration::ZERO,
        },
        Ending::Cancel => Outcome::Cancel { reason: error() },
    };
    let seen = &before[&job];
    let holds = seen.state == JobState::Running
        && seen.attempt == attempt
        && seen.locked_by.as_deref() == Some(worker.as_str());
    let completion = Completion {
        lease: longshore_jobs::Lease {
            job,
            attempt,
            worker,
        },
        queue: String::new(),
        outcome,
    };
    let accepted = db.store.complete(&[completion]).await.unwrap();
    assert_eq!(
        accepted.contains(&job),
        holds,
        "an outcome is accepted exactly when its worker holds the current attempt: {seen:?}"
    );
}

async fn snapshot(db: &TestDb, model: &Model) -> BTreeMap<JobId, Seen> {
    let filter = JobFilter {
        queue: Some(model.queue.clone()),
        ..JobFilter::default()
    };
    let mut seen = BTreeMap::new();
    for job in db.store.list_jobs(&filter, None, 500).await.unwrap() {
        let history = db.store.attempts(job.id).await.unwrap().len();
        seen.insert(
            job.id,
            Seen {
                state: job.state,
                attempt: job.attempt,
                locked_by: job.locked_by,
                history,
            },
        );
    }
    seen
}

fn check(model: &Model, before: &BTreeMap<JobId, Seen>, after: &BTreeMap<JobId, Seen>, op: &Op) {
    let retried = match op {
        Op::Retry { pick } => pick_job(model, *pick),
        _ => None,
    };
    for (id, now) in after {
        let Some(was) = before.get(id) else {
            continue; // enqueued by this step
        };
        assert!(
            now.history >= was.history,
            "the attempt history shrank: {op:?}"
        );
        if was.state.is_terminal() && retried != Some(*id) {
            assert_eq!(
                now, was,
                "a {} job changed without a retry: {op:?}",
                was.state
            );
        }
        if was.state != JobState::Running && now.state != JobState::Running {
            assert!(now.attempt >= was.attempt, "attempts went back: {op:?}");
        }
    }
    // No two workers believe they hold the same attempt.
    let mut holders = BTreeMap::new();
    for (worker, held) in model.held.iter().enumerate() {
        for key in held {
            if let Some(other) = holders.insert(*key, worker) {
                panic!("workers {other} and {worker} both hold {key:?}");
            }
        }
    }
}

/// Crashes stop: every lease runs out, the rescuer gives the jobs back, and one worker runs
/// whatever is left to completion.
async fn drain(db: &TestDb, model: &mut Model) {
    db.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' \
         WHERE queue = $1 AND state = 'running'",
        "UPDATE jobs SET lease_expires_at = 0 WHERE queue = ?1 AND state = 'running'",
        &[&model.queue],
    )
    .await;
    let last = model.worker_id(0);
    for _ in 0..100 {
        db.store.rescue_expired(1000).await.unwrap();
        let claimed = db
            .store
            .claim(&model.queue, &last, 100, Duration::from_secs(60))
            .await
            .unwrap();
        if claimed.is_empty() {
            return;
        }
        let done: Vec<Completion> = claimed
            .into_iter()
            .map(|job| Completion {
                lease: longshore_jobs::Lease {
                    job: job.id,
                    attempt: job.attempt,
                    worker: last.clone(),
                },
                queue: job.queue,
                outcome: Outcome::Completed { result: None },
            })
            .collect();
        db.store.complete(&done).await.unwrap();
    }
}
