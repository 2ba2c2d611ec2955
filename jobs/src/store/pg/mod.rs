//! PostgreSQL: many worker and API processes on many machines share one database.
//!
//! Claims use `FOR UPDATE SKIP LOCKED`; batches travel as arrays through `unnest`, so a batch
//! of any size is one round trip. Wake-ups cross processes with `LISTEN`/`NOTIFY`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::DropGuard;

use self::sql::Run;
use crate::error::{StoreError, query};
use crate::store::{StoreConfig, Wakeups};

mod events;
pub mod jobs;
mod leases;
mod notify;
pub(crate) use jobs::insert_jobs;
pub(crate) use notify::IN_TRANSACTION;
// Compiled into each backend on purpose: the SQL written once, with this backend's dialect.
#[allow(clippy::duplicate_mod)]
#[path = "../sql/mod.rs"]
mod sql;

/// What the SQL written once (`store/sql/`) needs to know of Postgres.
pub(crate) mod dialect {
    use sqlx::QueryBuilder;

    use crate::admin::ArgsMatch;

    pub(crate) type Db = sqlx::Postgres;
    pub(crate) type Row = sqlx::postgres::PgRow;
    pub(crate) type Conn = sqlx::PgConnection;
    pub(crate) type Backend = super::PgStore;

    /// Locks the rows a read-then-write transaction reads.
    pub(crate) const FOR_UPDATE: &str = " FOR UPDATE";
    /// The database's clock: claims compare `run_at` with it, so moves that set `run_at`
    /// use it too, whatever the clock of the process that asks.
    pub(crate) const NOW: &str = "now()";
    pub(crate) const GREATEST: &str = "GREATEST";
    pub(crate) const LEAST: &str = "LEAST";
    /// Event ids and push positions carry their writing transaction's id in their high bits.
    /// Every transaction below the oldest one still running has finished, so everything
    /// below this is final: a read that stops there never skips a row that commits late.
    macro_rules! horizon {
        () => {
            "pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20"
        };
    }
    pub(crate) const EVENT_HORIZON: &str = horizon!();
    pub(crate) const BELOW_EVENT_HORIZON: &str = concat!(" AND id < (", horizon!(), ")");
    pub(crate) const PUSH_HORIZON: &str = EVENT_HORIZON;
    pub(crate) const BELOW_PUSH_HORIZON: &str = concat!(" AND position < (", horizon!(), ")");

    /// `AND` where a text contains another: `strpos(haystack, needle) > 0` (no pattern
    /// characters, so a `%` or `_` in the needle means itself).
    pub(crate) const CONTAINS_OPEN: &str = " AND strpos(";
    /// The minute an event was written, as minutes since the Unix epoch.
    pub(crate) const EVENT_MINUTE: &str = "CAST(floor(extract(epoch FROM at) / 60) AS bigint)";

    /// `AND` the job carries `tag`.
    pub(crate) fn push_has_tag(qb: &mut QueryBuilder<Db>, tag: &str) {
        qb.push(" AND tags @> jsonb_build_array(")
            .push_bind(tag.to_owned())
            .push("::text)");
    }

