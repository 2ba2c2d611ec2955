//! The store: the only code with Longshore's own schema, one seam over two backends.
//!
//! [`Store`] is the facade every other crate uses, a file per table (`jobs`, `job_moves`,
//! `queues`, `workers`, `events`, `schedules`, `sweeps`, `tokens`, `audit`, `idempotency`,
//! `operations`, `settings`), each method a dispatch to the backend it runs on. The SQL that
//! is the same on both backends is written once in `sql/` and compiled into each (see
//! `sql/mod.rs`); `pg/` and `sqlite/` hold only what truly differs, the hot path, under the
//! same file names: `jobs` (insert, claim, complete) and `leases` (renew, hand back, rescue),
//! plus each one's `dialect` (the spellings that differ, the read horizon of the event and
//! push logs among them). Around them: `inserter` (group commit with a deadline),
//! `health` (fail fast while the database is down), `wakeup` (who to wake), `codec` (times).

use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::id::JobId;
use crate::job::Enqueued;
use crate::state::JobState;
use crate::telemetry::JOB_ID;

mod activity;
mod audit;
pub(crate) mod codec;
mod events;
mod health;
mod idempotency;
pub(crate) mod inserter;
mod job_moves;
mod jobs;
mod operations;
mod pg;
mod pushes;
mod queues;
mod schedules;
mod settings;
mod sqlite;
mod sweeps;
mod tokens;
mod wakeup;
mod webhooks;
mod workers;

pub use events::{EventCount, Holdback};
pub use health::PROBE_INTERVAL;
pub use job_moves::{CancelOutcome, PruneLimits, Pruned};
pub(crate) use jobs::Accepted;
pub use jobs::{InTransaction, KeyedResponse, RenderResponse, Renewal, Rescued};
pub use queues::Outlook;
pub(crate) use queues::QueueTotals;
pub use wakeup::{Signal, Wakeups};
pub use workers::WorkerInfo;

/// How to reach the database.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://…` or `sqlite:…`. Defaults to `sqlite:longshore.db` in the working
    /// directory, created on first use.
    pub url: String,
    /// Connections kept to Postgres. Defaults to 16.
    pub max_connections: u32,
    /// Apply pending schema migrations when connecting. Defaults to true.
    pub migrate: bool,
    /// The longest an operation waits for a connection, and an enqueue for its commit; past
    /// it the caller is told, and an enqueue told so stored nothing (unless its commit was
    /// already sent: then it is reported unconfirmed). Defaults to 5 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite:longshore.db".to_owned(),
            max_connections: 16,
            migrate: true,
            timeout: Duration::from_secs(5),
        }
    }
}

impl StoreConfig {
    /// Checks the config, naming the bad field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.url.starts_with("postgres:")
            || self.url.starts_with("postgresql:")
            || self.url.starts_with("sqlite:"))
        {
            return Err((
                "database_url",
                "expected postgres://… or sqlite:…".to_owned(),
            ));
        }
        if self.max_connections < 2 {
            return Err(("max_connections", "must be at least 2".to_owned()));
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(600) {
            return Err(("timeout", "must be 100ms to 10min".to_owned()));
        }
        Ok(())
    }
}

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// PostgreSQL: many processes on many machines.
    Postgres,
    /// An embedded SQLite file.
    Sqlite,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Postgres(pg::PgStore),
    Sqlite(sqlite::SqliteStore),
}

impl Backend {
    async fn insert(&self, batch: inserter::Batch<'_>) -> Result<Vec<Enqueued>, StoreError> {
        match self {
            Backend::Postgres(s) => s.insert(batch).await,
            Backend::Sqlite(s) => s.insert(batch).await,
        }
    }
}

/// The durable job store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    wakeups: Wakeups,
    inserter: tokio::sync::mpsc::Sender<inserter::Request>,
    health: Arc<health::Health>,
    timeout: Duration,
}

/// Calls the same method on whichever backend this store runs, within the store's timeout;
/// refuses at once while the database is known to be unreachable, and learns from the
/// result whether it is.
macro_rules! on_backend {
    ($self:ident, $s:ident => $t:ident . $method:ident ( $($arg:expr),* $(,)? ) .await) => {{
        let started = std::time::Instant::now();
        let result = $crate::store::on_backend!(@run $self, $s => $t.$method($($arg),*).await);
        $crate::store::record_operation(stringify!($method), started);
        result
    }};
    ($self:ident, $s:ident => $call:expr) => {
        $crate::store::on_backend!(@run $self, $s => $call)
    };
    (@run $self:ident, $s:ident => $call:expr) => {{
        $self.health.check()?;
        let call = async {
            match &$self.backend {
                $crate::store::Backend::Postgres($s) => $call,
                $crate::store::Backend::Sqlite($s) => $call,
            }
        };
        let result = tokio::time::timeout($self.timeout, call)
            .await
            .unwrap_or(Err($crate::error::StoreError::NoAnswer));
        $self.health.record(&result);
        result
    }};
}
pub(crate) use on_backend;

