//! # longshore-testkit
//!
//! What every test suite needs: a fresh database per test (an SQLite file in a temp dir, or
//! a Postgres schema of its own), one harness that runs a test once per backend, and
//! waiting for an effect with a deadline instead of sleeping.
//!
//! Postgres tests use `LONGSHORE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/longshore_test`; the database is created when
//! missing). When it is unreachable, a Postgres test is skipped, except under `CI=true`,
//! where it panics: in CI a missing service fails the test.
//!
//! ```ignore
//! longshore_testkit::per_backend!(longshore_testkit::TestDb::new => stores_a_job);
//!
//! async fn stores_a_job(db: longshore_testkit::TestDb) { /* … */ }
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use longshore_jobs::{Client, EnqueueRequest, JobId, Store, StoreConfig};
pub use tempfile::TempDir;

mod redis;
pub use redis::{PrivateRedis, free_port, redis_connection, redis_url};

/// Runs each named test once per backend: `per_backend!(setup => name, …)` makes
/// `name::sqlite` and `name::postgres`, each calling `name(setup(backend).await)`; `setup`
/// returns `None` to skip (Postgres unreachable outside CI).
#[macro_export]
macro_rules! per_backend {
    ($setup:path => $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(it) = $setup($crate::Backend::Sqlite).await {
                    super::$name(it).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(it) = $setup($crate::Backend::Postgres).await {
                    super::$name(it).await;
                }
            }
        }
    )*};
}

/// The backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file in a temp dir.
    Sqlite,
    /// A schema of its own on the test Postgres server.
    Postgres,
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    /// The store over it.
    pub store: Store,
    /// Its URL.
    pub url: String,
    /// Which backend.
    pub backend: Backend,
    _dir: Option<TempDir>,
}

impl TestDb {
    /// A fresh database, or `None` when Postgres is unreachable outside CI.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let (url, dir) = sqlite_url();
                (url, Some(dir))
            }
            Backend::Postgres => (postgres_url().await?, None),
        };
        Some(TestDb {
            store: connect(&url, true).await,
            url,
            backend,
            _dir: dir,
        })
    }

    /// Another store on the same database, as another process would have.
    pub async fn second_store(&self) -> Store {
        connect(&self.url, false).await
    }

    /// Whether it runs on Postgres.
    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Runs raw SQL on it: `pg` on Postgres, `sqlite` on SQLite (whose times are
    /// microseconds since the epoch), binding `binds` as text in order.
    pub async fn execute(&self, pg: &str, sqlite: &str, binds: &[&str]) -> u64 {
        let sql = if self.is_postgres() { pg } else { sqlite };
        execute(&self.url, sql, binds).await
    }
}

async fn connect(url: &str, migrate: bool) -> Store {
    Store::connect(&StoreConfig {
        url: url.to_owned(),
        migrate,
        ..StoreConfig::default()
    })
    .await
    .expect("the test store connects")
}

/// The Postgres server tests use.
pub fn pg_base_url() -> String {
    std::env::var("LONGSHORE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/longshore_test".to_owned())
}

/// A fresh SQLite database: its URL and the temp dir that holds the file.
pub fn sqlite_url() -> (String, TempDir) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite:{}", dir.path().join("longshore.db").display());
    (url, dir)
}

/// The URL of a fresh, empty Postgres schema, or `None` when Postgres is unreachable
/// outside CI.
pub async fn postgres_url() -> Option<String> {
    fresh_schema(&pg_base_url()).await
}

/// The URL of a fresh schema in a database of its own (`<test database>_targets`), for
/// tests whose subject works on another application's database.
pub async fn postgres_target_url() -> Option<String> {
    let base = pg_base_url();
    let (server, name) = base.rsplit_once('/')?;
    let (name, query) = name.split_once('?').unwrap_or((name, ""));
    let sep = if query.is_empty() { "" } else { "?" };
    fresh_schema(&format!("{server}/{name}_targets{sep}{query}")).await
}

/// A new schema in the database at `url` (created when missing), as a URL that uses it.
async fn fresh_schema(url: &str) -> Option<String> {
    let admin = match connect_creating(url).await {
        Ok(pool) => pool,
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: Postgres at {url} is not reachable: {error}");
            return None;
        }
        Err(error) => panic!("Postgres at {url} is not reachable, and CI=true: {error}"),
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create the test schema");
    admin.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

/// Connects, creating the database first when it does not exist.
async fn connect_creating(url: &str) -> Result<sqlx::PgPool, sqlx::Error> {
    match sqlx::PgPool::connect(url).await {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let (server, name) = url.rsplit_once('/').expect("a database name in the URL");
            let name = name.split('?').next().unwrap_or(name);
            let admin = sqlx::PgPool::connect(&format!("{server}/postgres")).await?;
            let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&admin)
                .await;
            // Another test may have created it meanwhile.
            if let Err(sqlx::Error::Database(e)) = &created
                && e.code().as_deref() != Some("42P04")
            {
                created?;
            }
            sqlx::PgPool::connect(url).await
        }
        other => other,
    }
}

/// Runs raw SQL on the database at `url` (Postgres or SQLite, by its scheme), binding `binds`
/// as text in order: for tests that play what another process, an old version or a failing
/// server would leave in a row. Returns the rows affected.
pub async fn execute(url: &str, sql: &str, binds: &[&str]) -> u64 {
    macro_rules! run {
        ($pool:ty) => {{
            let pool = <$pool>::connect(url).await.expect("connect for raw SQL");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
            for bind in binds {
                query = query.bind(bind.to_string());
            }
            let done = query.execute(&pool).await.expect("raw SQL runs");
            pool.close().await;
            done.rows_affected()
        }};
    }
    if url.starts_with("sqlite:") {
        run!(sqlx::SqlitePool)
    } else {
        run!(sqlx::PgPool)
    }
}

/// Polls `check` every 10 ms until it returns `Some`, panicking after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Enqueues one job of `kind` with `args`, every other field from the kind's defaults.
pub async fn enqueue(client: &Client, kind: &str, args: serde_json::Value) -> JobId {
    client
        .enqueue(EnqueueRequest::new(kind, args))
        .await
        .expect("enqueue")
        .id
}
