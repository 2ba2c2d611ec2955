//! An idle process polls for nothing: its workers sleep until a wake-up or their queue's next
//! `run_at`, its scheduler until the next tick or a schedule change, its relay until an
//! endpoint is enabled. Every test here sets the polls to 30 s or more, so only the wake-ups
//! can explain a job that runs on time. On Postgres the change comes from a second store, as
//! from another process, so the wake-up crosses by `NOTIFY`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use longshore_jobs::push::NewPush;
use longshore_jobs::schedule::{CatchUp, Overlap, ScheduleDef, Source};
use longshore_jobs::webhook::Endpoint;
use longshore_jobs::{Client, EnqueueRequest, JobId, JobState, Store};
use longshore_workers::kinds::webhook::relay::Relay;
use longshore_workers::kinds::{Deliver, WebhooksConfig};
use longshore_workers::{PoolConfig, SchedulerConfig};
use serde_json::json;

use crate::support::{RunningPool, TestDb, eventually, fast_pool, registry};

crate::per_backend!(
    crate::support::db =>
    an_idle_worker_runs_a_scheduled_job_at_its_time,
    jobs_enqueued_elsewhere_wake_an_idle_worker_by_every_path,
    an_idle_worker_runs_a_retry_after_its_backoff,
    a_schedule_made_elsewhere_fires_without_waiting_for_a_poll,
    an_endpoint_enabled_after_pushes_gets_only_what_follows,
);

/// Polls too slow to explain anything a test sees.
fn slow_pool() -> PoolConfig {
    PoolConfig {
        poll_interval: Duration::from_secs(30),
        idle_poll_interval: Duration::from_secs(60),
        scheduler: SchedulerConfig {
            enabled: true,
            interval: Duration::from_secs(60),
        },
        ..fast_pool(&[("default", 2)])
    }
}

/// The store a change comes from: another process's on Postgres.
async fn elsewhere(db: &TestDb) -> Store {
    match db.is_postgres() {
        true => db.second_store().await,
        false => db.store.clone(),
    }
}

async fn completed_at(db: &TestDb, id: JobId) -> chrono::DateTime<Utc> {
    eventually(Duration::from_secs(20), "the job completes", || async {
        let job = db.store.job(id).await.unwrap().unwrap();
        (job.state == JobState::Completed).then(|| job.finished_at.unwrap())
    })
    .await
}

async fn an_idle_worker_runs_a_scheduled_job_at_its_time(db: TestDb) {
    let pool = RunningPool::start(slow_pool(), db.store.clone(), Arc::new(registry()));
    // Idle first: the worker's claim found nothing and it sleeps.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = Client::new(elsewhere(&db).await, Arc::new(registry()));
    let request = EnqueueRequest {
        delay_ms: Some(1_500),
        ..EnqueueRequest::new("noop", json!({}))
    };
    let job = client.enqueue(request).await.unwrap();
    let run_at = db.store.job(job.id).await.unwrap().unwrap().run_at;
    let late = completed_at(&db, job.id).await - run_at;
    pool.stop().await;
    assert!(
        late < chrono::Duration::milliseconds(800),
        "a job due at {run_at} ran {late} late"
    );
}

