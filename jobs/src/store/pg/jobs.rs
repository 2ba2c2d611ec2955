//! The `jobs` table's hot path on Postgres: insert, claim and complete. Each is one
//! statement over arrays (`unnest`), so a batch of any size is one round trip, and each writes
//! its events (and a lone insert its wake-up) in the same statement, not a statement each.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, Postgres, Row};

use super::sql::rows;
use super::sql::{Fetch, Run};
use super::{PgStore, column};
use crate::error::{StoreError, query};
use crate::event;
use crate::id::{JobId, WorkerId};
use crate::job::{ClaimedJob, Enqueued, NewJob, UniqueScope};
use crate::outcome::Completion;
use crate::state::JobState;
use crate::store::inserter::Batch;
use crate::store::{Accepted, millis, split_readable};

/// The insert of a batch with its events; the statement ends with what it answers.
macro_rules! insert_jobs_then {
    ($tail:literal) => {
        concat!(
            r#"
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int2[], $6::int4[],
                         $7::int8[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
                         $12::jsonb[], $13::jsonb[], $14::int8[], $15::text[])
        AS t(id, queue, kind, args, priority, max_attempts, delay_ms, run_at, unique_key,
             unique_slot, unique_scope, tags, metadata, timeout_ms, sequence)
), timed AS (
    SELECT input.*, COALESCE(input.run_at, now() + input.delay_ms * interval '1 millisecond') AS at
    FROM input
), ins AS (
    INSERT INTO jobs (id, queue, kind, args, priority, state, max_attempts, run_at, unique_key,
                      unique_slot, unique_scope, tags, metadata, timeout_ms, sequence)
    SELECT id, queue, kind, args, priority,
           CASE WHEN at > now() THEN 'scheduled' ELSE 'available' END,
           max_attempts, at, unique_key, unique_slot, unique_scope, tags, metadata, timeout_ms,
           sequence
    FROM timed
    ON CONFLICT (unique_slot) WHERE unique_slot IS NOT NULL DO NOTHING
    RETURNING id, queue, kind, state
), ev AS (
    INSERT INTO events (type, job_id, queue, kind, state, attempt)
    SELECT $16, id, queue, kind, state, 0 FROM ins
)
"#,
            $tail
        )
    };
}

const INSERT: &str = insert_jobs_then!("SELECT id, state FROM ins");

/// [`INSERT`] with a `NOTIFY` per queue from origin `$17` (the relay's channel, and the payload
/// `notify::encode` gives a job-available signal), delivered when the insert commits.
const INSERT_NOTIFYING: &str = insert_jobs_then!(
    "SELECT id, state,
       (SELECT count(pg_notify('longshore_' || current_schema(), $17 || ' q ' || w.queue))
        FROM (SELECT DISTINCT queue FROM ins) w) AS woken
FROM ins"
);