/// Declares [`Store`] methods that only dispatch: each calls the backend's method of the
/// same name with the same arguments, through [`on_backend!`]. Like a driver interface, a
/// file lists the operations of its table, each with its documentation.
macro_rules! dispatch {
    ($(
        $(#[$doc:meta])*
        fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ok:ty;
    )*) => {
        impl $crate::store::Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ok, $crate::StoreError> {
                    $crate::store::on_backend!(self, s => s.$name($($arg),*).await)
                }
            )*
        }
    };
}
pub(crate) use dispatch;

dispatch! {
    /// Applies pending schema migrations.
    fn migrate(&self) -> ();
    /// Checks that the database answers.
    fn ping(&self) -> ();
}

impl Store {
    /// Connects, applies migrations when configured, and starts the wake-up relay.
    pub async fn connect(config: &StoreConfig) -> Result<Store, StoreError> {
        let wakeups = Wakeups::default();
        let backend = if config.url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::SqliteStore::connect(config).await?)
        } else if config.url.starts_with("postgres:") || config.url.starts_with("postgresql:") {
            Backend::Postgres(pg::PgStore::connect(config, &wakeups).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(config.url.clone()));
        };
        let health = Arc::new(health::Health::default());
        let inserter = inserter::start(backend.clone(), Arc::clone(&health));
        Ok(Store {
            backend,
            wakeups,
            inserter,
            health,
            timeout: config.timeout,
        })
    }

    /// Which database this store runs on.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Postgres(_) => BackendKind::Postgres,
            Backend::Sqlite(_) => BackendKind::Sqlite,
        }
    }

    /// The Postgres pool, when on Postgres (for enqueueing inside your own transaction).
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.backend {
            Backend::Postgres(s) => Some(s.pool()),
            Backend::Sqlite(_) => None,
        }
    }

    /// The wake-up hub of this process.
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// Whether enqueues, retries and resumes in other processes wake this one's workers
    /// (Postgres, by `NOTIFY`); on SQLite other processes' changes are found by polling.
    pub fn wakes_across_processes(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Wakes the workers of the queues that got a job to run now or later: a worker with
    /// nothing due sleeps until its queue's next `run_at`, which a new job may move closer.
    /// Other processes' too, unless the insert `told_others` itself.
    fn wake_for(&self, queues: &[String], enqueued: &[Enqueued], told_others: bool) {
        let mut last: Option<&str> = None;
        for (queue, result) in queues.iter().zip(enqueued) {
            let waits = matches!(result.state, JobState::Available | JobState::Scheduled);
            if result.duplicate || !waits {
                continue;
            }
            if last != Some(queue.as_str()) {
                if told_others {
                    self.wakeups.jobs_stored(queue);
                } else {
                    self.wakeups.job_available(queue);
                }
                last = Some(queue.as_str());
            }
        }
    }
}

/// A claimed job whose row cannot be read, with the reason.
pub(crate) type Unreadable = (JobId, String);

/// Reads claimed rows, setting aside those that cannot be read (a time out of range written
/// by hand, say) with the reason: the claim discards them instead of failing, so one bad row
/// never stops a queue. Fails only when not even a row's id can be read.
pub(crate) fn split_readable<R, T>(
    rows: &[R],
    read: impl Fn(&R) -> Result<T, StoreError>,
    id: impl Fn(&R) -> Result<JobId, StoreError>,
) -> Result<(Vec<T>, Vec<Unreadable>), StoreError> {
    let mut good = Vec::with_capacity(rows.len());
    let mut broken = Vec::new();
    for row in rows {
        match read(row) {
            Ok(item) => good.push(item),
            Err(error) => {
                let id = id(row)?;
                tracing::error!({ JOB_ID } = %id, %error, "discarding a job whose row cannot be read");
                broken.push((id, format!("the stored job cannot be read: {error}")));
            }
        }
    }
    Ok((good, broken))
}

/// Records how long a store operation took (the `longshore.store.operation.duration`
/// histogram; nothing when metrics are not exported).
pub(crate) fn record_operation(name: &'static str, started: std::time::Instant) {
    if !crate::telemetry::exporting() {
        return;
    }
    crate::telemetry::metrics::get().store.record(
        started.elapsed().as_secs_f64(),
        &[opentelemetry::KeyValue::new(
            crate::telemetry::metrics::DB_OPERATION,
            name,
        )],
    );
}

/// Milliseconds of a duration, as bound into SQL.
pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
