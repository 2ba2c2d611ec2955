//! Processes started at once on a new database: every one comes up on the same schema.

use longshore_jobs::{Store, StoreConfig};
use longshore_testkit::{Backend, TempDir};

crate::per_backend!(crate::startup::fresh => eight_stores_opening_a_new_database_at_once_all_come_up);

/// A process opening an SQLite file that another is busy writing comes up at once: a
/// migrated file is recognised without the write lock, which a busy writer may not leave
/// free within the busy timeout (10 s; a bench's store once failed to open beside a
/// draining `serve`).
#[tokio::test]
async fn a_store_opens_a_migrated_sqlite_file_while_another_holds_its_write_lock() {
    use sqlx::Connection as _;
    let (url, _dir) = longshore_testkit::sqlite_url();
    let config = StoreConfig {
        url: url.clone(),
        ..StoreConfig::default()
    };
    drop(Store::connect(&config).await.unwrap());
    // Another process's write transaction, held open.
    let mut writer = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut writer)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let opened = tokio::time::timeout(std::time::Duration::from_secs(5), Store::connect(&config))
        .await
        .expect("the store opens without waiting for the write lock");
    let store = opened.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // It reads while the lock is held, and writes once it is free.
    assert_eq!(store.count_by_state(None).await.unwrap().len(), 0);
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    store.pause_queue("mail").await.unwrap();
}

/// A database nobody has migrated yet: its URL, and the temp dir of an SQLite file.
async fn fresh(backend: Backend) -> Option<(String, Option<TempDir>)> {
    match backend {
        Backend::Sqlite => {
            let (url, dir) = longshore_testkit::sqlite_url();
            Some((url, Some(dir)))
        }
        Backend::Postgres => Some((longshore_testkit::postgres_url().await?, None)),
    }
}

async fn eight_stores_opening_a_new_database_at_once_all_come_up(
    (url, _dir): (String, Option<TempDir>),
) {
    // As `serve` and `worker` started together by a supervisor: each migrates on open.
    let opening: Vec<_> = (0..8)
        .map(|_| {
            let config = StoreConfig {
                url: url.clone(),
                migrate: true,
                // Few connections each: eight stores of the default size (about a dozen
                // connections on Postgres) beside the rest of the suite would exhaust the
                // server's `max_connections`, which is not what this tries.
                max_connections: 2,
                ..StoreConfig::default()
            };
            tokio::spawn(async move { Store::connect(&config).await })
        })
        .collect();
    let mut stores = Vec::new();
    for (i, opened) in opening.into_iter().enumerate() {
        match opened.await.unwrap() {
            Ok(store) => stores.push(store),
            Err(error) => panic!("store {i} did not come up: {error:#}"),
        }
    }
    // One schema, applied once: a job enqueued through one store is seen by every other.
    let mut registry = longshore_jobs::Registry::new();
    longshore_jobs::kinds::register_builtins(&mut registry);
    let client = longshore_jobs::Client::new(stores[0].clone(), std::sync::Arc::new(registry));
    let id = longshore_testkit::enqueue(&client, "noop", serde_json::json!({})).await;
    for store in &stores {
        assert_eq!(store.job(id).await.unwrap().unwrap().id, id);
    }
}