/// Stores `jobs` and their events on `conn`, a transaction, and with an `origin` the wake-up
/// of the workers of their queues: a `NOTIFY` from that origin, which its own listener skips
/// (its process wakes its own workers), delivered when the transaction commits. A job whose
/// unique slot is taken returns the holder instead.
///
/// Batches of more than about 500,000 jobs must be split: event ids are unique per
/// transaction only up to 2^20 events.
pub(crate) async fn insert_jobs(
    conn: &mut PgConnection,
    jobs: &[NewJob],
    origin: Option<&str>,
) -> Result<Vec<Enqueued>, StoreError> {
    let mut results: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    // A slot released between the failed insert and the lookup is retried; a few rounds
    // settle any race.
    for _ in 0..5 {
        let inserted = insert_rows(&mut *conn, jobs, &pending, origin).await?;
        let mut conflicts = Vec::new();
        for &i in &pending {
            match inserted.get(&jobs[i].id) {
                Some(&state) => results[i] = Some(Enqueued::stored(jobs[i].id, state)),
                None => conflicts.push(i),
            }
        }
        if conflicts.is_empty() {
            break;
        }
        let holders = slot_holders(&mut *conn, jobs, &conflicts).await?;
        pending.clear();
        for i in conflicts {
            let slot = jobs[i].unique.as_ref().map(|(_, slot, _)| slot.as_str());
            match slot.and_then(|s| holders.get(s)) {
                Some(&(id, state)) => results[i] = Some(Enqueued::duplicate_of(id, state)),
                None => pending.push(i),
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.ok_or(StoreError::Corrupt {
                what: "unique slot",
                detail: "the slot kept changing hands during the enqueue".to_owned(),
            })
        })
        .collect()
}

impl PgStore {
    /// Stores `jobs` and their events on `conn`, a transaction of this store's, and with
    /// `tell_others` the wake-up of other processes' workers.
    pub(crate) async fn insert_on(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
        tell_others: bool,
    ) -> Result<Vec<Enqueued>, StoreError> {
        insert_jobs(conn, jobs, tell_others.then_some(&*self.origin)).await
    }

    /// Stores jobs that hold no unique key, with no idempotency answer, as one statement
    /// committed on its own: one round trip instead of three (`BEGIN`, the insert,
    /// `COMMIT`), and nothing to retry, as no job can conflict. The deadline applies until
    /// the statement is sent; after that only the database knows whether it committed, and
    /// a lost answer is [`StoreError::Unconfirmed`].
    pub(crate) async fn insert_alone(&self, batch: Batch<'_>) -> Result<Vec<Enqueued>, StoreError> {
        let (jobs, deadline) = (batch.jobs, batch.deadline);
        let origin = batch.tell_others.then_some(&*self.origin);
        let op = "insert jobs";
        let mut conn = tokio::time::timeout_at(deadline, self.pool.acquire())
            .await
            .map_err(|_| StoreError::TimedOut { op })?
            .map_err(query(op))?;
        let all: Vec<usize> = (0..jobs.len()).collect();
        let stored =
            match tokio::time::timeout_at(deadline, insert_rows(&mut *conn, jobs, &all, origin))
                .await
            {
                Ok(Ok(stored)) => stored,
                // The database answered: it did not commit.
                Ok(Err(StoreError::Query {
                    error: error @ sqlx::Error::Database(_),
                    ..
                })) => return Err(StoreError::Query { op, error }),
                Ok(Err(_)) | Err(_) => {
                    return Err(StoreError::Unconfirmed {
                        jobs: jobs.iter().map(|j| j.id).collect(),
                    });
                }
            };
        jobs.iter()
            .map(|job| match stored.get(&job.id) {
                Some(&state) => Ok(Enqueued::stored(job.id, state)),
                None => Err(StoreError::Corrupt {
                    what: "insert result",
                    detail: format!("job {} without a unique key was not stored", job.id),
                }),
            })
            .collect()
    }
}

async fn insert_rows<'c, E: PgExecutor<'c>>(
    executor: E,
    jobs: &[NewJob],
    which: &[usize],
    origin: Option<&str>,
) -> Result<HashMap<JobId, JobState>, StoreError> {
    let batch: Vec<&NewJob> = which.iter().map(|&i| &jobs[i]).collect();
    let (delays, run_ats): (Vec<i64>, Vec<_>) = batch.iter().map(|j| j.run_at_parts()).unzip();
    let unique = |part: fn(&(String, String, UniqueScope)) -> &str| {
        column(&batch, |j| j.unique.as_ref().map(part))
    };
    let sql = origin.map_or(INSERT, |_| INSERT_NOTIFYING);
    let mut query = sqlx::query::<Postgres>(sql)
        .bind(column(&batch, |j| j.id.0))
        .bind(column(&batch, |j| j.queue.as_str()))
        .bind(column(&batch, |j| j.kind.as_str()))
        .bind(column(&batch, |j| &j.args))
        .bind(column(&batch, |j| j.priority))
        .bind(column(&batch, |j| j.max_attempts))
        .bind(&delays)
        .bind(&run_ats)
        .bind(unique(|u| u.0.as_str()))
        .bind(unique(|u| u.1.as_str()))
        .bind(unique(|u| u.2.as_str()))
        .bind(column(&batch, |j| Json(&j.tags)))
        .bind(column(&batch, |j| &j.metadata))
        .bind(column(&batch, |j| j.timeout_ms))
        .bind(column(&batch, |j| j.sequence.as_deref()))
        .bind(event::JOB_ENQUEUED);
    if let Some(origin) = origin {
        query = query.bind(origin);
    }
    let rows = query.all(executor, "insert jobs").await?;
    rows.iter()
        .map(|row| Ok((rows::job_id(row, "id")?, rows::state(row, "state")?)))
        .collect()
}

async fn slot_holders<'c, E: PgExecutor<'c>>(
    executor: E,
    jobs: &[NewJob],
    which: &[usize],
) -> Result<HashMap<String, (JobId, JobState)>, StoreError> {
    let slots: Vec<&str> = which
        .iter()
        .filter_map(|&i| jobs[i].unique.as_ref().map(|(_, slot, _)| slot.as_str()))
        .collect();
    let rows = sqlx::query::<Postgres>(
        "SELECT id, state, unique_slot FROM jobs WHERE unique_slot = ANY($1)",
    )
    .bind(&slots)
    .all(executor, "find unique slot holders")
    .await?;
    rows.iter()
        .map(|row| {
            let slot: String = row.get("unique_slot");
            Ok((slot, (rows::job_id(row, "id")?, rows::state(row, "state")?)))
        })
        .collect()
}

const CLAIM: &str = r#"
WITH picked AS (
    SELECT id FROM jobs j
    WHERE queue = $1
      AND state IN ('available', 'scheduled', 'retryable')
      AND run_at <= now()
      AND NOT EXISTS (SELECT 1 FROM queues WHERE name = $1 AND paused)
      AND (j.sequence IS NULL OR NOT EXISTS (SELECT 1 FROM jobs p
           WHERE p.sequence = j.sequence AND p.state NOT IN ('completed', 'cancelled')
             AND p.id <> j.id AND (p.id < j.id OR p.state = 'running')))
    ORDER BY priority, run_at, id
    -- A queue's global concurrency limit caps the claim at the slots it has left, counted
    -- under a lock on the queue's row so that racing claims take turns (see the migration).
    LIMIT longshore_claim_room($1, $2)
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs j
    SET state = 'running', attempt = j.attempt + 1, attempted_at = now(), locked_by = $3,
        lease_expires_at = now() + $4 * interval '1 millisecond'
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.id, j.queue, j.kind, j.args, j.priority, j.attempt, j.max_attempts, j.created_at,
              j.run_at, j.timeout_ms, j.metadata
), ev AS (
    INSERT INTO events (type, job_id, queue, kind, state, attempt)
    SELECT $5, id, queue, kind, 'running', attempt FROM claimed
)
SELECT * FROM claimed
"#;

const COMPLETE: &str = r#"
WITH c AS (
    SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::int8[],
                         $7::jsonb[], $8::text[], $9::jsonb[], $10::text[], $11::bool[])
        AS c(id, attempt, worker, state, outcome, delay_ms, result, error, error_chain,
             event_type, consumes)
), done AS (
    UPDATE jobs j
    SET state = c.state,
        attempt = CASE WHEN c.consumes THEN j.attempt ELSE j.attempt - 1 END,
        run_at = CASE WHEN c.state IN ('retryable', 'scheduled', 'available')
                      THEN now() + c.delay_ms * interval '1 millisecond' ELSE j.run_at END,
        finished_at = CASE WHEN c.state IN ('completed', 'cancelled', 'discarded') THEN now() END,
        locked_by = NULL,
        lease_expires_at = NULL,
        result = COALESCE(c.result, j.result),
        last_error = CASE WHEN c.error IS NULL AND c.state <> 'completed'
                          THEN j.last_error ELSE c.error END,
        unique_slot = CASE WHEN c.state IN ('completed', 'cancelled', 'discarded')
                                AND j.unique_scope = 'active'
                           THEN NULL ELSE j.unique_slot END
    FROM c
    WHERE j.id = c.id AND j.attempt = c.attempt AND j.locked_by = c.worker AND j.state = 'running'
    RETURNING j.id, j.queue, j.kind, j.state, j.attempt, j.attempted_at, c.attempt AS ran,
              c.worker, c.outcome, c.error, c.error_chain, c.event_type,
              j.sequence IS NOT NULL AS sequenced
), att AS (
    INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error,
                              error_chain)
    SELECT id, ran, worker, COALESCE(attempted_at, now()), now(), outcome, error, error_chain
    FROM done
), ev AS (
    INSERT INTO events (type, job_id, queue, kind, state, attempt, data)
    SELECT event_type, id, queue, kind, state, attempt,
           CASE WHEN error IS NULL THEN NULL ELSE jsonb_build_object('error', error) END
    FROM done
)
SELECT id, sequenced FROM done
"#;

