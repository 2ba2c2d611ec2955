//! The `jobs` table on SQLite: claims, rescues and the operator's moves. Inserts and outcomes,
//! the hot batches, are in `batch`.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::{Row, Sqlite, SqliteConnection};

use super::events::{self, NewEvent};
use super::{SqliteStore, duration_us, micros, now_us, rows};
use crate::error::{StoreError, query};
use crate::event;
use crate::id::{JobId, WorkerId};
use crate::job::{Attempt, ClaimedJob, Job};
use crate::state::JobState;
use crate::store::{CancelOutcome, HeldAttempt, PruneLimits, Pruned, Renewal, Rescued};

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
                SELECT id FROM jobs \
                WHERE queue = ?4 AND state IN ('available', 'scheduled', 'retryable') \
                  AND run_at <= ?1 \
                  AND NOT EXISTS (SELECT 1 FROM queues WHERE name = ?4 AND paused) \
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
        .fetch_all(&mut *tx)
        .await
        .map_err(query("claim"))?;
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

    pub(crate) async fn release(
        &self,
        worker: &WorkerId,
        jobs: &[(JobId, i32)],
    ) -> Result<u64, StoreError> {
        let mut tx = self.write("release").await?;
        let mut released = 0;
        for (id, attempt) in jobs {
            let row = sqlx::query::<Sqlite>(
                "UPDATE jobs SET state = 'available', attempt = attempt - 1, locked_by = NULL, \
                    lease_expires_at = NULL \
                 WHERE id = ? AND attempt = ? AND locked_by = ? AND state = 'running' \
                 RETURNING queue, kind, attempt",
            )
            .bind(id.0)
            .bind(attempt)
            .bind(worker.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query("release"))?;
            if let Some(row) = row {
                let (queue, kind): (String, String) = (row.get("queue"), row.get("kind"));
                let event = NewEvent {
                    event_type: event::JOB_RELEASED,
                    job_id: Some(*id),
                    queue: Some(&queue),
                    kind: Some(&kind),
                    state: Some("available"),
                    attempt: Some(row.get("attempt")),
                    data: None,
                };
                events::write(&mut tx, event).await?;
                released += 1;
            }
        }
        tx.commit().await.map_err(query("release"))?;
        Ok(released)
    }

    pub(crate) async fn extend_leases(
        &self,
        held: &[HeldAttempt],
        lease: Duration,
        threshold: Duration,
    ) -> Result<Renewal, StoreError> {
        let now = now_us();
        let held: Vec<serde_json::Value> = held
            .iter()
            .map(|h| {
                serde_json::json!({
                    "id": h.id.0.simple().to_string(), "attempt": h.attempt,
                    "worker": h.worker.as_str(),
                })
            })
            .collect();
        let held = serde_json::Value::Array(held).to_string();
        let mut tx = self.write("extend leases").await?;
        let lost = sqlx::query::<Sqlite>(
            "SELECT unhex(h.value->>'id') AS id, h.value->>'attempt' AS attempt \
             FROM json_each(?1) AS h \
             WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = unhex(h.value->>'id') \
                AND j.attempt = h.value->>'attempt' AND j.locked_by = h.value->>'worker' \
                AND j.state = 'running') \
             ORDER BY 1",
        )
        .bind(&held)
        .fetch_all(&mut *tx)
        .await
        .map_err(query("extend leases"))?;
        let lost = lost
            .iter()
            .map(|row| Ok((rows::job_id(row, "id")?, rows::get::<i32>(row, "attempt")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let extended = sqlx::query::<Sqlite>(
            "UPDATE jobs SET lease_expires_at = ?2 \
             WHERE state = 'running' AND lease_expires_at < ?3 \
               AND (id, attempt, locked_by) IN (SELECT unhex(value->>'id'), value->>'attempt', \
                                                       value->>'worker' FROM json_each(?1))",
        )
        .bind(&held)
        .bind(now.saturating_add(duration_us(lease)))
        .bind(now.saturating_add(duration_us(threshold)))
        .execute(&mut *tx)
        .await
        .map_err(query("extend leases"))?
        .rows_affected();
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
        .fetch_all(&self.reader)
        .await
        .map_err(query("read cancel requests"))?;
        rows.iter().map(|row| rows::job_id(row, "id")).collect()
    }

    pub(crate) async fn rescue_expired(&self, limit: u32) -> Result<Vec<Rescued>, StoreError> {
        let now = now_us();
        let mut tx = self.write("rescue expired leases").await?;
        let expired = sqlx::query::<Sqlite>(
            "SELECT id, locked_by FROM jobs WHERE state = 'running' AND lease_expires_at < ? \
             ORDER BY lease_expires_at LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(query("rescue expired leases"))?;
        let mut rescued = Vec::with_capacity(expired.len());
        for row in &expired {
            let id = rows::job_id(row, "id")?;
            let worker: Option<String> = rows::get(row, "locked_by")?;
            let state = rescue_one(&mut tx, id, worker.as_deref(), now).await?;
            rescued.push(Rescued { id, state, worker });
        }
        tx.commit().await.map_err(query("rescue expired leases"))?;
        Ok(rescued)
    }

    pub(crate) async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {} FROM jobs WHERE id = ?", rows::JOB_COLUMNS);
        let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(query("read job"))?;
        row.as_ref().map(rows::job).transpose()
    }

    pub(crate) async fn attempts(&self, id: JobId) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query::<Sqlite>(
            "SELECT attempt, worker, started_at, finished_at, outcome, error, error_chain \
             FROM job_attempts WHERE job_id = ? ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.reader)
        .await
        .map_err(query("read attempts"))?;
        rows.iter().map(rows::attempt).collect()
    }

    pub(crate) async fn cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError> {
        let now = now_us();
        let mut tx = self.write("cancel").await?;
        let job = current(&mut tx, id).await?;
        let (sql, outcome, event_type, state) = match job.state {
            s if s.is_pending() => (
                "UPDATE jobs SET state = 'cancelled', finished_at = ?, unique_slot = \
                   CASE WHEN unique_scope = 'active' THEN NULL ELSE unique_slot END WHERE id = ?",
                CancelOutcome::Cancelled,
                event::JOB_CANCELLED,
                "cancelled",
            ),
            JobState::Running => (
                "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?) WHERE id = ?",
                CancelOutcome::Requested,
                event::JOB_CANCEL_REQUESTED,
                "running",
            ),
            state => {
                return Err(StoreError::Conflict {
                    id,
                    state: state.to_string(),
                    reason: "a finished job cannot be cancelled",
                });
            }
        };
        sqlx::query::<Sqlite>(sql)
            .bind(now)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(query("cancel"))?;
        events::write(&mut tx, job_event(&job, event_type, state, None)).await?;
        tx.commit().await.map_err(query("cancel"))?;
        Ok(outcome)
    }

    pub(crate) async fn retry(&self, id: JobId) -> Result<Job, StoreError> {
        let mut tx = self.write("retry").await?;
        let job = current(&mut tx, id).await?;
        if job.state == JobState::Running {
            return Err(StoreError::Conflict {
                id,
                state: job.state.to_string(),
                reason: "a running job cannot be retried; cancel it first",
            });
        }
        let sql = format!(
            "UPDATE jobs SET state = 'available', run_at = ?, finished_at = NULL, \
                cancel_requested_at = NULL, max_attempts = MAX(max_attempts, attempt + 1), \
                unique_slot = COALESCE(unique_slot, unique_key) \
             WHERE id = ? RETURNING {}",
            rows::JOB_COLUMNS
        );
        let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql))
            .bind(now_us())
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| unique_conflict(e, id, job.state))?;
        let retried = rows::job(&row)?;
        events::write(
            &mut tx,
            job_event(&retried, event::JOB_RETRIED, "available", None),
        )
        .await?;
        tx.commit().await.map_err(query("retry"))?;
        Ok(retried)
    }

    pub(crate) async fn count_by_state(
        &self,
        queue: Option<&str>,
    ) -> Result<BTreeMap<JobState, i64>, StoreError> {
        let rows = sqlx::query::<Sqlite>(
            "SELECT state, count(*) AS n FROM jobs WHERE (?1 IS NULL OR queue = ?1) GROUP BY state",
        )
        .bind(queue)
        .fetch_all(&self.reader)
        .await
        .map_err(query("count jobs"))?;
        rows.iter()
            .map(|row| Ok((rows::state(row, "state")?, rows::get::<i64>(row, "n")?)))
            .collect()
    }

    pub(crate) async fn prune(&self, limits: PruneLimits) -> Result<Pruned, StoreError> {
        let jobs = sqlx::query::<Sqlite>(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
               WHERE (state IN ('completed', 'cancelled') AND finished_at < ?) \
                  OR (state = 'discarded' AND finished_at < ?) \
               LIMIT ?)",
        )
        .bind(micros(limits.finished_before))
        .bind(micros(limits.discarded_before))
        .bind(limits.batch)
        .execute(&self.writer)
        .await
        .map_err(query("prune jobs"))?
        .rows_affected();
        let mut tx = self.write("prune events").await?;
        let last: Option<i64> = sqlx::query_scalar::<Sqlite, Option<i64>>(
            "SELECT max(id) FROM (SELECT id FROM events WHERE at < ? ORDER BY id LIMIT ?)",
        )
        .bind(micros(limits.events_before))
        .bind(limits.batch)
        .fetch_one(&mut *tx)
        .await
        .map_err(query("prune events"))?;
        let mut events = 0;
        if let Some(last) = last {
            events = sqlx::query::<Sqlite>("DELETE FROM events WHERE id <= ? AND at < ?")
                .bind(last)
                .bind(micros(limits.events_before))
                .execute(&mut *tx)
                .await
                .map_err(query("prune events"))?
                .rows_affected();
            // Kept so that a stream resuming below it is told it lost events.
            sqlx::query::<Sqlite>(
                "INSERT INTO settings (key, value) VALUES ('events_pruned_through', ?1) \
                 ON CONFLICT (key) DO UPDATE \
                 SET value = max(CAST(value AS INTEGER), CAST(?1 AS INTEGER))",
            )
            .bind(last.to_string())
            .execute(&mut *tx)
            .await
            .map_err(query("prune events"))?;
        }
        tx.commit().await.map_err(query("prune events"))?;
        Ok(Pruned { jobs, events })
    }
}

