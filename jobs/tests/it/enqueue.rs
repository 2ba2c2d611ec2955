//! Bad input is refused at enqueue with an error naming the field, and stores nothing.

use std::time::Duration;

use longshore_jobs::admin::JobFilter;
use longshore_jobs::{EnqueueError, EnqueueRequest, Lease, WorkerId};
use serde_json::json;

use crate::support::{TestDb, client};

crate::per_backend!(
    crate::support::db =>
    refuses_bad_enqueues_naming_the_field,
    answers_each_item_of_a_batch,
    stores_jobs_with_a_checkpoint_only_while_the_attempt_holds_its_lease,
    enqueues_inside_the_callers_transaction,
    an_enqueue_held_past_its_deadline_says_whether_it_may_be_stored,
);

async fn refuses_bad_enqueues_naming_the_field(db: TestDb) {
    let client = client(&db);
    let unknown = client
        .enqueue(EnqueueRequest::new("no.such.kind", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, EnqueueError::UnknownKind(ref k) if k == "no.such.kind"),
        "{unknown}"
    );
    let cases = [
        (
            EnqueueRequest::new("sleep", json!({ "ms": "soon" })),
            "args",
        ),
        (
            EnqueueRequest::new("sleep", json!({ "ms": 5, "extra": 1 })),
            "args",
        ),
        (
            EnqueueRequest {
                delay_ms: Some(-5),
                ..EnqueueRequest::new("noop", json!({}))
            },
            "delay_ms",
        ),
        (
            EnqueueRequest {
                max_attempts: Some(0),
                ..EnqueueRequest::new("noop", json!({}))
            },
            "max_attempts",
        ),
        (
            EnqueueRequest {
                priority: Some(10),
                ..EnqueueRequest::new("noop", json!({}))
            },
            "priority",
        ),
        (
            EnqueueRequest {
                queue: Some("bad queue;".into()),
                ..EnqueueRequest::new("noop", json!({}))
            },
            "queue",
        ),
        (
            EnqueueRequest {
                metadata: Some(json!([1])),
                ..EnqueueRequest::new("noop", json!({}))
            },
            "metadata",
        ),
        (
            EnqueueRequest::new("noop", json!({ "pad": "x".repeat(300 * 1024) })),
            "args",
        ),
    ];
    for (request, field) in cases {
        match client.enqueue(request).await.unwrap_err() {
            EnqueueError::Invalid {
                field: got,
                message,
            }
            | EnqueueError::TooLarge {
                field: got,
                message,
            } => {
                assert_eq!(got, field, "{message}");
                assert!(!message.is_empty());
            }
            other => panic!("expected invalid {field}, got {other}"),
        }
    }
    assert!(
        db.store.count_by_state(None).await.unwrap().is_empty(),
        "nothing was stored"
    );
}

async fn answers_each_item_of_a_batch(db: TestDb) {
    let client = client(&db);
    let results = client
        .enqueue_many(vec![
            EnqueueRequest::new("noop", json!({})),
            EnqueueRequest::new("nope", json!({})),
            EnqueueRequest::new("sleep", json!({ "ms": 1 })),
        ])
        .await
        .unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(results[1], Err(EnqueueError::UnknownKind(_))));
    let counts = db.store.count_by_state(None).await.unwrap();
    assert_eq!(counts.values().sum::<i64>(), 2);
}