/// Each way a job is stored wakes the idle workers of another process at once: alone (one
/// statement on Postgres), with a unique key (a transaction), in a batch, and from many
/// producers at once. On Postgres a lone enqueue's wake-up is its insert's own `NOTIFY`, a
/// burst's the relay's, coalesced.
async fn jobs_enqueued_elsewhere_wake_an_idle_worker_by_every_path(db: TestDb) {
    let pool = RunningPool::start(slow_pool(), db.store.clone(), Arc::new(registry()));
    let client = Client::new(elsewhere(&db).await, Arc::new(registry()));
    let unique = EnqueueRequest {
        unique: Some(longshore_jobs::UniqueOptions::key("idle-wake-unique")),
        ..EnqueueRequest::new("noop", json!({}))
    };
    for (path, requests) in [
        ("alone", vec![EnqueueRequest::new("noop", json!({}))]),
        ("with a unique key", vec![unique]),
        (
            "in a batch",
            vec![EnqueueRequest::new("noop", json!({})); 3],
        ),
    ] {
        // Idle first: the worker's last claim found nothing and it sleeps.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let stored = client.enqueue_many(requests).await.unwrap();
        for job in stored {
            completed_at(&db, job.unwrap().id).await;
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "jobs enqueued {path} in another process ran {took:?} later"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let producers: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let request = EnqueueRequest::new("noop", json!({}));
                client.enqueue(request).await.unwrap().id
            })
        })
        .collect();
    for producer in producers {
        completed_at(&db, producer.await.unwrap()).await;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "jobs enqueued by 16 producers at once in another process ran {took:?} later"
    );
    pool.stop().await;
}

async fn an_idle_worker_runs_a_retry_after_its_backoff(db: TestDb) {
    let pool = RunningPool::start(slow_pool(), db.store.clone(), Arc::new(registry()));
    let client = Client::new(db.store.clone(), Arc::new(registry()));
    let started = Instant::now();
    // Fails once, then succeeds after a 300 ms backoff (±20 %).
    let job = client
        .enqueue(EnqueueRequest::new("test.flaky", json!({ "fail": 1 })))
        .await
        .unwrap();
    completed_at(&db, job.id).await;
    pool.stop().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "a retry with a 300 ms backoff took {took:?}"
    );
    let attempts = db.store.attempts(job.id).await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
}

async fn a_schedule_made_elsewhere_fires_without_waiting_for_a_poll(db: TestDb) {
    let pool = RunningPool::start(slow_pool(), db.store.clone(), Arc::new(registry()));
    // The scheduler has looked (nothing due but the built-in retention) and sleeps.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let store = elsewhere(&db).await;
    let now = Utc::now();
    let def = ScheduleDef {
        id: "idle-wake".to_owned(),
        cron: "* * * * * *".to_owned(),
        timezone: "UTC".to_owned(),
        job: EnqueueRequest::new("noop", json!({})),
        catch_up: CatchUp::Skip,
        catch_up_window: Duration::from_secs(600),
        catch_up_cap: 5,
        overlap: Overlap::Allow,
        enabled: true,
    };
    let schedule = def.into_schedule(Source::Api, now, None).unwrap();
    store.put_schedule(&schedule).await.unwrap();
    let fired = eventually(Duration::from_secs(10), "the schedule fires", || async {
        let stored = db.store.schedule("idle-wake").await.unwrap()?;
        stored.last_fire_at
    })
    .await;
    pool.stop().await;
    let late = Utc::now() - now;
    assert!(
        late < chrono::Duration::seconds(5),
        "a schedule due every second first fired at {fired}, {late} after it was made"
    );
}

async fn push(store: &Store, event_id: &str) -> i64 {
    let push = NewPush {
        event_id: event_id.to_owned(),
        user_id: "u1".to_owned(),
        kind: "friend.request".to_owned(),
        payload: json!({}),
    };
    store.insert_pushes(&[push]).await.unwrap()[0].position
}

/// Waits until the push at `position` is below the log's horizon: final, so an endpoint
/// enabled from now on starts past it. (On Postgres the horizon is the server's oldest open
/// transaction, which the tests running beside this one hold back.)
async fn settled(store: &Store, position: i64) {
    longshore_testkit::eventually(Duration::from_secs(30), "the push is final", || async {
        (store.push_horizon().await.unwrap() > position).then_some(())
    })
    .await;
}

/// Runs the relay until it has made the delivery of `event_id` (a push committed while an
/// older transaction is open elsewhere is read once that one ends).
async fn relayed(relay: &Relay, db: &TestDb, event_id: &str) {
    longshore_testkit::eventually(Duration::from_secs(30), event_id, || async {
        relay
            .run_once()
            .await
            .unwrap()
            .expect("an endpoint is enabled");
        (deliveries_of(db, event_id).await == 1).then_some(())
    })
    .await;
}

