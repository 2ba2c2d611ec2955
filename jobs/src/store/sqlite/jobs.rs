//! The `jobs` table's hot path on SQLite: insert, claim and complete. Batches travel as one
//! JSON array per statement, so a batch costs a handful of statements, not a few per job;
//! events are written from the same arrays. An array of objects is read with `jsonb_each`:
//! its elements come out as JSONB, which `->>` reads in place, where `json_each` hands each
//! element out as text that every `->>` parses again (a tenth of a drain's CPU, profiled).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Sqlite, SqliteConnection};

use super::sql::rows;
use super::sql::{Fetch, Run};
use super::{SqliteStore, duration_us, micros, now_us};
use crate::error::{StoreError, query};
use crate::id::{JobId, WorkerId};
use crate::job::{ClaimedJob, Enqueued, NewJob, RunAt};
use crate::outcome::Completion;
use crate::state::JobState;
use crate::store::Accepted;
use crate::store::inserter::Batch;

use super::leases::quarantine;

const INSERT: &str = "
INSERT INTO jobs (id, queue, kind, args, priority, state, max_attempts, run_at, created_at,
                  unique_key, unique_slot, unique_scope, tags, metadata, timeout_ms, sequence)
SELECT unhex(j->>'id'), j->>'queue', j->>'kind', j->'args', j->>'priority',
       CASE WHEN j->>'run_at' > ?2 THEN 'scheduled' ELSE 'available' END,
       j->>'max_attempts', j->>'run_at', ?2, j->>'unique_key', j->>'unique_slot',
       j->>'unique_scope', j->'tags', j->'metadata', j->>'timeout_ms', j->>'sequence'
FROM (SELECT value AS j FROM jsonb_each(?1)) WHERE true
ON CONFLICT (unique_slot) WHERE unique_slot IS NOT NULL DO NOTHING
RETURNING id, state";

const EVENTS_FOR: &str = "
INSERT INTO events (at, type, job_id, queue, kind, state, attempt)
SELECT ?2, ?3, id, queue, kind, state, attempt FROM jobs
WHERE id IN (SELECT unhex(value) FROM json_each(?1)) ORDER BY id";

// `+jobs.state`: with the state's index usable, the planner looped over every running job
// and read the whole array for each (it parsed the JSON once per running job, a quarter of
// a drain's CPU with a few hundred jobs claimed ahead); without it, it reads the array once
// and finds each job by its key.
const COMPLETE: &str = "
UPDATE jobs SET
    state = c.state,
    attempt = jobs.attempt - c.refund,
    run_at = CASE WHEN c.waits THEN ?2 + c.delay_us ELSE jobs.run_at END,
    finished_at = CASE WHEN c.terminal THEN ?2 END,
    locked_by = NULL,
    lease_expires_at = NULL,
    result = COALESCE(c.result, jobs.result),
    last_error = CASE WHEN c.error IS NULL AND c.state <> 'completed'
                      THEN jobs.last_error ELSE c.error END,
    unique_slot = CASE WHEN c.terminal AND jobs.unique_scope = 'active'
                       THEN NULL ELSE jobs.unique_slot END
FROM (SELECT unhex(value->>'id') AS id, value->>'attempt' AS attempt, value->>'worker' AS worker,
             value->>'state' AS state, value->>'refund' AS refund, value->>'waits' AS waits,
             value->>'delay_us' AS delay_us, value->>'terminal' AS terminal,
             value->'result' AS result, value->>'error' AS error
      FROM jsonb_each(?1)) AS c
WHERE jobs.id = c.id AND jobs.attempt = c.attempt AND jobs.locked_by = c.worker
  AND +jobs.state = 'running'
RETURNING jobs.id, jobs.sequence IS NOT NULL AS sequenced";

const RECORD_ATTEMPTS: &str = "
INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error,
                          error_chain)
SELECT j.id, c.value->>'attempt', c.value->>'worker', COALESCE(j.attempted_at, ?2), ?2,
       c.value->>'outcome', c.value->>'error', c.value->'chain'
FROM jsonb_each(?1) AS c JOIN jobs AS j ON j.id = unhex(c.value->>'id')";

const OUTCOME_EVENTS: &str = "
INSERT INTO events (at, type, job_id, queue, kind, state, attempt, data)
SELECT ?2, c.value->>'event', j.id, j.queue, j.kind, j.state, j.attempt,
       CASE WHEN c.value->>'error' IS NULL THEN NULL
            ELSE json_object('error', c.value->>'error') END
FROM jsonb_each(?1) AS c JOIN jobs AS j ON j.id = unhex(c.value->>'id')";

