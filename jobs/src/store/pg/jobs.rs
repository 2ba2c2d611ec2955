//! The `jobs` table on Postgres: insert, claim, complete, rescue and the operator's moves.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use sqlx::types::Json;
use sqlx::{Acquire, PgConnection, PgExecutor, Postgres, Row};
use uuid::Uuid;

use super::{PgStore, rows};
use crate::error::{StoreError, query};
use crate::id::{JobId, WorkerId};
use crate::job::{Attempt, ClaimedJob, Enqueued, Job, NewJob};
use crate::outcome::Completion;
use crate::state::JobState;
use crate::store::inserter::Batch;
use crate::store::{CancelOutcome, HeldAttempt, PruneLimits, Pruned, Renewal, Rescued, millis};

const INSERT: &str = r#"
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int2[], $6::int4[],
                         $7::int8[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
                         $12::jsonb[], $13::jsonb[], $14::int8[])
        AS t(id, queue, kind, args, priority, max_attempts, delay_ms, run_at, unique_key,
             unique_slot, unique_scope, tags, metadata, timeout_ms)
), timed AS (
    SELECT input.*, COALESCE(input.run_at, now() + input.delay_ms * interval '1 millisecond') AS at
    FROM input
), ins AS (
    INSERT INTO jobs (id, queue, kind, args, priority, state, max_attempts, run_at, unique_key,
                      unique_slot, unique_scope, tags, metadata, timeout_ms)
    SELECT id, queue, kind, args, priority,
           CASE WHEN at > now() THEN 'scheduled' ELSE 'available' END,
           max_attempts, at, unique_key, unique_slot, unique_scope, tags, metadata, timeout_ms
    FROM timed
    ON CONFLICT (unique_slot) WHERE unique_slot IS NOT NULL DO NOTHING
    RETURNING id, queue, kind, state
), ev AS (
    INSERT INTO events (type, job_id, queue, kind, state, attempt)
    SELECT 'job.enqueued', id, queue, kind, state, 0 FROM ins
)
SELECT id, state FROM ins
"#;

/// Stores `jobs` on `conn`, which may be a transaction of the caller's: the jobs and their
/// events then commit with it. A job whose unique slot is taken returns the holder instead.
///
/// Batches of more than about 500,000 jobs must be split: event ids are unique per
/// transaction only up to 2^20 events.
pub async fn insert<'a, A>(conn: A, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError>
where
    A: Acquire<'a, Database = Postgres>,
{
    let mut conn = conn.acquire().await.map_err(query("insert jobs"))?;
    insert_on(&mut conn, jobs).await
}

