//! `sweep`: one pass of a declared sweep (see [`crate::sweep`]). `{"sweep": "guests"}` acts;
//! `{"sweep": "guests", "dry_run": true}` only counts what a pass would touch.

use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::admin::{ArgsMatch, JobFilter};
use crate::client::{Client, EnqueueRequest};
use crate::event;
use crate::id::JobId;
use crate::job::{UniqueOptions, UniqueScope};
use crate::kind::{JobContext, JobError, JobResult, Kind, KindOptions};
use crate::registry::Registry;
use crate::state::JobState;
use crate::store::Store;
use crate::sweep::{SweepAction, SweepDef, SweepProgress};
use crate::target::{Target, TargetError, Targets};

/// Runs sweep passes. Definitions are read from the store at the start of each pass, so a
/// sweep changed through the API applies from its next pass.
pub struct Sweep {
    targets: Arc<Targets>,
    store: Store,
    /// The registry this kind is in, for enqueueing fan-out children (weak: the registry
    /// owns this kind).
    registry: Arc<OnceLock<Weak<Registry>>>,
}

/// `{"sweep": "guests", "dry_run": false}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepArgs {
    /// The sweep's name.
    pub sweep: String,
    /// Count only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl Sweep {
    /// The kind for the sweeps stored in `store`, on `targets`.
    pub fn new(targets: Arc<Targets>, store: Store) -> Sweep {
        Sweep {
            targets,
            store,
            registry: Arc::new(OnceLock::new()),
        }
    }

    /// Where the registry goes once built: fan-out sweeps enqueue their children through it.
    /// `let slot = sweep.registry_slot(); registry.register(sweep); … slot.set(Arc::downgrade(&registry))`.
    pub fn registry_slot(&self) -> Arc<OnceLock<Weak<Registry>>> {
        Arc::clone(&self.registry)
    }

    fn client(&self) -> Result<Client, JobError> {
        let registry = self
            .registry
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| JobError::retry("the sweep kind is not wired to its registry"))?;
        Ok(Client::new(self.store.clone(), registry))
    }

    /// Puts the pass's counts on the event stream (best effort: the job's progress and
    /// result hold them durably).
    async fn report(&self, what: &str, job: &JobContext, def: &SweepDef, progress: &SweepProgress) {
        let mut data = serde_json::to_value(progress).unwrap_or_default();
        data["sweep"] = serde_json::json!(def.name);
        let written = self
            .store
            .write_event(what, Some(&job.queue), Some(job.id), data)
            .await;
        if let Err(error) = written {
            tracing::warn!(sweep = %def.name, %error, "cannot write the sweep's event");
        }
    }

    /// The older pass of this sweep that is running now, if any: two passes at once would
    /// race over the same keys, so the younger one waits (dry runs change nothing and never
    /// wait, nor are waited for).
    async fn older_pass_running(&self, sweep: &str, me: JobId) -> Result<Option<JobId>, JobError> {
        let running = JobFilter {
            kind: Some(Self::NAME.to_owned()),
            states: vec![JobState::Running],
            args: vec![ArgsMatch {
                path: vec!["sweep".to_owned()],
                value: sweep.to_owned(),
            }],
            ..JobFilter::default()
        };
        let passes = self
            .store
            .list_jobs(&running, None, 20)
            .await
            .map_err(JobError::retry)?;
        Ok(passes
            .iter()
            .find(|j| j.id < me && j.args["dry_run"] != true)
            .map(|j| j.id))
    }

    async fn target(&self, name: &str) -> Result<Target, JobError> {
        self.targets.get(name).await.map_err(|e| match e {
            TargetError::Unknown(_) => JobError::fatal(e),
            TargetError::Unreachable { .. } => JobError::retry(e),
        })
    }
}

/// A candidate: its key, and the args of its child job when the query gives them.
struct Candidate {
    key: String,
    args: Option<serde_json::Value>,
}