impl SqliteStore {
    pub(crate) async fn claim(
        &self,
        queue: &str,
        worker: &WorkerId,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let now = now_us();
        let mut tx = self.write("claim").await?;
        let rows = sqlx::query::<Sqlite>(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, attempted_at = ?1, \
                locked_by = ?2, lease_expires_at = ?3 \
             WHERE id IN ( \
                SELECT id FROM jobs j \
                WHERE queue = ?4 AND state IN ('available', 'scheduled', 'retryable') \
                  AND run_at <= ?1 \
                  AND NOT EXISTS (SELECT 1 FROM queues WHERE name = ?4 AND paused) \
                  AND (j.sequence IS NULL OR NOT EXISTS (SELECT 1 FROM jobs p \
                       WHERE p.sequence = j.sequence AND p.state NOT IN ('completed', 'cancelled') \
                         AND p.id <> j.id AND (p.id < j.id OR p.state = 'running'))) \
                ORDER BY priority, run_at, id \
                LIMIT min(?5, coalesce((SELECT max(0, q.concurrency - \
                    (SELECT count(*) FROM jobs r WHERE r.queue = ?4 AND r.state = 'running')) \
                    FROM queues q WHERE q.name = ?4 AND q.concurrency IS NOT NULL), ?5))) \
             RETURNING id, queue, kind, args, priority, attempt, max_attempts, created_at, \
                run_at, timeout_ms, metadata",
        )
        .bind(now)
        .bind(worker.as_str())
        .bind(now.saturating_add(duration_us(lease)))
        .bind(queue)
        .bind(i64::from(limit))
        .all(&mut *tx, "claim")
        .await?;
        let (mut jobs, broken) =
            crate::store::split_readable(&rows, rows::claimed, |row| rows::job_id(row, "id"))?;
        for (id, error) in &broken {
            quarantine(&mut tx, *id, error, now).await?;
        }
        SqliteStore::claimed_events(&mut tx, &jobs, now).await?;
        tx.commit().await.map_err(query("claim"))?;
        jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
        Ok(jobs)
    }
}

impl SqliteStore {
    /// SQLite writes a batch's events in statements of their own: every insert is a
    /// transaction, keys or none.
    pub(crate) async fn insert_alone(&self, batch: Batch<'_>) -> Result<Vec<Enqueued>, StoreError> {
        self.insert_in_transaction(batch).await
    }

    /// Stores `jobs` and their events on `conn`, a transaction of this store's (no other
    /// process to tell: SQLite's are found by polling).
    pub(crate) async fn insert_on(
        &self,
        conn: &mut SqliteConnection,
        jobs: &[NewJob],
        _tell_others: bool,
    ) -> Result<Vec<Enqueued>, StoreError> {
        insert_jobs(conn, jobs).await
    }
}

/// Stores `jobs` and their events on `conn`, a transaction; a job whose unique slot is taken
/// returns the holder instead.
pub(crate) async fn insert_jobs(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
) -> Result<Vec<Enqueued>, StoreError> {
    let now = now_us();
    let rows: Vec<Value> = jobs.iter().map(|job| job_json(job, now)).collect();
    let inserted = sqlx::query::<Sqlite>(INSERT)
        .bind(Value::Array(rows).to_string())
        .bind(now)
        .all(&mut *conn, "insert jobs")
        .await?;
    let mut states = HashMap::with_capacity(inserted.len());
    for row in &inserted {
        states.insert(rows::job_id(row, "id")?, rows::state(row, "state")?);
    }
    let ids: Vec<String> = states.keys().map(|id| hex(*id)).collect();
    write_events(conn, &ids, crate::event::JOB_ENQUEUED, now).await?;
    let holders = slot_holders(conn, jobs, &states).await?;
    jobs.iter()
        .map(|job| match states.get(&job.id) {
            Some(&state) => Ok(Enqueued::stored(job.id, state)),
            None => job
                .unique
                .as_ref()
                .and_then(|(_, slot, _)| holders.get(slot))
                .map(|&(id, state)| Enqueued::duplicate_of(id, state))
                .ok_or_else(|| StoreError::Corrupt {
                    what: "insert result",
                    detail: format!("job {} was neither stored nor a duplicate", job.id),
                }),
        })
        .collect()
}

impl SqliteStore {
    /// Writes the `job.started` events of freshly claimed jobs.
    pub(super) async fn claimed_events(
        conn: &mut SqliteConnection,
        jobs: &[ClaimedJob],
        now: i64,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = jobs.iter().map(|j| hex(j.id)).collect();
        write_events(conn, &ids, crate::event::JOB_STARTED, now).await
    }