/// [`insert`] on a connection already in hand.
async fn insert_on(conn: &mut PgConnection, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
    let mut results: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    // A slot released between the failed insert and the lookup is retried; a few rounds
    // settle any race.
    for _ in 0..5 {
        let inserted = insert_rows(&mut *conn, jobs, &pending).await?;
        let mut conflicts = Vec::new();
        for &i in &pending {
            match inserted.get(&jobs[i].id) {
                Some(&state) => {
                    results[i] = Some(Enqueued {
                        id: jobs[i].id,
                        state,
                        duplicate: false,
                    })
                }
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
                Some(&(id, state)) => {
                    results[i] = Some(Enqueued {
                        id,
                        state,
                        duplicate: true,
                    })
                }
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

async fn insert_rows<'c, E: PgExecutor<'c>>(
    executor: E,
    jobs: &[NewJob],
    which: &[usize],
) -> Result<HashMap<JobId, JobState>, StoreError> {
    let ids: Vec<Uuid> = which.iter().map(|&i| jobs[i].id.0).collect();
    let queues: Vec<&str> = which.iter().map(|&i| jobs[i].queue.as_str()).collect();
    let kinds: Vec<&str> = which.iter().map(|&i| jobs[i].kind.as_str()).collect();
    let args: Vec<&serde_json::Value> = which.iter().map(|&i| &jobs[i].args).collect();
    let priorities: Vec<i16> = which.iter().map(|&i| jobs[i].priority).collect();
    let max_attempts: Vec<i32> = which.iter().map(|&i| jobs[i].max_attempts).collect();
    let (delays, run_ats): (Vec<i64>, Vec<_>) =
        which.iter().map(|&i| jobs[i].run_at_parts()).unzip();
    let unique =
        |part: fn(&(String, String, crate::job::UniqueScope)) -> &str| -> Vec<Option<&str>> {
            which
                .iter()
                .map(|&i| jobs[i].unique.as_ref().map(part))
                .collect()
        };
    let tags: Vec<Json<&Vec<String>>> = which.iter().map(|&i| Json(&jobs[i].tags)).collect();
    let metadata: Vec<&serde_json::Value> = which.iter().map(|&i| &jobs[i].metadata).collect();
    let timeouts: Vec<Option<i64>> = which.iter().map(|&i| jobs[i].timeout_ms).collect();
    let rows = sqlx::query::<Postgres>(INSERT)
        .bind(&ids)
        .bind(&queues)
        .bind(&kinds)
        .bind(&args)
        .bind(&priorities)
        .bind(&max_attempts)
        .bind(&delays)
        .bind(&run_ats)
        .bind(unique(|u| u.0.as_str()))
        .bind(unique(|u| u.1.as_str()))
        .bind(unique(|u| u.2.as_str()))
        .bind(&tags)
        .bind(&metadata)
        .bind(&timeouts)
        .fetch_all(executor)
        .await
        .map_err(query("insert jobs"))?;
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
    .fetch_all(executor)
    .await
    .map_err(query("find unique slot holders"))?;
    rows.iter()
        .map(|row| {
            let slot: String = row.get("unique_slot");
            Ok((slot, (rows::job_id(row, "id")?, rows::state(row, "state")?)))
        })
        .collect()
}

const CLAIM: &str = r#"
WITH picked AS (
    SELECT id FROM jobs
    WHERE queue = $1
      AND state IN ('available', 'scheduled', 'retryable')
      AND run_at <= now()
      AND NOT EXISTS (SELECT 1 FROM queues WHERE name = $1 AND paused)
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
    SELECT 'job.started', id, queue, kind, 'running', attempt FROM claimed
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
              c.worker, c.outcome, c.error, c.error_chain, c.event_type
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
SELECT id FROM done
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
SELECT 'job.discarded', id, queue, kind, 'discarded', attempt, jsonb_build_object('error', error)
FROM q
"#;

/// Renews the held attempts that still hold their job; the main query reads the snapshot from
/// before the update, which is the same for this purpose: renewing does not change who holds.
const EXTEND_LEASES: &str = r#"
WITH held AS (
    SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[]) AS h(id, attempt, worker)
), renewed AS (
    UPDATE jobs j SET lease_expires_at = now() + $4 * interval '1 millisecond'
    FROM held h
    WHERE j.id = h.id AND j.attempt = h.attempt AND j.locked_by = h.worker
      AND j.state = 'running' AND j.lease_expires_at < now() + $5 * interval '1 millisecond'
    RETURNING j.id
), lost AS (
    SELECT h.id, h.attempt FROM held h
    WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = h.id AND j.attempt = h.attempt
                                             AND j.locked_by = h.worker AND j.state = 'running')
)
SELECT (SELECT count(*) FROM renewed) AS extended,
       ARRAY(SELECT id FROM lost ORDER BY id) AS lost_ids,
       ARRAY(SELECT attempt FROM lost ORDER BY id) AS lost_attempts
"#;

const RESCUE: &str = r#"
WITH expired AS (
    SELECT id, locked_by AS lost_by FROM jobs
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), r AS (
    UPDATE jobs j
    SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                     WHEN j.attempt >= j.max_attempts THEN 'discarded'
                     ELSE 'retryable' END,
        -- run_at stays: a rescued job keeps its place in the queue instead of waiting
        -- behind the backlog that arrived while it ran.
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL OR j.attempt >= j.max_attempts
                           THEN now() END,
        locked_by = NULL,
        lease_expires_at = NULL,
        last_error = 'lease expired: worker ' || COALESCE(expired.lost_by, '?')
                     || ' stopped renewing it',
        unique_slot = CASE WHEN (j.cancel_requested_at IS NOT NULL OR j.attempt >= j.max_attempts)
                                AND j.unique_scope = 'active'
                           THEN NULL ELSE j.unique_slot END
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.id, j.queue, j.kind, j.state, j.attempt, j.attempted_at, j.last_error,
              expired.lost_by
), att AS (
    INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error)
    SELECT id, attempt, lost_by, COALESCE(attempted_at, now()), now(), 'lost', last_error FROM r
), ev AS (
    INSERT INTO events (type, job_id, queue, kind, state, attempt, data)
    SELECT 'job.rescued', id, queue, kind, state, attempt,
           jsonb_build_object('error', last_error, 'worker', lost_by)
    FROM r
)
SELECT id, state, lost_by FROM r
"#;

impl PgStore {
    /// Stores a batch in one transaction with its idempotency responses, the commit sent
    /// only before the batch's deadline (so a timeout before it leaves nothing stored) and an
    /// unanswered commit reported as [`StoreError::Unconfirmed`].
    pub(crate) async fn insert(&self, batch: Batch<'_>) -> Result<Vec<Enqueued>, StoreError> {
        let staged = async {
            let mut tx = self.pool.begin().await.map_err(query("insert jobs"))?;
            let enqueued = insert_on(&mut tx, batch.jobs).await?;
            for (range, keyed) in &batch.keyed {
                let (status, body) = (keyed.render)(&enqueued[range.clone()]);
                super::admin::record_idempotency_on(&mut *tx, keyed, status, &body).await?;
            }
            Ok::<_, StoreError>((tx, enqueued))
        };
        let (tx, enqueued) = tokio::time::timeout_at(batch.deadline, staged)
            .await
            .map_err(|_| StoreError::TimedOut { op: "insert jobs" })??;
        let unconfirmed = || StoreError::Unconfirmed {
            jobs: batch.jobs.iter().map(|j| j.id).collect(),
        };
        match tokio::time::timeout_at(batch.deadline, tx.commit()).await {
            Ok(Ok(())) => Ok(enqueued),
            // The server answered: it did not commit.
            Ok(Err(error @ sqlx::Error::Database(_))) => Err(StoreError::Query {
                op: "insert jobs",
                source: error,
            }),
            Ok(Err(_)) | Err(_) => Err(unconfirmed()),
        }
    }

    /// Stores `jobs` and the progress of job `id` in one transaction, if `worker` still
    /// holds attempt `attempt` of it; `None` (and nothing stored) when it does not.
    pub(crate) async fn insert_with_progress(
        &self,
        jobs: &[NewJob],
        id: JobId,
        attempt: i32,
        worker: &WorkerId,
        progress: &serde_json::Value,
    ) -> Result<Option<Vec<Enqueued>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query("insert jobs"))?;
        let saved = super::admin::save_progress_on(&mut *tx, id, attempt, worker, progress).await?;
        if !saved {
            return Ok(None);
        }
        let enqueued = insert_on(&mut tx, jobs).await?;
        tx.commit().await.map_err(query("insert jobs"))?;
        Ok(Some(enqueued))
    }

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
            .fetch_all(&self.lease_pool)
            .await
            .map_err(query("claim"))?;
        let (mut jobs, broken) =
            super::super::split_readable(&rows, rows::claimed, |row| rows::job_id(row, "id"))?;
        if !broken.is_empty() {
            self.quarantine(&broken).await?;
        }
        jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
        Ok(jobs)
    }

    /// Discards claimed jobs whose row cannot be read, so one bad row never wedges a queue.
    async fn quarantine(&self, broken: &[(JobId, String)]) -> Result<(), StoreError> {
        sqlx::query::<Postgres>(QUARANTINE)
            .bind(broken.iter().map(|(id, _)| id.0).collect::<Vec<_>>())
            .bind(broken.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>())
            .execute(&self.lease_pool)
            .await
            .map_err(query("discard unreadable jobs"))?;
        Ok(())
    }

    pub(crate) async fn complete(&self, done: &[Completion]) -> Result<Vec<JobId>, StoreError> {
        let errors: Vec<Option<&str>> = done
            .iter()
            .map(|c| c.outcome.error().map(|e| e.message.as_str()))
            .collect();
        let chains: Vec<Option<Json<&Vec<String>>>> = done
            .iter()
            .map(|c| {
                c.outcome
                    .error()
                    .filter(|e| !e.chain.is_empty())
                    .map(|e| Json(&e.chain))
            })
            .collect();
        let rows = sqlx::query::<Postgres>(COMPLETE)
            .bind(done.iter().map(|c| c.id.0).collect::<Vec<_>>())
            .bind(done.iter().map(|c| c.attempt).collect::<Vec<_>>())
            .bind(done.iter().map(|c| c.worker.as_str()).collect::<Vec<_>>())
            .bind(
                done.iter()
                    .map(|c| c.outcome.state().as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(done.iter().map(|c| c.outcome.name()).collect::<Vec<_>>())
            .bind(
                done.iter()
                    .map(|c| c.outcome.delay_ms())
                    .collect::<Vec<_>>(),
            )
            .bind(done.iter().map(|c| c.outcome.result()).collect::<Vec<_>>())
            .bind(&errors)
            .bind(&chains)
            .bind(
                done.iter()
                    .map(|c| c.outcome.event_type())
                    .collect::<Vec<_>>(),
            )
            .bind(
                done.iter()
                    .map(|c| c.outcome.consumes_attempt())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&self.lease_pool)
            .await
            .map_err(query("complete"))?;
        rows.iter().map(|row| rows::job_id(row, "id")).collect()
    }

    pub(crate) async fn release(
        &self,
        worker: &WorkerId,
        jobs: &[(JobId, i32)],
    ) -> Result<u64, StoreError> {
        let released: i64 = sqlx::query_scalar::<Postgres, i64>(
            r#"
            WITH r AS (
                UPDATE jobs j
                SET state = 'available', attempt = j.attempt - 1, locked_by = NULL,
                    lease_expires_at = NULL
                FROM unnest($2::uuid[], $3::int4[]) AS r(id, attempt)
                WHERE j.id = r.id AND j.attempt = r.attempt AND j.locked_by = $1
                  AND j.state = 'running'
                RETURNING j.id, j.queue, j.kind, j.attempt
            ), ev AS (
                INSERT INTO events (type, job_id, queue, kind, state, attempt)
                SELECT 'job.released', id, queue, kind, 'available', attempt FROM r
            )
            SELECT count(*) FROM r
            "#,
        )
        .bind(worker.as_str())
        .bind(jobs.iter().map(|(id, _)| id.0).collect::<Vec<_>>())
        .bind(jobs.iter().map(|(_, attempt)| *attempt).collect::<Vec<_>>())
        .fetch_one(&self.lease_pool)
        .await
        .map_err(query("release"))?;
        Ok(released as u64)
    }

    pub(crate) async fn extend_leases(
        &self,
        held: &[HeldAttempt],
        lease: Duration,
        threshold: Duration,
    ) -> Result<Renewal, StoreError> {
        let row = sqlx::query::<Postgres>(EXTEND_LEASES)
            .bind(held.iter().map(|h| h.id.0).collect::<Vec<_>>())
            .bind(held.iter().map(|h| h.attempt).collect::<Vec<_>>())
            .bind(held.iter().map(|h| h.worker.as_str()).collect::<Vec<_>>())
            .bind(millis(lease))
            .bind(millis(threshold))
            .fetch_one(&self.lease_pool)
            .await
            .map_err(query("extend leases"))?;
        let extended: i64 = rows::get(&row, "extended")?;
        let ids: Vec<Uuid> = rows::get(&row, "lost_ids")?;
        let attempts: Vec<i32> = rows::get(&row, "lost_attempts")?;
        Ok(Renewal {
            extended: extended as u64,
            lost: ids.into_iter().map(JobId).zip(attempts).collect(),
        })
    }

    pub(crate) async fn cancel_requests(
        &self,
        workers: &[WorkerId],
    ) -> Result<Vec<JobId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar::<Postgres, Uuid>(
            "SELECT id FROM jobs WHERE state = 'running' AND locked_by = ANY($1) \
               AND cancel_requested_at IS NOT NULL",
        )
        .bind(workers.iter().map(WorkerId::as_str).collect::<Vec<_>>())
        .fetch_all(&self.lease_pool)
        .await
        .map_err(query("read cancel requests"))?;
        Ok(ids.into_iter().map(JobId).collect())
    }

    pub(crate) async fn rescue_expired(&self, limit: u32) -> Result<Vec<Rescued>, StoreError> {
        let rows = sqlx::query::<Postgres>(RESCUE)
            .bind(i64::from(limit))
            .fetch_all(&self.lease_pool)
            .await
            .map_err(query("rescue expired leases"))?;
        rows.iter()
            .map(|row| {
                Ok(Rescued {
                    id: rows::job_id(row, "id")?,
                    state: rows::state(row, "state")?,
                    worker: row.try_get("lost_by").ok(),
                })
            })
            .collect()
    }

    pub(crate) async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {} FROM jobs WHERE id = $1", rows::JOB_COLUMNS);
        let row = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(query("read job"))?;
        row.as_ref().map(rows::job).transpose()
    }

    pub(crate) async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query::<Postgres>(
            "SELECT attempt, worker, started_at, finished_at, outcome, error, error_chain \
             FROM job_attempts WHERE job_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(query("read attempts"))?;
        rows.iter().map(rows::attempt).collect()
    }

    pub(crate) async fn cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query("cancel"))?;
        let state = locked_state(&mut *tx, id).await?;
        let outcome = match state {
            s if s.is_pending() => {
                sqlx::query::<Postgres>(
                    r#"
                    WITH c AS (
                        UPDATE jobs SET state = 'cancelled', finished_at = now(),
                            unique_slot = CASE WHEN unique_scope = 'active' THEN NULL
                                               ELSE unique_slot END
                        WHERE id = $1 RETURNING id, queue, kind, attempt
                    )
                    INSERT INTO events (type, job_id, queue, kind, state, attempt)
                    SELECT 'job.cancelled', id, queue, kind, 'cancelled', attempt FROM c
                    "#,
                )
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(query("cancel"))?;
                CancelOutcome::Cancelled
            }
            JobState::Running => {
                sqlx::query::<Postgres>(
                    r#"
                    WITH c AS (
                        UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, now())
                        WHERE id = $1 RETURNING id, queue, kind, attempt
                    )
                    INSERT INTO events (type, job_id, queue, kind, state, attempt)
                    SELECT 'job.cancel_requested', id, queue, kind, 'running', attempt FROM c
                    "#,
                )
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(query("request cancel"))?;
                CancelOutcome::Requested
            }
            state => {
                return Err(StoreError::Conflict {
                    id,
                    state: state.to_string(),
                    reason: "a finished job cannot be cancelled",
                });
            }
        };
        tx.commit().await.map_err(query("cancel"))?;
        Ok(outcome)
    }

    pub(crate) async fn retry(&self, id: JobId) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query("retry"))?;
        let state = locked_state(&mut *tx, id).await?;
        if state == JobState::Running {
            return Err(StoreError::Conflict {
                id,
                state: state.to_string(),
                reason: "a running job cannot be retried; cancel it first",
            });
        }
        let sql = format!(
            r#"
            WITH r AS (
                UPDATE jobs
                SET state = 'available', run_at = now(), finished_at = NULL,
                    cancel_requested_at = NULL, max_attempts = GREATEST(max_attempts, attempt + 1),
                    unique_slot = COALESCE(unique_slot, unique_key)
                WHERE id = $1
                RETURNING {}
            ), ev AS (
                INSERT INTO events (type, job_id, queue, kind, state, attempt)
                SELECT 'job.retried', id, queue, kind, 'available', attempt FROM r
            )
            SELECT * FROM r
            "#,
            rows::JOB_COLUMNS
        );
        let row = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| unique_conflict(e, id, state, "retry"))?;
        let job = rows::job(&row)?;
        tx.commit().await.map_err(query("retry"))?;
        Ok(job)
    }

    pub(crate) async fn count_by_state(
        &self,
        queue: Option<&str>,
    ) -> Result<BTreeMap<JobState, i64>, StoreError> {
        let rows = sqlx::query::<Postgres>(
            "SELECT state, count(*) AS n FROM jobs WHERE ($1::text IS NULL OR queue = $1) \
             GROUP BY state",
        )
        .bind(queue)
        .fetch_all(&self.pool)
        .await
        .map_err(query("count jobs"))?;
        rows.iter()
            .map(|row| Ok((rows::state(row, "state")?, row.get::<i64, _>("n"))))
            .collect()
    }

    pub(crate) async fn prune(&self, limits: PruneLimits) -> Result<Pruned, StoreError> {
        let jobs = sqlx::query::<Postgres>(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
               WHERE (state IN ('completed', 'cancelled') AND finished_at < $1) \
                  OR (state = 'discarded' AND finished_at < $2) \
               LIMIT $3)",
        )
        .bind(limits.finished_before)
        .bind(limits.discarded_before)
        .bind(limits.batch)
        .execute(&self.pool)
        .await
        .map_err(query("prune jobs"))?
        .rows_affected();
        // The highest pruned id is kept: a stream resuming below it has lost events and is
        // told so (an in-band reset) instead of silently skipping them.
        let events: i64 = sqlx::query_scalar::<Postgres, i64>(
            r#"
            WITH d AS (
                DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < $1 LIMIT $2)
                RETURNING id
            ), mark AS (
                INSERT INTO settings (key, value)
                SELECT 'events_pruned_through', max(id)::text FROM d HAVING count(*) > 0
                ON CONFLICT (key) DO UPDATE
                SET value = GREATEST(settings.value::bigint, EXCLUDED.value::bigint)::text
            )
            SELECT count(*) FROM d
            "#,
        )
        .bind(limits.events_before)
        .bind(limits.batch)
        .fetch_one(&self.pool)
        .await
        .map_err(query("prune events"))?;
        let events = events as u64;
        Ok(Pruned { jobs, events })
    }
}

async fn locked_state<'c, E: PgExecutor<'c>>(
    executor: E,
    id: JobId,
) -> Result<JobState, StoreError> {
    let state: Option<String> =
        sqlx::query_scalar::<Postgres, String>("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id.0)
            .fetch_optional(executor)
            .await
            .map_err(query("lock job"))?;
    let state = state.ok_or(StoreError::JobNotFound(id))?;
    state
        .parse()
        .map_err(|e: crate::state::UnknownState| StoreError::Corrupt {
            what: "job state",
            detail: e.to_string(),
        })
}

/// Maps a unique violation to a conflict: another job holds the key.
pub(super) fn unique_conflict(
    error: sqlx::Error,
    id: JobId,
    state: JobState,
    op: &'static str,
) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            id,
            state: state.to_string(),
            reason: "another active job holds its unique key",
        },
        _ => StoreError::Query { op, source: error },
    }
}