/// One page of candidates. On Postgres the query runs with a `statement_timeout` of
/// `timeout`, so the server gives up too (and releases its locks) when the pass does.
async fn page(
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
async fn act_on_page(
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

impl Kind for Sweep {
    const NAME: &'static str = "sweep";
    type Args = SweepArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            max_attempts: 5,
            ..KindOptions::default()
        }
    }

    async fn run(&self, job: JobContext, args: SweepArgs) -> JobResult {
        let stored = self
            .store
            .sweep(&args.sweep)
            .await
            .map_err(JobError::retry)?
            .ok_or_else(|| JobError::fatal(format!("no sweep {:?} is declared", args.sweep)))?;
        let def = stored.def;
        if !args.dry_run
            && let Some(other) = self.older_pass_running(&def.name, job.id).await?
        {
            tracing::info!(sweep = %def.name, %other, "another pass is running; waiting for it");
            return Err(JobError::snooze(Duration::from_secs(10)));
        }
        let target = self.target(&def.target).await?;
        // Resume from the checkpoint of an earlier attempt of this pass; a new pass starts
        // where a pass stopped by its budget left off.
        let checkpoint: Option<SweepProgress> = self
            .store
            .job_progress(job.id)
            .await
            .map_err(|e| JobError::retry(e.to_string()))?
            .and_then(|p| serde_json::from_value(p).ok());
        let mut progress = match checkpoint {
            Some(progress) => progress,
            None if args.dry_run => SweepProgress::default(),
            None => SweepProgress {
                last_key: stored.resume_after.clone(),
                resumed_from: stored.resume_after,
                ..SweepProgress::default()
            },
        };
        progress.dry_run = args.dry_run;
        let cutoff = chrono::Duration::from_std(def.retention)
            .ok()
            .and_then(|retention| chrono::Utc::now().checked_sub_signed(retention))
            .ok_or_else(|| {
                JobError::fatal(format!("sweep {}: the retention is too long", def.name))
            })?;
        let started = Instant::now();
        loop {
            if job.cancel.is_cancelled() {
                return Err(JobError::retry(
                    "stopped; the next attempt resumes from the checkpoint",
                ));
            }
            let time_left = def.max_time.saturating_sub(started.elapsed());
            if time_left.is_zero() {
                progress.stopped_by = Some("max_time".to_owned());
                break;
            }
            let rows_left = def
                .max_rows
                .map_or(u64::MAX, |max| max.saturating_sub(progress.matched));
            if rows_left == 0 {
                progress.stopped_by = Some("max_rows".to_owned());
                break;
            }
            let limit = u64::from(def.batch).min(rows_left);
            let after = progress.last_key.as_deref();
            let candidates = bounded(
                &def,
                "candidate query",
                time_left,
                page(&target, &def.query, cutoff, after, limit, time_left),
            )
            .await?;
            let Some(last) = candidates.last().map(|c| c.key.clone()) else {
                progress.complete = true;
                break;
            };
            progress.matched += candidates.len() as u64;
            match &def.action {
                _ if args.dry_run => {
                    progress.pages += 1;
                    progress.last_key = Some(last);
                }
                SweepAction::Statement { sql } => {
                    let time_left = def.max_time.saturating_sub(started.elapsed());
                    let keys: Vec<String> = candidates.into_iter().map(|c| c.key).collect();
                    let changed = bounded(
                        &def,
                        "action statement",
                        time_left,
                        act_on_page(&target, sql, &keys, time_left),
                    )
                    .await?;
                    progress.acted += changed;
                    progress.pages += 1;
                    progress.last_key = Some(last);
                    // The statement ran on the target; the checkpoint follows it (a crash
                    // in between repeats it on what is left).
                    let saved = self
                        .store
                        .save_progress(
                            job.id,
                            job.attempt as i32,
                            &job.worker,
                            &serde_json::json!(progress),
                        )
                        .await
                        .map_err(|e| JobError::retry(e.to_string()))?;
                    if !saved {
                        return Err(lease_lost());
                    }
                }
                SweepAction::FanOut { kind, queue } => {
                    let client = self.client()?;
                    let mut children = Vec::with_capacity(candidates.len());
                    for candidate in candidates {
                        match client.prepare(child(&def, kind, queue.as_deref(), job.id, candidate))
                        {
                            Ok(job) => children.push(job),
                            Err(error) => {
                                progress.refused += 1;
                                tracing::warn!(sweep = %def.name, %error, "a child job was refused");
                            }
                        }
                    }
                    progress.acted += children.len() as u64;
                    progress.pages += 1;
                    progress.last_key = Some(last);
                    // The children and the checkpoint commit together: a crash makes a
                    // page's children exactly once.
                    let stored = self
                        .store
                        .insert_with_progress(
                            children,
                            job.id,
                            job.attempt as i32,
                            &job.worker,
                            &serde_json::json!(progress),
                        )
                        .await
                        .map_err(|e| JobError::retry(e.to_string()))?;
                    if stored.is_none() {
                        return Err(lease_lost());
                    }
                }
            }
            self.report(event::SWEEP_PAGE, &job, &def, &progress).await;
            if !def.pause.is_zero() {
                let time_left = def.max_time.saturating_sub(started.elapsed());
                tokio::time::sleep(def.pause.min(time_left)).await;
            }
        }
        if !args.dry_run {
            let resume_after = progress
                .stopped_by
                .is_some()
                .then(|| progress.last_key.clone())
                .flatten();
            self.store
                .set_sweep_resume(&def.name, resume_after.as_deref())
                .await
                .map_err(JobError::retry)?;
        }
        self.report(event::SWEEP_FINISHED, &job, &def, &progress)
            .await;
        Ok(serde_json::to_value(&progress).unwrap_or_default())
    }
}

/// The error of an attempt whose lease was lost (its pass was rescued): the new attempt
/// owns the pass now and goes on from the checkpoint.
fn lease_lost() -> JobError {
    JobError::retry("this attempt lost its lease; the rescued pass goes on from the checkpoint")
}

/// The child job of one fan-out candidate: unique per (sweep, key) while it waits or runs,
/// so passes that overlap never act twice on one item.
fn child(
    def: &SweepDef,
    kind: &str,
    queue: Option<&str>,
    pass: crate::id::JobId,
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
async fn bounded<T>(
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
    let message = format!("sweep {}: {what} failed: {error}", def.name);
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
