//! Leases on SQLite: renewing the attempts a process holds, handing back unstarted claims,
//! rescuing jobs whose lease ran out, and setting aside claimed rows that cannot be read.

use std::time::Duration;

use sqlx::{Sqlite, SqliteConnection};

use super::jobs::{hex, write_events};
use super::sql::events::{self, NewEvent};
use super::sql::rows;
use super::sql::{Fetch, Run};
use super::{SqliteStore, duration_us, now_us};
use crate::error::{StoreError, query};
use crate::event;
use crate::id::{JobId, WorkerId};
use crate::job::Lease;
use crate::store::{Renewal, Rescued};

const RECORD_LOST: &str = "
INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, error)
SELECT id, attempt, locked_by, COALESCE(attempted_at, ?1), ?1, 'lost',
       'lease expired: worker ' || COALESCE(locked_by, '?') || ' stopped renewing it'
FROM jobs WHERE state = 'running' AND lease_expires_at < ?1
ORDER BY lease_expires_at LIMIT ?2
RETURNING job_id, worker";

// run_at stays: a rescued job keeps its place in the queue instead of waiting behind the
// backlog that arrived while it ran.
const RESCUE: &str = "
UPDATE jobs SET
    state = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
                 WHEN attempt >= max_attempts THEN 'discarded' ELSE 'retryable' END,
    finished_at = CASE WHEN cancel_requested_at IS NOT NULL OR attempt >= max_attempts
                       THEN ?2 END,
    locked_by = NULL, lease_expires_at = NULL,
    last_error = 'lease expired: worker ' || COALESCE(locked_by, '?') || ' stopped renewing it',
    unique_slot = CASE WHEN (cancel_requested_at IS NOT NULL OR attempt >= max_attempts)
                            AND unique_scope = 'active' THEN NULL ELSE unique_slot END
WHERE id IN (SELECT unhex(value) FROM json_each(?1)) AND state = 'running'
RETURNING id, queue, state";

const RESCUE_EVENTS: &str = "
INSERT INTO events (at, type, job_id, queue, kind, state, attempt, data)
SELECT ?2, ?3, j.id, j.queue, j.kind, j.state, j.attempt,
       json_object('error', a.error, 'worker', a.worker)
FROM jobs j JOIN job_attempts a
  ON a.id = (SELECT max(id) FROM job_attempts WHERE job_id = j.id)
WHERE j.id IN (SELECT unhex(value) FROM json_each(?1)) ORDER BY j.id";

impl SqliteStore {
    pub(crate) async fn release(&self, leases: &[Lease]) -> Result<u64, StoreError> {
        let mut tx = self.write("release").await?;
        let released = sqlx::query::<Sqlite>(
            "UPDATE jobs SET state = 'available', attempt = attempt - 1, locked_by = NULL, \
                lease_expires_at = NULL \
             WHERE state = 'running' AND (id, attempt, locked_by) IN \
                (SELECT unhex(value->>'id'), value->>'attempt', value->>'worker' \
                 FROM jsonb_each($1)) \
             RETURNING id",
        )
        .bind(leases_json(leases))
        .all(&mut *tx, "release")
        .await?;
        let ids = released
            .iter()
            .map(|row| rows::job_id(row, "id").map(hex))
            .collect::<Result<Vec<_>, _>>()?;
        write_events(&mut tx, &ids, event::JOB_RELEASED, now_us()).await?;
        tx.commit().await.map_err(query("release"))?;
        Ok(ids.len() as u64)
    }

