//! SQLite: the embedded default, one file and no set-up.
//!
//! SQLite allows one writer at a time, so this store keeps one writing connection (and a pool
//! of readers) and opens every write transaction with `BEGIN IMMEDIATE`: claims never race,
//! and event ids are handed out in commit order. The file runs in WAL mode with
//! `synchronous = NORMAL`: a killed process loses nothing committed.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::error::{StoreError, query};
use crate::store::StoreConfig;

mod admin;
mod batch;
mod events;
mod jobs;
mod queues;
mod rows;
mod schedules;
mod sweeps;
mod workers;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    pub(crate) async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(&config.url)
            .map_err(StoreError::Connect)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(StoreError::Connect)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::Connect)?;
        let store = SqliteStore { writer, reader };
        if config.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(StoreError::Migrate)
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
            .map_err(query("ping"))
    }

    /// A write transaction that holds the write lock from its first statement.
    async fn write(&self, op: &'static str) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(query(op))
    }
}

/// Now, in the microseconds the SQLite schema stores.
fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn duration_us(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}