/// Delivery jobs made for `event_id`.
async fn deliveries_of(db: &TestDb, event_id: &str) -> usize {
    let filter = longshore_jobs::admin::JobFilter {
        kind: Some("longshore.webhook".to_owned()),
        ..Default::default()
    };
    let jobs = db.store.list_jobs(&filter, None, 1000).await.unwrap();
    jobs.iter()
        .filter(|j| j.args["message_id"] == format!("push_{event_id}"))
        .count()
}

async fn an_endpoint_enabled_after_pushes_gets_only_what_follows(db: TestDb) {
    let mut registry = registry();
    registry.register(Deliver::new(
        WebhooksConfig::default(),
        Default::default(),
        Default::default(),
    ));
    let relay = Relay::new(
        Client::new(db.store.clone(), Arc::new(registry)),
        Duration::from_millis(50),
    );
    // No endpoint: the relay reads nothing, and pushes go by.
    let before = push(&db.store, "before").await;
    assert_eq!(relay.run_once().await.unwrap(), None);
    settled(&db.store, before).await;
    let now = Utc::now();
    let endpoint = Endpoint {
        id: uuid::Uuid::new_v4(),
        url: "http://hooks.example/in".to_owned(),
        kinds: vec!["friend.*".to_owned()],
        enabled: true,
        rate_limit: None,
        ordered: false,
        secret: "sealed".to_owned(),
        previous_secret: None,
        previous_until: None,
        consecutive_failures: 0,
        failing_since: None,
        breaker_until: None,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    db.store.create_endpoint(&endpoint).await.unwrap();
    push(&db.store, "after").await;
    relayed(&relay, &db, "after").await;
    assert_eq!(deliveries_of(&db, "before").await, 0, "the log's past");

    // Disabled, the endpoint misses what happens meanwhile, also once enabled again.
    assert!(
        db.store
            .disable_endpoint(endpoint.id, "test")
            .await
            .unwrap()
    );
    let meanwhile = push(&db.store, "while-disabled").await;
    assert_eq!(relay.run_once().await.unwrap(), None);
    settled(&db.store, meanwhile).await;
    let enable = longshore_jobs::webhook::EndpointSpec {
        enabled: Some(true),
        ..Default::default()
    };
    db.store
        .update_endpoint(endpoint.id, &enable)
        .await
        .unwrap();
    push(&db.store, "enabled-again").await;
    relayed(&relay, &db, "enabled-again").await;
    assert_eq!(deliveries_of(&db, "while-disabled").await, 0);
}

/// On Postgres a job enqueued inside the caller's transaction wakes the workers of every
/// process when the transaction commits (its `NOTIFY` commits with it), and never when it
/// rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_in_a_transaction_wakes_workers_at_commit_on_postgres() {
    let Some(db) = TestDb::new(longshore_testkit::Backend::Postgres).await else {
        return;
    };
    let pool = RunningPool::start(slow_pool(), db.store.clone(), Arc::new(registry()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = db.second_store().await;
    let client = Client::new(other.clone(), Arc::new(registry()));
    let pg = other.pg_pool().expect("a Postgres store").clone();

    let mut tx = pg.begin().await.unwrap();
    let dropped = client
        .enqueue_in(&mut *tx, EnqueueRequest::new("noop", json!({})))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = pg.begin().await.unwrap();
    let kept = client
        .enqueue_in(&mut *tx, EnqueueRequest::new("noop", json!({})))
        .await
        .unwrap();
    let committed = Instant::now();
    tx.commit().await.unwrap();
    completed_at(&db, kept.id).await;
    let took = committed.elapsed();
    pool.stop().await;
    assert!(db.store.job(dropped.id).await.unwrap().is_none());
    assert!(
        took < Duration::from_secs(3),
        "the job committed in a transaction ran {took:?} after the commit"
    );
}