    pub(crate) async fn extend_leases(
        &self,
        held: &[Lease],
        lease: Duration,
        threshold: Duration,
    ) -> Result<Renewal, StoreError> {
        let now = now_us();
        let held = leases_json(held);
        let mut tx = self.write("extend leases").await?;
        let lost = sqlx::query::<Sqlite>(
            "SELECT unhex(h.value->>'id') AS id, h.value->>'attempt' AS attempt \
             FROM jsonb_each(?1) AS h \
             WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = unhex(h.value->>'id') \
                AND j.attempt = h.value->>'attempt' AND j.locked_by = h.value->>'worker' \
                AND j.state = 'running') \
             ORDER BY 1",
        )
        .bind(&held)
        .all(&mut *tx, "extend leases")
        .await?;
        let lost = lost
            .iter()
            .map(|row| Ok((rows::job_id(row, "id")?, rows::get::<i32>(row, "attempt")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let extended = sqlx::query::<Sqlite>(
            "UPDATE jobs SET lease_expires_at = ?2 \
             WHERE state = 'running' AND lease_expires_at < ?3 \
               AND (id, attempt, locked_by) IN (SELECT unhex(value->>'id'), value->>'attempt', \
                                                       value->>'worker' FROM jsonb_each(?1))",
        )
        .bind(&held)
        .bind(now.saturating_add(duration_us(lease)))
        .bind(now.saturating_add(duration_us(threshold)))
        .run(&mut *tx, "extend leases")
        .await?;
        tx.commit().await.map_err(query("extend leases"))?;
        Ok(Renewal { extended, lost })
    }

    pub(crate) async fn cancel_requests(
        &self,
        workers: &[WorkerId],
    ) -> Result<Vec<JobId>, StoreError> {
        let rows = sqlx::query::<Sqlite>(
            "SELECT id FROM jobs WHERE state = 'running' \
               AND locked_by IN (SELECT value FROM json_each(?)) \
               AND cancel_requested_at IS NOT NULL",
        )
        .bind(worker_list(workers))
        .all(&self.reader, "read cancel requests")
        .await?;
        rows.iter().map(|row| rows::job_id(row, "id")).collect()
    }

    /// Three statements for any number of jobs: the lost attempts are recorded first (the
    /// update clears who held them), then the jobs move, then their events are written.
    pub(crate) async fn rescue_expired(&self, limit: u32) -> Result<Vec<Rescued>, StoreError> {
        let now = now_us();
        let mut tx = self.write("rescue expired leases").await?;
        let lost = sqlx::query::<Sqlite>(RECORD_LOST)
            .bind(now)
            .bind(i64::from(limit))
            .all(&mut *tx, "rescue expired leases")
            .await?;
        let ids: Vec<String> = lost
            .iter()
            .map(|row| rows::job_id(row, "job_id").map(hex))
            .collect::<Result<_, _>>()?;
        let ids = serde_json::to_string(&ids).unwrap_or_default();
        let moved = sqlx::query::<Sqlite>(RESCUE)
            .bind(&ids)
            .bind(now)
            .all(&mut *tx, "rescue expired leases")
            .await?;
        sqlx::query::<Sqlite>(RESCUE_EVENTS)
            .bind(&ids)
            .bind(now)
            .bind(event::JOB_RESCUED)
            .run(&mut *tx, "rescue expired leases")
            .await?;
        tx.commit().await.map_err(query("rescue expired leases"))?;
        let mut workers = std::collections::HashMap::new();
        for row in &lost {
            workers.insert(rows::job_id(row, "job_id")?, rows::get(row, "worker")?);
        }
        moved
            .iter()
            .map(|row| {
                let id = rows::job_id(row, "id")?;
                Ok(Rescued {
                    id,
                    queue: rows::get(row, "queue")?,
                    state: rows::state(row, "state")?,
                    worker: workers.remove(&id).flatten(),
                })
            })
            .collect()
    }
}

/// Discards a claimed job whose row cannot be read, so one bad row never wedges a queue.
pub(super) async fn quarantine(
    conn: &mut SqliteConnection,
    id: JobId,
    error: &str,
    now: i64,
) -> Result<(), StoreError> {
    let row = sqlx::query::<Sqlite>(
        "UPDATE jobs SET state = 'discarded', finished_at = ?1, locked_by = NULL, \
            lease_expires_at = NULL, last_error = ?2, \
            unique_slot = CASE WHEN unique_scope = 'active' THEN NULL ELSE unique_slot END \
         WHERE id = ?3 RETURNING queue, kind, attempt",
    )
    .bind(now)
    .bind(error)
    .bind(id.0)
    .one(&mut *conn, "discard unreadable job")
    .await?;
    let attempt: i32 = rows::get(&row, "attempt")?;
    sqlx::query::<Sqlite>(
        "INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error) \
         VALUES (?, ?, ?, ?, 'discarded', ?)",
    )
    .bind(id.0)
    .bind(attempt)
    .bind(now)
    .bind(now)
    .bind(error)
    .run(&mut *conn, "discard unreadable job")
    .await?;
    let (queue, kind): (String, String) = (rows::get(&row, "queue")?, rows::get(&row, "kind")?);
    let event = NewEvent {
        event_type: event::JOB_DISCARDED,
        job_id: Some(id),
        queue: Some(&queue),
        kind: Some(&kind),
        state: Some("discarded"),
        attempt: Some(attempt),
        data: Some(serde_json::json!({ "error": error })),
    };
    events::write(conn, event).await
}

fn worker_list(workers: &[WorkerId]) -> String {
    serde_json::to_string(workers).unwrap_or_else(|_| "[]".to_owned())
}

/// Leases as the JSON array the statements read with `jsonb_each`.
fn leases_json(leases: &[Lease]) -> String {
    let leases: Vec<serde_json::Value> = leases
        .iter()
        .map(|l| {
            serde_json::json!({
                "id": hex(l.job), "attempt": l.attempt, "worker": l.worker.as_str(),
            })
        })
        .collect();
    serde_json::Value::Array(leases).to_string()
}