    /// `AND` the scalar at the args path, as text, equals the value.
    pub(crate) fn push_args_match(qb: &mut QueryBuilder<Db>, m: &ArgsMatch) {
        qb.push(" AND args #>> ")
            .push_bind(m.path.clone())
            .push("::text[] = ")
            .push_bind(m.value.clone());
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The Postgres store.
///
/// Two pools: `pool` for enqueues and everything an operator does, and `lease_pool` for the
/// workers' own traffic (claims, outcomes, heartbeats, rescues), whose transactions commit
/// with `synchronous_commit = off`. Those commits do not wait for the WAL flush: a crash of
/// the Postgres server may forget the last fraction of a second of claims and outcomes, and
/// the jobs they concern run again (delivery is at least once anyway). Enqueues always wait
/// for the flush: a stored job is never lost. The lease pool keeps its connections open: a
/// claim that has to open one first waits ~100 ms, which is a worker's whole latency budget.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    lease_pool: PgPool,
    /// What this store's `NOTIFY`s say they come from (see `notify.rs`).
    origin: Arc<str>,
    _relay: Arc<DropGuard>,
}

/// A connection error, saying how to create the database when it does not exist (SQLSTATE
/// 3D000), with the URL's host, port and user.
fn missing_database(options: &PgConnectOptions, error: sqlx::Error) -> StoreError {
    let missing =
        matches!(&error, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"));
    let Some(name) = options.get_database().filter(|_| missing) else {
        return StoreError::Connect(error);
    };
    let (host, port, user) = (
        options.get_host(),
        options.get_port(),
        options.get_username(),
    );
    StoreError::Missing {
        what: format!("database {name:?} does not exist on {host}:{port}"),
        fix: format!(
            "create it with `createdb -h {host} -p {port} -U {user} {name}`, or fix the URL"
        ),
    }
}

/// A connection that sat idle this long is checked before use.
const PING_IDLE: Duration = Duration::from_secs(1);

/// Pool options that check a connection before handing it out only when it sat idle over
/// [`PING_IDLE`] (the rule of pgxpool, the pool River uses). sqlx otherwise pings on every
/// acquire: a round trip before each enqueue, claim and completion. sqlx also pings each
/// connection as it comes back to the pool, after its user is answered, so one in steady use
/// was checked a moment ago; one that sat idle, across a server restart say, is checked
/// again, and one that fails is closed and another taken. A connection that broke since its
/// last use fails that use like any query cut short.
fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                // `false` closes the connection quietly (an error would log a warning for
                // each connection a restart ended).
                Ok(meta.idle_for < PING_IDLE || sqlx::Connection::ping(conn).await.is_ok())
            })
        })
}

/// Opens a pool. sqlx retries a refusal it deems passing ("too many clients already", "the
/// database system is starting up") until its timeout, then says only that the pool timed
/// out; one direct attempt then asks the server why, and that is the error.
async fn open(
    pool: PgPoolOptions,
    options: PgConnectOptions,
    timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    use sqlx::Connection as _;
    let error = match pool
        .acquire_timeout(timeout)
        .connect_with(options.clone())
        .await
    {
        Err(sqlx::Error::PoolTimedOut) => sqlx::Error::PoolTimedOut,
        done => return done,
    };
    match tokio::time::timeout(timeout, sqlx::PgConnection::connect_with(&options)).await {
        Ok(Err(refused)) => Err(refused),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Err(error)
        }
        Err(_) => Err(error),
    }
}

impl PgStore {
    pub(crate) async fn connect(
        config: &StoreConfig,
        wakeups: &Wakeups,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(&config.url).map_err(StoreError::Connect)?;
        let pool = pool_options().max_connections(config.max_connections);
        let pool = open(pool, options.clone(), config.timeout)
            .await
            .map_err(|error| missing_database(&options, error))?;
        let lease_connections = (config.max_connections / 2).max(2);
        let lease_pool = pool_options()
            .max_connections(lease_connections)
            .min_connections(lease_connections);
        let lease_options = options.options([("synchronous_commit", "off")]);
        let lease_pool = open(lease_pool, lease_options, config.timeout)
            .await
            .map_err(StoreError::Connect)?;
        let origin = notify::new_origin();
        let store = PgStore {
            _relay: Arc::new(
                notify::start_relay(&pool, &lease_pool, wakeups, &origin)
                    .await?
                    .drop_guard(),
            ),
            pool,
            lease_pool,
            origin: origin.into(),
        };
        if config.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(StoreError::Migrate)
    }

    /// Reads go to the main pool.
    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// Single-statement writes go to the main pool (their commits wait for the WAL).
    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// The process's own bookkeeping (heartbeats, token use) goes to the lease pool.
    pub(crate) fn background(&self) -> &PgPool {
        &self.lease_pool
    }

    /// A write transaction.
    pub(crate) async fn write(
        &self,
        op: &'static str,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(query(op))
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .run(&self.pool, "ping")
            .await
            .map(|_| ())
    }
}

/// One field of every row of a batch, to bind as an array.
fn column<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}