/// What a fan-out sweep relies on: a page's jobs and the pass's checkpoint commit together,
/// and not at all once the pass's attempt has lost its lease.
async fn stores_jobs_with_a_checkpoint_only_while_the_attempt_holds_its_lease(db: TestDb) {
    let client = client(&db);
    let pass = client
        .enqueue(EnqueueRequest::new("noop", json!({})))
        .await
        .unwrap();
    let worker = WorkerId("default@test".into());
    let claimed = db
        .store
        .claim("default", &worker, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let children = |n: usize| {
        (0..n)
            .map(|i| {
                client
                    .prepare(EnqueueRequest {
                        queue: Some("children".to_owned()),
                        ..EnqueueRequest::new("noop", json!({ "i": i }))
                    })
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    let in_children = JobFilter {
        queue: Some("children".to_owned()),
        ..JobFilter::default()
    };
    // Held: both commit.
    let stored = db
        .store
        .insert_with_progress(children(3), &claimed[0].lease(&worker), &json!({"page": 1}))
        .await
        .unwrap();
    assert_eq!(stored.map(|s| s.len()), Some(3));
    assert_eq!(db.store.count_jobs(&in_children).await.unwrap(), 3);
    assert_eq!(
        db.store.job_progress(pass.id).await.unwrap(),
        Some(json!({"page": 1}))
    );
    // Another worker, or a stale attempt: neither commits.
    for (attempt, who) in [(1, "default@other"), (2, "default@test")] {
        let refused = db
            .store
            .insert_with_progress(
                children(2),
                &Lease {
                    job: pass.id,
                    attempt,
                    worker: WorkerId(who.into()),
                },
                &json!({"page": 2}),
            )
            .await
            .unwrap();
        assert!(refused.is_none(), "attempt {attempt} of {who}");
    }
    assert_eq!(db.store.count_jobs(&in_children).await.unwrap(), 3);
    assert_eq!(
        db.store.job_progress(pass.id).await.unwrap(),
        Some(json!({"page": 1}))
    );
}

/// `Client::enqueue_in` on a transaction of the caller's: the job commits with it or not at
/// all, validated as any enqueue, on both backends.
async fn enqueues_inside_the_callers_transaction(db: TestDb) {
    let client = client(&db);
    let request = || EnqueueRequest::new("noop", json!({ "order": 7 }));
    macro_rules! run {
        ($pool:ty) => {{
            let pool = <$pool>::connect(&db.url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            let rolled_back = client.enqueue_in(&mut *tx, request()).await.unwrap();
            tx.rollback().await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            let refused = client
                .enqueue_in(
                    &mut *tx,
                    EnqueueRequest {
                        priority: Some(12),
                        ..request()
                    },
                )
                .await
                .unwrap_err();
            let committed = client.enqueue_in(&mut *tx, request()).await.unwrap();
            tx.commit().await.unwrap();
            pool.close().await;
            (rolled_back, refused, committed)
        }};
    }
    let (rolled_back, refused, committed) = if db.is_postgres() {
        run!(sqlx::PgPool)
    } else {
        run!(sqlx::SqlitePool)
    };
    assert!(db.store.job(rolled_back.id).await.unwrap().is_none());
    assert!(
        db.store
            .job_events(rolled_back.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        matches!(refused, EnqueueError::Invalid { ref field, .. } if field == "priority"),
        "{refused}"
    );
    let job = db
        .store
        .job(committed.id)
        .await
        .unwrap()
        .expect("committed");
    assert_eq!(job.args, json!({ "order": 7 }));
    let events = db.store.job_events(committed.id).await.unwrap();
    assert_eq!(events[0].event_type, longshore_jobs::event::JOB_ENQUEUED);
}

/// Enqueues held by another connection's lock on the jobs table past the store's deadline.
/// A job without keys is one statement on Postgres, sent before the lock holds it: the answer
/// is `Unconfirmed`, naming the job, as the statement may commit once the lock goes. A keyed job is a
/// transaction whose commit was never sent: `TimedOut`, and nothing is stored, so the same
/// key is free afterwards. SQLite cannot begin either while another connection writes, so
/// both time out with nothing stored.
async fn an_enqueue_held_past_its_deadline_says_whether_it_may_be_stored(db: TestDb) {
    use longshore_jobs::{Registry, Store, StoreConfig, StoreError, UniqueOptions, kinds};

    // A client of its own for each enqueue: a store that timed out once refuses the next
    // enqueue at once for a while (it takes the database for down), which is not the case
    // tried here.
    let client = || async {
        let store = Store::connect(&StoreConfig {
            url: db.url.clone(),
            migrate: false,
            timeout: Duration::from_secs(1),
            ..StoreConfig::default()
        })
        .await
        .unwrap();
        let mut registry = Registry::new();
        kinds::register_builtins(&mut registry);
        longshore_jobs::Client::new(store, std::sync::Arc::new(registry))
    };
    let (first, second) = (client().await, client().await);
    let keyed = || EnqueueRequest {
        unique: Some(UniqueOptions {
            key: "held".into(),
            scope: Default::default(),
            window: None,
        }),
        ..EnqueueRequest::new("noop", json!({ "keyed": true }))
    };

    let lock = Locker::hold(&db).await;
    let plain = first
        .enqueue(EnqueueRequest::new("noop", json!({ "plain": true })))
        .await
        .unwrap_err();
    let held = second.enqueue(keyed()).await.unwrap_err();
    lock.release().await;

    let plain_id = match (&plain, db.is_postgres()) {
        (EnqueueError::Store(StoreError::Unconfirmed { jobs }), true) if jobs.len() == 1 => {
            Some(jobs[0])
        }
        (EnqueueError::Store(StoreError::TimedOut { .. }), false) => None,
        other => panic!("the plain enqueue answered {other:?}"),
    };
    assert!(
        matches!(held, EnqueueError::Store(StoreError::TimedOut { .. })),
        "the keyed enqueue answered {held:?}"
    );
    // The key is free: the held transaction never committed (on Postgres this insert waits
    // for that transaction's end before it can tell).
    let again = crate::support::client(&db).enqueue(keyed()).await.unwrap();
    assert!(!again.duplicate, "the timed-out keyed job was stored");
    // Whether the unconfirmed statement committed is the database's to say (here it does
    // not: the store gave up its connection while the statement waited); at most once.
    if let Some(id) = plain_id {
        let filter = JobFilter {
            ids: vec![id],
            ..JobFilter::default()
        };
        assert!(db.store.count_jobs(&filter).await.unwrap() <= 1);
    }
}

/// Another connection holding the jobs table: Postgres `LOCK TABLE … IN EXCLUSIVE MODE`
/// (reads go on, writes wait), SQLite a write transaction (the file's one writer).
enum Locker {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
}

impl Locker {
    async fn hold(db: &TestDb) -> Locker {
        if db.is_postgres() {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE jobs IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
            Locker::Postgres(tx)
        } else {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .unwrap();
            Locker::Sqlite(conn)
        }
    }

    async fn release(self) {
        match self {
            Locker::Postgres(tx) => tx.rollback().await.unwrap(),
            Locker::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
            }
        }
    }
}
