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

use self::sql::Run;
use crate::error::{StoreError, query};
use crate::store::StoreConfig;

mod jobs;
pub(crate) use jobs::insert_jobs;
mod leases;
// Compiled into each backend on purpose: the SQL written once, with this backend's dialect.
#[allow(clippy::duplicate_mod)]
#[path = "../sql/mod.rs"]
mod sql;

/// What the SQL written once (`store/sql/`) needs to know of SQLite.
pub(crate) mod dialect {
    use sqlx::QueryBuilder;

    use crate::admin::ArgsMatch;

    pub(crate) type Db = sqlx::Sqlite;
    pub(crate) type Row = sqlx::sqlite::SqliteRow;
    pub(crate) type Conn = sqlx::SqliteConnection;
    pub(crate) type Backend = super::SqliteStore;

    /// Nothing to lock row by row: a write transaction holds the file from its start.
    pub(crate) const FOR_UPDATE: &str = "";
    /// Now, in the microseconds times are stored in.
    pub(crate) const NOW: &str = "CAST(unixepoch('subsec') * 1000000 AS INTEGER)";
    pub(crate) const GREATEST: &str = "max";
    pub(crate) const LEAST: &str = "min";
    /// Every stored event is final: the one writer hands ids out in commit order.
    pub(crate) const BELOW_EVENT_HORIZON: &str = "";
    /// Above the newest event.
    pub(crate) const EVENT_HORIZON: &str = "coalesce((SELECT max(id) FROM events), 0) + 1";
    /// Every stored push is final: the one writer hands positions out in commit order.
    pub(crate) const BELOW_PUSH_HORIZON: &str = "";
    /// Above every position handed out, pruned or not.
    pub(crate) const PUSH_HORIZON: &str =
        "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'pushes'), 0) + 1";

    /// `AND` where a text contains another: `instr(haystack, needle) > 0` (no pattern
    /// characters, so a `%` or `_` in the needle means itself).
    pub(crate) const CONTAINS_OPEN: &str = " AND instr(";
    /// The minute an event was written, as minutes since the Unix epoch.
    pub(crate) const EVENT_MINUTE: &str = "(at / 60000000)";

    /// `AND` the job carries `tag`.
    pub(crate) fn push_has_tag(qb: &mut QueryBuilder<Db>, tag: &str) {
        qb.push(" AND EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE value = ")
            .push_bind(tag.to_owned())
            .push(")");
    }

    /// `AND` the scalar at the args path, as text, equals the value: spelled as Postgres's
    /// `#>>` spells it (booleans as `true`/`false`, numbers as written).
    pub(crate) fn push_args_match(qb: &mut QueryBuilder<Db>, m: &ArgsMatch) {
        let path = m.json_path();
        qb.push(" AND (CASE json_type(args, ")
            .push_bind(path.clone())
            .push(") WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ")
            .push("ELSE CAST(json_extract(args, ")
            .push_bind(path)
            .push(") AS TEXT) END) = ")
            .push_bind(m.value.clone());
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

/// A connection error, saying to create the directory when the file's is missing (SQLite
/// creates the file, not its directory).
fn missing_directory(options: &SqliteConnectOptions, error: sqlx::Error) -> StoreError {
    let file = options.get_filename();
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    match dir.filter(|d| !d.exists()) {
        Some(dir) => StoreError::Missing {
            what: format!(
                "the directory {} of the SQLite file {} does not exist",
                dir.display(),
                file.display()
            ),
            fix: format!(
                "create it (`mkdir -p {}`) or give a file in a directory that exists",
                dir.display()
            ),
        },
        None => StoreError::Connect(error),
    }
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
        // A file does not hang up: no ping (a hop to the connection's thread) before each use.
        let writer = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|error| missing_directory(&options, error))?;
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
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

    /// Applies the migrations inside one write transaction. sqlx's migrator takes no lock on
    /// SQLite (on Postgres it holds an advisory lock): two processes opening a new file at
    /// once would both read "nothing applied" and the second would fail on "table jobs
    /// already exists". Holding the write lock from the first read serialises them; the
    /// migrator's own transactions become savepoints inside this one.
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        if self.migrated().await {
            return Ok(());
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(query("migrate"))?;
        // `run_direct` is `run` on a connection (sqlx's way around `Acquire`'s lifetime).
        MIGRATOR
            .run_direct(None, &mut *tx, false)
            .await
            .map_err(StoreError::Migrate)?;
        tx.commit().await.map_err(query("migrate"))
    }

    /// Whether the file holds exactly this build's migrations, each applied whole, read
    /// without the write lock. A process opening a file that another is busy writing then
    /// starts at once: taking the lock to find nothing to do would wait for a gap in the other
    /// process's writes, which a busy one may not leave within the busy timeout. Anything
    /// else (a new file, a migration to apply, one of another build) takes the locked path,
    /// which applies or reports it.
    async fn migrated(&self) -> bool {
        let applied = sqlx::query_as::<Sqlite, (i64, Vec<u8>, bool)>(
            "SELECT version, checksum, success FROM _sqlx_migrations",
        )
        .fetch_all(&self.reader)
        .await;
        let Ok(applied) = applied else {
            return false;
        };
        let known: Vec<_> = MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .collect();
        applied.len() == known.len()
            && known.iter().all(|m| {
                applied.iter().any(|(version, checksum, success)| {
                    *success && *version == m.version && checksum[..] == m.checksum[..]
                })
            })
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .run(&self.reader, "ping")
            .await
            .map(|_| ())
    }

    /// Nothing holds the event stream back: the one writer hands ids out in commit order.
    pub(crate) async fn event_holdback(
        &self,
    ) -> Result<Option<crate::store::Holdback>, StoreError> {
        Ok(None)
    }

    /// Reads go to the pool of read-only connections.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Writes go to the one writing connection.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The process's own bookkeeping too: there is one writer.
    pub(crate) fn background(&self) -> &SqlitePool {
        &self.writer
    }

    /// A write transaction that holds the write lock from its first statement.
    pub(crate) async fn write(
        &self,
        op: &'static str,
    ) -> Result<Transaction<'static, Sqlite>, StoreError> {
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
