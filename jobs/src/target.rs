//! Target databases: the databases sweeps and their child kinds work on, never Longshore's
//! own. They are declared in the config file only (`[targets.<name>]`), so nothing sent to
//! the API can point Longshore at another database or host.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{Executor, PgPool, SqlitePool};

/// A named database, as declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDef {
    /// `postgres://…` or `sqlite:…`.
    pub url: String,
}

impl TargetDef {
    /// Checks the URL's scheme.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let known = ["postgres://", "postgresql://", "sqlite:"];
        if known.iter().any(|scheme| self.url.starts_with(scheme)) {
            Ok(())
        } else {
            Err((
                "url".to_owned(),
                "must start with postgres://, postgresql:// or sqlite:".to_owned(),
            ))
        }
    }
}

/// A connected target.
#[derive(Clone, Debug)]
pub enum Target {
    /// A Postgres database.
    Postgres(PgPool),
    /// A SQLite file.
    Sqlite(SqlitePool),
}

/// Why a target cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// No target of that name is declared.
    #[error("no target {0:?} is declared")]
    Unknown(String),
    /// The database did not answer.
    #[error("target {name} is unreachable: {}", crate::error::describe(.error))]
    Unreachable {
        /// The target's name.
        name: String,
        /// What connecting said.
        error: sqlx::Error,
    },
}

/// The declared targets, connected on first use (a small pool each: a sweep pass runs one
/// query at a time).
#[derive(Debug, Default)]
pub struct Targets {
    defs: BTreeMap<String, TargetDef>,
    pools: Mutex<HashMap<String, Target>>,
}

impl Targets {
    /// The targets of `defs`, not yet connected.
    pub fn new(defs: BTreeMap<String, TargetDef>) -> Targets {
        Targets {
            defs,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The declared targets by name.
    pub fn defs(&self) -> &BTreeMap<String, TargetDef> {
        &self.defs
    }

    /// The target `name`, connecting it the first time.
    pub async fn get(&self, name: &str) -> Result<Target, TargetError> {
        if let Some(target) = self
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(target.clone());
        }
        let def = self
            .defs
            .get(name)
            .ok_or_else(|| TargetError::Unknown(name.to_owned()))?;
        let unreachable = |error| TargetError::Unreachable {
            name: name.to_owned(),
            error,
        };
        let target = if def.url.starts_with("sqlite:") {
            Target::Sqlite(pool().connect(&def.url).await.map_err(unreachable)?)
        } else {
            Target::Postgres(pool().connect(&def.url).await.map_err(unreachable)?)
        };
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), target.clone());
        Ok(target)
    }
}

fn pool<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
}

/// `sql` bound to text `params` as `query`, on the target's `pool`, for `body` (one body
/// for both backends, whose query types differ).
macro_rules! with_text_params {
    ($target:expr, $sql:expr, $params:expr, |$query:ident, $pool:ident| $body:expr) => {{
        let sql = sqlx::AssertSqlSafe($sql.to_owned());
        match $target {
            Target::Postgres($pool) => {
                let mut $query = sqlx::query(sql);
                for param in $params {
                    $query = $query.bind(*param);
                }
                $body
            }
            Target::Sqlite($pool) => {
                let mut $query = sqlx::query(sql);
                for param in $params {
                    $query = $query.bind(*param);
                }
                $body
            }
        }
    }};
}

impl Target {
    /// Prepares `sql` without running it: the database checks its syntax, the tables and
    /// columns it names, and (on Postgres) its use of parameters of `types` (type names as
    /// `pg_type` spells them, e.g. `timestamptz`, `_text`). SQLite's parameters are untyped.
    pub async fn prepare(&self, sql: &str, types: &[&'static str]) -> Result<(), sqlx::Error> {
        use sqlx::SqlSafeStr;
        let sql = sqlx::AssertSqlSafe(sql.to_owned()).into_sql_str();
        match self {
            Target::Postgres(pool) => {
                let types: Vec<sqlx::postgres::PgTypeInfo> = types
                    .iter()
                    .map(|t| sqlx::postgres::PgTypeInfo::with_name(t))
                    .collect();
                pool.prepare_with(sql, &types).await.map(drop)
            }
            Target::Sqlite(pool) => pool.prepare(sql).await.map(drop),
        }
    }

    /// Whether `sql` with text parameters returns a row.
    pub async fn exists(&self, sql: &str, params: &[&str]) -> Result<bool, sqlx::Error> {
        Ok(with_text_params!(self, sql, params, |query, pool| {
            query.fetch_optional(pool).await?.is_some()
        }))
    }

    /// Runs `sql` with text parameters; returns the rows it changed.
    pub async fn execute(&self, sql: &str, params: &[&str]) -> Result<u64, sqlx::Error> {
        Ok(with_text_params!(self, sql, params, |query, pool| {
            query.execute(pool).await?.rows_affected()
        }))
    }
}
