//! Leases on Postgres: renewing the attempts a process holds, handing back unstarted
//! claims, and rescuing jobs whose lease ran out. They run on the lease pool (asynchronous
//! commits, see `pg::PgStore`).

use std::time::Duration;

use sqlx::{Postgres, Row};
use uuid::Uuid;

use super::sql::Fetch;
use super::sql::rows;
use super::{PgStore, column};
use crate::error::StoreError;
use crate::event;
use crate::id::{JobId, WorkerId};
use crate::job::Lease;
use crate::store::{Renewal, Rescued, millis};

/// Renews the held attempts that still hold their job; `lost` reads the snapshot from before
/// the update, which is the same for this purpose: renewing does not change who holds.
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
    SELECT $2, id, queue, kind, state, attempt,
           jsonb_build_object('error', last_error, 'worker', lost_by)
    FROM r
)
SELECT id, queue, state, lost_by FROM r
"#;

impl PgStore {
    pub(crate) async fn release(&self, leases: &[Lease]) -> Result<u64, StoreError> {
        let released: i64 = sqlx::query_scalar::<Postgres, i64>(
            r#"
            WITH r AS (
                UPDATE jobs j
                SET state = 'available', attempt = j.attempt - 1, locked_by = NULL,
                    lease_expires_at = NULL
                FROM unnest($1::uuid[], $2::int4[], $3::text[]) AS r(id, attempt, worker)
                WHERE j.id = r.id AND j.attempt = r.attempt AND j.locked_by = r.worker
                  AND j.state = 'running'
                RETURNING j.id, j.queue, j.kind, j.attempt
            ), ev AS (
                INSERT INTO events (type, job_id, queue, kind, state, attempt)
                SELECT $4, id, queue, kind, 'available', attempt FROM r
            )
            SELECT count(*) FROM r
            "#,
        )
        .bind(column(leases, |l| l.job.0))
        .bind(column(leases, |l| l.attempt))
        .bind(column(leases, |l| l.worker.as_str()))
        .bind(event::JOB_RELEASED)
        .one(&self.lease_pool, "release")
        .await?;
        Ok(released as u64)
    }

    pub(crate) async fn extend_leases(
        &self,
        held: &[Lease],
        lease: Duration,
        threshold: Duration,
    ) -> Result<Renewal, StoreError> {
        let row = sqlx::query::<Postgres>(EXTEND_LEASES)
            .bind(column(held, |h| h.job.0))
            .bind(column(held, |h| h.attempt))
            .bind(column(held, |h| h.worker.as_str()))
            .bind(millis(lease))
            .bind(millis(threshold))
            .one(&self.lease_pool, "extend leases")
            .await?;
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
        .all(&self.lease_pool, "read cancel requests")
        .await?;
        Ok(ids.into_iter().map(JobId).collect())
    }

    pub(crate) async fn rescue_expired(&self, limit: u32) -> Result<Vec<Rescued>, StoreError> {
        let rows = sqlx::query::<Postgres>(RESCUE)
            .bind(i64::from(limit))
            .bind(event::JOB_RESCUED)
            .all(&self.lease_pool, "rescue expired leases")
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Rescued {
                    id: rows::job_id(row, "id")?,
                    queue: rows::get(row, "queue")?,
                    state: rows::state(row, "state")?,
                    worker: row.try_get("lost_by").ok(),
                })
            })
            .collect()
    }
}