/// Discards a claimed job whose row cannot be read, so one bad row never wedges a queue.
async fn quarantine(
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
    .fetch_one(&mut *conn)
    .await
    .map_err(query("discard unreadable job"))?;
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
    .execute(&mut *conn)
    .await
    .map_err(query("discard unreadable job"))?;
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

async fn rescue_one(
    conn: &mut SqliteConnection,
    id: JobId,
    worker: Option<&str>,
    now: i64,
) -> Result<JobState, StoreError> {
    let error = format!(
        "lease expired: worker {} stopped renewing it",
        worker.unwrap_or("?")
    );
    let row = sqlx::query::<Sqlite>(
        "UPDATE jobs SET \
            state = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled' \
                         WHEN attempt >= max_attempts THEN 'discarded' ELSE 'retryable' END, \
            finished_at = CASE WHEN cancel_requested_at IS NOT NULL OR attempt >= max_attempts \
                               THEN ?1 END, \
            locked_by = NULL, lease_expires_at = NULL, last_error = ?2, \
            unique_slot = CASE WHEN (cancel_requested_at IS NOT NULL OR attempt >= max_attempts) \
                                    AND unique_scope = 'active' THEN NULL ELSE unique_slot END \
         WHERE id = ?3 AND state = 'running' \
         RETURNING queue, kind, state, attempt, attempted_at",
    )
    .bind(now)
    .bind(&error)
    .bind(id.0)
    .fetch_one(&mut *conn)
    .await
    .map_err(query("rescue expired leases"))?;
    let state = rows::state(&row, "state")?;
    let attempt: i32 = row.get("attempt");
    let started: Option<i64> = row.get("attempted_at");
    sqlx::query::<Sqlite>(
        "INSERT INTO job_attempts (job_id, attempt, worker, started_at, finished_at, outcome, \
            error) VALUES (?, ?, ?, ?, ?, 'lost', ?)",
    )
    .bind(id.0)
    .bind(attempt)
    .bind(worker)
    .bind(started.unwrap_or(now))
    .bind(now)
    .bind(&error)
    .execute(&mut *conn)
    .await
    .map_err(query("record attempt"))?;
    let (queue, kind): (String, String) = (row.get("queue"), row.get("kind"));
    let event = NewEvent {
        event_type: event::JOB_RESCUED,
        job_id: Some(id),
        queue: Some(&queue),
        kind: Some(&kind),
        state: Some(state.as_str()),
        attempt: Some(attempt),
        data: Some(serde_json::json!({ "error": error, "worker": worker })),
    };
    events::write(conn, event).await?;
    Ok(state)
}

pub(super) async fn current(conn: &mut SqliteConnection, id: JobId) -> Result<Job, StoreError> {
    let sql = format!("SELECT {} FROM jobs WHERE id = ?", rows::JOB_COLUMNS);
    let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(query("read job"))?;
    row.as_ref()
        .map(rows::job)
        .transpose()?
        .ok_or(StoreError::JobNotFound(id))
}

pub(super) fn job_event<'a>(
    job: &'a Job,
    event_type: &'a str,
    state: &'a str,
    data: Option<serde_json::Value>,
) -> NewEvent<'a> {
    NewEvent {
        event_type,
        job_id: Some(job.id),
        queue: Some(&job.queue),
        kind: Some(&job.kind),
        state: Some(state),
        attempt: Some(job.attempt),
        data,
    }
}

fn worker_list(workers: &[WorkerId]) -> String {
    serde_json::to_string(workers).unwrap_or_else(|_| "[]".to_owned())
}

pub(super) fn unique_conflict(error: sqlx::Error, id: JobId, state: JobState) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            id,
            state: state.to_string(),
            reason: "another active job holds its unique key",
        },
        _ => StoreError::Query {
            op: "retry",
            source: error,
        },
    }
}
