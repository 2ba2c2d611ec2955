//! The SQL a pass runs on its target database: a page of candidates after a key, and a
//! page's statement; each bounded by the time the pass has left, its errors sorted into those
//! worth a retry and those that will not heal.

use std::time::Duration;

use longshore_jobs::sweep::SweepDef;
use longshore_jobs::target::Target;
use longshore_jobs::{EnqueueRequest, JobError, JobId, UniqueOptions, UniqueScope};
use sqlx::Row;

/// A candidate: its key, and the args of its child job when the query gives them.
pub(super) struct Candidate {
    pub key: String,
    pub args: Option<serde_json::Value>,
}

/// One page of candidates. On Postgres the query runs with a `statement_timeout` of
/// `timeout`, so the server gives up too (and releases its locks) when the pass does.
pub(super) async fn page(
    target: &Target,
    query: &str,
    cutoff: chrono::DateTime<chrono::Utc>,
    after: Option<&str>,
    limit: u64,
    timeout: Duration,
) -> Result<Vec<Candidate>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(query.to_owned());
    let limit = limit as i64;
    match target {
        Target::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            statement_timeout(&mut tx, timeout).await?;
            let rows = sqlx::query(sql)
                .bind(cutoff)
                .bind(after)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows.iter()
                .map(|r| {
                    Ok(Candidate {
                        key: r.try_get("key")?,
                        args: r
                            .try_get::<Option<sqlx::types::Json<serde_json::Value>>, _>("args")
                            .ok()
                            .flatten()
                            .map(|a| a.0),
                    })
                })
                .collect()
        }
        Target::Sqlite(pool) => sqlx::query(sql)
            .bind(cutoff.to_rfc3339())
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Candidate {
                    key: r.try_get("key")?,
                    args: r
                        .try_get::<Option<String>, _>("args")
                        .ok()
                        .flatten()
                        .and_then(|a| serde_json::from_str(&a).ok()),
                })
            })
            .collect(),
    }
}

/// Runs the page's statement (on Postgres under a `statement_timeout` of `timeout`);
/// returns the rows it changed.
pub(super) async fn act_on_page(
    target: &Target,
    sql: &str,
    keys: &[String],
    timeout: Duration,
) -> Result<u64, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    Ok(match target {
        Target::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            statement_timeout(&mut tx, timeout).await?;
            let changed = sqlx::query(sql)
                .bind(keys)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            changed
        }
        Target::Sqlite(pool) => {
            let keys = serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned());
            sqlx::query(sql)
                .bind(keys)
                .execute(pool)
                .await?
                .rows_affected()
        }
    })
}

async fn statement_timeout(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(timeout.as_millis().max(1).to_string())
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// The child job of one fan-out candidate: unique per (sweep, key) while it waits or runs,
/// so passes that overlap never act twice on one item.
pub(super) fn child(
    def: &SweepDef,
    kind: &str,
    queue: Option<&str>,
    pass: JobId,
    candidate: Candidate,
) -> EnqueueRequest {
    let key = candidate.key;
    EnqueueRequest {
        kind: kind.to_owned(),
        args: Some(
            candidate
                .args
                .unwrap_or_else(|| serde_json::json!({ "key": key })),
        ),
        queue: queue.map(str::to_owned),
        unique: Some(UniqueOptions {
            key: format!("sweep:{}:{key}", def.name),
            scope: UniqueScope::Active,
            window: None,
        }),
        tags: vec![format!("sweep:{}", def.name)],
        metadata: Some(serde_json::json!({ "sweep": def.name, "pass": pass, "key": key })),
        ..EnqueueRequest::default()
    }
}

/// Runs one query of a pass within the time the pass has left. Past it the query is
/// abandoned (on Postgres the server cancels it too, by its `statement_timeout`) and the
/// attempt fails, so a pass never hangs on a lock wait or a runaway plan.
pub(super) async fn bounded<T>(
    def: &SweepDef,
    what: &str,
    time_left: Duration,
    query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, JobError> {
    let overran = || {
        JobError::retry(format!(
            "sweep {}: {what} ran longer than max_time ({}s); abandoned",
            def.name,
            def.max_time.as_secs_f64()
        ))
    };
    // A moment of grace, so the server's own timeout usually answers first.
    match tokio::time::timeout(time_left + Duration::from_millis(500), query).await {
        Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("57014") => Err(overran()),
        Ok(result) => result.map_err(|e| query_error(def, what, e)),
        Err(_) => Err(overran()),
    }
}

/// A failed query. One the database refuses as written (syntax, unknown table or column,
/// bad data, unsupported) will not heal by retrying, so the pass is discarded with the
/// error; deadlocks, serialization failures, lock timeouts, lost connections and the like
/// may, so the attempt is retried.
fn query_error(def: &SweepDef, what: &str, error: sqlx::Error) -> JobError {
    let message = format!(
        "sweep {}: {what} failed: {}",
        def.name,
        longshore_jobs::error::describe(&error)
    );
    let permanent = match &error {
        sqlx::Error::Database(e) => e.code().is_none_or(|code| {
            // Postgres SQLSTATE classes 42, 22 and 0A; SQLite's generic error (1).
            let code = code.as_ref();
            code.starts_with("42")
                || code.starts_with("22")
                || code.starts_with("0A")
                || code == "1"
        }),
        sqlx::Error::ColumnNotFound(_) | sqlx::Error::ColumnDecode { .. } => true,
        _ => false,
    };
    if permanent {
        JobError::fatal(message)
    } else {
        JobError::retry(message)
    }
}
