//! # longshore-testkit
//!
//! What every test suite needs: a fresh database per test (an SQLite file in a temp dir, or
//! a Postgres schema of its own) and waiting for an effect with a deadline instead of
//! sleeping.
//!
//! Postgres tests use `LONGSHORE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/longshore_test`; the database is created when
//! missing). When it is unreachable, [`postgres_url`] returns `None` so the test can skip,
//! except under `CI=true`, where it panics: in CI a missing service fails the test.

use std::future::Future;

use std::time::{Duration, Instant};
pub use tempfile::TempDir;

/// The Postgres server tests use.
pub fn pg_base_url() -> String {
    std::env::var("LONGSHORE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/longshore_test".to_owned())
}

/// A fresh SQLite database: its URL and the temp dir that holds the file.
pub fn sqlite_url() -> (String, tempfile::TempDir) {
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