    pub(crate) async fn complete(&self, done: &[Completion]) -> Result<Vec<Accepted>, StoreError> {
        let now = now_us();
        let rows: Vec<Value> = done.iter().map(completion_json).collect();
        let mut tx = self.write("complete").await?;
        let accepted = sqlx::query::<Sqlite>(COMPLETE)
            .bind(Value::Array(rows.clone()).to_string())
            .bind(now)
            .all(&mut *tx, "complete")
            .await?;
        let accepted: Vec<Accepted> = accepted
            .iter()
            .map(rows::accepted)
            .collect::<Result<_, _>>()?;
        let kept: Vec<Value> = done
            .iter()
            .zip(rows)
            .filter(|(c, _)| accepted.iter().any(|a| a.id == c.lease.job))
            .map(|(_, row)| row)
            .collect();
        let kept = Value::Array(kept).to_string();
        for (sql, op) in [
            (RECORD_ATTEMPTS, "record attempts"),
            (OUTCOME_EVENTS, "write events"),
        ] {
            sqlx::query::<Sqlite>(sql)
                .bind(&kept)
                .bind(now)
                .run(&mut *tx, op)
                .await?;
        }
        tx.commit().await.map_err(query("complete"))?;
        Ok(accepted)
    }
}

pub(super) async fn write_events(
    conn: &mut SqliteConnection,
    ids: &[String],
    event_type: &str,
    now: i64,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query::<Sqlite>(EVENTS_FOR)
        .bind(serde_json::to_string(ids).unwrap_or_default())
        .bind(now)
        .bind(event_type)
        .run(conn, "write events")
        .await?;
    Ok(())
}

/// The current holders of the unique slots of jobs that were not stored.
async fn slot_holders(
    conn: &mut SqliteConnection,
    jobs: &[NewJob],
    stored: &HashMap<JobId, JobState>,
) -> Result<HashMap<String, (JobId, JobState)>, StoreError> {
    let slots: Vec<&str> = jobs
        .iter()
        .filter(|job| !stored.contains_key(&job.id))
        .filter_map(|job| job.unique.as_ref().map(|(_, slot, _)| slot.as_str()))
        .collect();
    if slots.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query::<Sqlite>(
        "SELECT id, state, unique_slot FROM jobs \
         WHERE unique_slot IN (SELECT value FROM json_each(?))",
    )
    .bind(serde_json::to_string(&slots).unwrap_or_default())
    .all(conn, "find unique slot holders")
    .await?;
    rows.iter()
        .map(|row| {
            let slot: String = rows::get(row, "unique_slot")?;
            Ok((slot, (rows::job_id(row, "id")?, rows::state(row, "state")?)))
        })
        .collect()
}

pub(super) fn hex(id: JobId) -> String {
    id.0.simple().to_string()
}

fn job_json(job: &NewJob, now: i64) -> Value {
    let run_at = match job.run_at {
        RunAt::Now => now,
        RunAt::After(delay) => now.saturating_add(duration_us(crate::limits::bounded(delay))),
        RunAt::At(at) => micros(at),
    };
    let (key, slot, scope) = match &job.unique {
        Some((key, slot, scope)) => (
            Some(key.as_str()),
            Some(slot.as_str()),
            Some(scope.as_str()),
        ),
        None => (None, None, None),
    };
    json!({
        "id": hex(job.id), "queue": job.queue, "kind": job.kind, "args": job.args,
        "priority": job.priority, "max_attempts": job.max_attempts, "run_at": run_at,
        "unique_key": key, "unique_slot": slot, "unique_scope": scope, "tags": job.tags,
        "metadata": job.metadata, "timeout_ms": job.timeout_ms, "sequence": job.sequence,
    })
}

fn completion_json(c: &Completion) -> Value {
    let state = c.outcome.state();
    let error = c.outcome.error();
    let mut row = json!({
        "id": hex(c.lease.job), "attempt": c.lease.attempt, "worker": c.lease.worker.as_str(),
        "state": state.as_str(), "refund": i32::from(!c.outcome.consumes_attempt()),
        "waits": matches!(state, JobState::Retryable | JobState::Scheduled | JobState::Available),
        "delay_us": c.outcome.delay_ms() * 1000, "terminal": state.is_terminal(),
        "error": error.map(|e| e.message.as_str()), "outcome": c.outcome.name(),
        "event": c.outcome.event_type(),
    });
    if let Some(result) = c.outcome.result() {
        row["result"] = result.clone();
    }
    if let Some(chain) = error.filter(|e| !e.chain.is_empty()) {
        row["chain"] = json!(chain.chain);
    }
    row
}