const QUARANTINE: &str = r#"
WITH q AS (
    UPDATE jobs j
    SET state = 'discarded', finished_at = now(), locked_by = NULL, lease_expires_at = NULL,
        last_error = b.error,
        unique_slot = CASE WHEN j.unique_scope = 'active' THEN NULL ELSE j.unique_slot END
    FROM unnest($1::uuid[], $2::text[]) AS b(id, error)
    WHERE j.id = b.id AND j.state = 'running'
    RETURNING j.id, j.queue, j.kind, j.attempt, j.locked_by, b.error
), att AS (
    INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error)
    SELECT id, attempt, now(), now(), 'discarded', error FROM q
)
INSERT INTO events (type, job_id, queue, kind, state, attempt, data)
SELECT $3, id, queue, kind, 'discarded', attempt, jsonb_build_object('error', error)
FROM q
"#;

impl PgStore {
    pub(crate) async fn claim(
        &self,
        queue: &str,
        worker: &WorkerId,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let rows = sqlx::query::<Postgres>(CLAIM)
            .bind(queue)
            .bind(i64::from(limit))
            .bind(worker.as_str())
            .bind(millis(lease))
            .bind(event::JOB_STARTED)
            .all(&self.lease_pool, "claim")
            .await?;
        let (mut jobs, broken) =
            split_readable(&rows, rows::claimed, |row| rows::job_id(row, "id"))?;
        if !broken.is_empty() {
            self.quarantine(&broken).await?;
        }
        jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
        Ok(jobs)
    }

    /// Discards claimed jobs whose row cannot be read, so one bad row never wedges a queue.
    async fn quarantine(&self, broken: &[(JobId, String)]) -> Result<(), StoreError> {
        sqlx::query::<Postgres>(QUARANTINE)
            .bind(column(broken, |(id, _)| id.0))
            .bind(column(broken, |(_, e)| e.as_str()))
            .bind(event::JOB_DISCARDED)
            .run(&self.lease_pool, "discard unreadable jobs")
            .await
            .map(|_| ())
    }

    pub(crate) async fn complete(&self, done: &[Completion]) -> Result<Vec<Accepted>, StoreError> {
        let rows = sqlx::query::<Postgres>(COMPLETE)
            .bind(column(done, |c| c.lease.job.0))
            .bind(column(done, |c| c.lease.attempt))
            .bind(column(done, |c| c.lease.worker.as_str()))
            .bind(column(done, |c| c.outcome.state().as_str()))
            .bind(column(done, |c| c.outcome.name()))
            .bind(column(done, |c| c.outcome.delay_ms()))
            .bind(column(done, |c| c.outcome.result()))
            .bind(column(done, |c| {
                c.outcome.error().map(|e| e.message.as_str())
            }))
            .bind(column(done, |c| {
                c.outcome
                    .error()
                    .filter(|e| !e.chain.is_empty())
                    .map(|e| Json(&e.chain))
            }))
            .bind(column(done, |c| c.outcome.event_type()))
            .bind(column(done, |c| c.outcome.consumes_attempt()))
            .all(&self.lease_pool, "complete")
            .await?;
        rows.iter().map(rows::accepted).collect()
    }
}
