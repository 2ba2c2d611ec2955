//! What operators read and change on Postgres: filtered job lists, edits, deletes, queue
//! statistics, workers, tokens, the audit log, idempotency keys, operations and settings.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::jobs::unique_conflict;
use super::{PgStore, rows};
use crate::admin::{
    AuditEntry, IdempotencyClaim, JobEdit, JobFilter, NewAudit, Operation, TokenRow, WorkerRow,
    check_editable, idempotency_answer,
};
use crate::error::{StoreError, query};
use crate::id::{JobId, WorkerId};
use crate::job::Job;
use crate::state::JobState;
use crate::store::QueueTotals;

/// Records an idempotent request's response in the caller's transaction. An upsert: the
/// key's claim may have been taken over or released meanwhile, and the response must be
/// stored with its jobs whatever happened to the claim.
pub(super) async fn record_idempotency_on<'c, E: sqlx::PgExecutor<'c>>(
    executor: E,
    keyed: &crate::store::KeyedResponse,
    status: u16,
    body: &str,
) -> Result<(), StoreError> {
    sqlx::query::<Postgres>(
        "INSERT INTO idempotency_keys (actor, key, request_hash, status, response) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (actor, key) DO UPDATE \
         SET request_hash = EXCLUDED.request_hash, status = EXCLUDED.status, \
             response = EXCLUDED.response",
    )
    .bind(&keyed.actor)
    .bind(&keyed.key)
    .bind(&keyed.request_hash)
    .bind(i32::from(status))
    .bind(body)
    .execute(executor)
    .await
    .map_err(query("record idempotent response"))?;
    Ok(())
}

fn push_filter(qb: &mut QueryBuilder<Postgres>, filter: &JobFilter) {
    qb.push(" WHERE true");
    if !filter.states.is_empty() {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        qb.push(" AND state = ANY(").push_bind(states).push(")");
    }
    if let Some(queue) = &filter.queue {
        qb.push(" AND queue = ").push_bind(queue.clone());
    }
    if let Some(kind) = &filter.kind {
        qb.push(" AND kind = ").push_bind(kind.clone());
    }
    if let Some(tag) = &filter.tag {
        qb.push(" AND tags @> jsonb_build_array(")
            .push_bind(tag.clone())
            .push("::text)");
    }
    if let Some(after) = filter.created_after {
        qb.push(" AND created_at >= ").push_bind(after);
    }
    if let Some(before) = filter.created_before {
        qb.push(" AND created_at < ").push_bind(before);
    }
    for m in &filter.args {
        qb.push(" AND args #>> ")
            .push_bind(m.path.clone())
            .push("::text[] = ")
            .push_bind(m.value.clone());
    }
    if !filter.ids.is_empty() {
        let ids: Vec<Uuid> = filter.ids.iter().map(|id| id.0).collect();
        qb.push(" AND id = ANY(").push_bind(ids).push(")");
    }
}

/// `columns` of the jobs matching `filter`, newest first, older than `before`.
fn newest_first(
    columns: &str,
    filter: &JobFilter,
    before: Option<JobId>,
    limit: u32,
) -> QueryBuilder<Postgres> {
    let mut qb = QueryBuilder::new(format!("SELECT {columns} FROM jobs"));
    push_filter(&mut qb, filter);
    if let Some(before) = before {
        qb.push(" AND id < ").push_bind(before.0);
    }
    qb.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit));
    qb
}

impl PgStore {
    pub(crate) async fn list_jobs(
        &self,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let mut qb = newest_first(rows::JOB_COLUMNS, filter, before, limit);
        let rows = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(query("list jobs"))?;
        rows.iter().map(rows::job).collect()
    }

    pub(crate) async fn job_ids(
        &self,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<JobId>, StoreError> {
        let mut qb = newest_first("id", filter, before, limit);
        let rows = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(query("list job ids"))?;
        rows.iter().map(|r| rows::job_id(r, "id")).collect()
    }

    pub(crate) async fn count_jobs(&self, filter: &JobFilter) -> Result<i64, StoreError> {
        let mut qb = QueryBuilder::<Postgres>::new("SELECT count(*) AS n FROM jobs");
        push_filter(&mut qb, filter);
        let row = qb
            .build()
            .fetch_one(&self.pool)
            .await
            .map_err(query("count jobs"))?;
        rows::get(&row, "n")
    }

    pub(crate) async fn delete_job(&self, id: JobId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(query("delete job"))?;
        let row = sqlx::query::<Postgres>(
            "SELECT state, queue, kind, attempt FROM jobs WHERE id = $1 FOR UPDATE",
        )
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query("delete job"))?
        .ok_or(StoreError::JobNotFound(id))?;
        let state = rows::state(&row, "state")?;
        if state == JobState::Running {
            return Err(StoreError::Conflict {
                id,
                state: state.to_string(),
                reason: "a running job cannot be deleted; cancel it first",
            });
        }
        sqlx::query::<Postgres>("DELETE FROM jobs WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(query("delete job"))?;
        sqlx::query::<Postgres>(
            "INSERT INTO events (type, job_id, queue, kind, state, attempt) \
             VALUES ('job.deleted', $1, $2, $3, $4, $5)",
        )
        .bind(id.0)
        .bind(rows::get::<String>(&row, "queue")?)
        .bind(rows::get::<String>(&row, "kind")?)
        .bind(state.as_str())
        .bind(rows::get::<i32>(&row, "attempt")?)
        .execute(&mut *tx)
        .await
        .map_err(query("delete job"))?;
        tx.commit().await.map_err(query("delete job"))
    }

    pub(crate) async fn edit_job(&self, id: JobId, edit: &JobEdit) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query("edit job"))?;
        let row =
            sqlx::query::<Postgres>("SELECT state, attempt FROM jobs WHERE id = $1 FOR UPDATE")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query("edit job"))?
                .ok_or(StoreError::JobNotFound(id))?;
        let state = rows::state(&row, "state")?;
        let attempt: i32 = rows::get(&row, "attempt")?;
        check_editable(id, state, attempt, edit)?;
        let sql = format!(
            r#"
            WITH u AS (
                UPDATE jobs SET
                    args = COALESCE($2, args),
                    priority = COALESCE($3, priority),
                    run_at = COALESCE($4, run_at),
                    state = CASE WHEN $4::timestamptz IS NULL THEN state
                                 WHEN $4 > now() AND state = 'available' THEN 'scheduled'
                                 WHEN $4 <= now() AND state = 'scheduled' THEN 'available'
                                 ELSE state END,
                    max_attempts = COALESCE($5, max_attempts),
                    tags = COALESCE($6, tags),
                    metadata = COALESCE($7, metadata)
                WHERE id = $1
                RETURNING {}
            ), ev AS (
                INSERT INTO events (type, job_id, queue, kind, state, attempt)
                SELECT 'job.updated', id, queue, kind, state, attempt FROM u
            )
            SELECT * FROM u
            "#,
            rows::JOB_COLUMNS
        );
        let row = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(edit.args.as_ref().map(Json))
            .bind(edit.priority)
            .bind(edit.run_at)
            .bind(edit.max_attempts)
            .bind(edit.tags.as_ref().map(Json))
            .bind(edit.metadata.as_ref().map(Json))
            .fetch_one(&mut *tx)
            .await
            .map_err(query("edit job"))?;
        let job = rows::job(&row)?;
        tx.commit().await.map_err(query("edit job"))?;
        Ok(job)
    }

    pub(crate) async fn promote_job(&self, id: JobId) -> Result<Job, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query("run job now"))?;
        let state: String = sqlx::query_scalar::<Postgres, String>(
            "SELECT state FROM jobs WHERE id = $1 FOR UPDATE",
        )
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query("run job now"))?
        .ok_or(StoreError::JobNotFound(id))?;
        let state: JobState =
            state
                .parse()
                .map_err(|e: crate::state::UnknownState| StoreError::Corrupt {
                    what: "job state",
                    detail: e.to_string(),
                })?;
        if !state.is_pending() {
            return Err(StoreError::Conflict {
                id,
                state: state.to_string(),
                reason: "only a waiting job can be made to run now; retry a finished one",
            });
        }
        let sql = format!(
            r#"
            WITH u AS (
                UPDATE jobs SET state = 'available', run_at = LEAST(run_at, now())
                WHERE id = $1 RETURNING {}
            ), ev AS (
                INSERT INTO events (type, job_id, queue, kind, state, attempt)
                SELECT 'job.promoted', id, queue, kind, 'available', attempt FROM u
            )
            SELECT * FROM u
            "#,
            rows::JOB_COLUMNS
        );
        let row = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| unique_conflict(e, id, state, "run job now"))?;
        let job = rows::job(&row)?;
        tx.commit().await.map_err(query("run job now"))?;
        Ok(job)
    }

    pub(crate) async fn queue_totals(&self) -> Result<QueueTotals, StoreError> {
        let mut totals = QueueTotals::default();
        let counts = sqlx::query::<Postgres>(
            "SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query("queue stats"))?;
        for row in &counts {
            let queue: String = rows::get(row, "queue")?;
            totals
                .counts
                .entry(queue)
                .or_default()
                .insert(rows::state(row, "state")?, rows::get(row, "n")?);
        }
        let settings = sqlx::query::<Postgres>("SELECT name, paused, concurrency FROM queues")
            .fetch_all(&self.pool)
            .await
            .map_err(query("queue stats"))?;
        for row in &settings {
            totals.settings.insert(
                rows::get(row, "name")?,
                (rows::get(row, "paused")?, rows::get(row, "concurrency")?),
            );
        }
        let oldest = sqlx::query::<Postgres>(
            "SELECT queue, EXTRACT(EPOCH FROM now() - min(run_at))::float8 AS age FROM jobs \
             WHERE state = 'available' GROUP BY queue",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query("queue stats"))?;
        for row in &oldest {
            totals
                .oldest_available_s
                .insert(rows::get(row, "queue")?, rows::get(row, "age")?);
        }
        let recent = sqlx::query::<Postgres>(
            "SELECT queue, count(*) AS n FROM jobs WHERE state = 'completed' \
               AND finished_at > now() - interval '1 minute' GROUP BY queue",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query("queue stats"))?;
        for row in &recent {
            totals
                .completed_last_minute
                .insert(rows::get(row, "queue")?, rows::get(row, "n")?);
        }
        let workers = sqlx::query::<Postgres>(
            "SELECT queue, count(*) AS n FROM workers WHERE stopped_at IS NULL \
               AND last_seen_at > now() - interval '1 minute' GROUP BY queue",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query("queue stats"))?;
        for row in &workers {
            totals
                .workers
                .insert(rows::get(row, "queue")?, rows::get(row, "n")?);
        }
        Ok(totals)
    }

    pub(crate) async fn set_queue_concurrency(
        &self,
        queue: &str,
        concurrency: Option<i32>,
    ) -> Result<(), StoreError> {
        sqlx::query::<Postgres>(
            r#"
            WITH q AS (
                INSERT INTO queues (name, concurrency, updated_at) VALUES ($1, $2, now())
                ON CONFLICT (name) DO UPDATE SET concurrency = $2, updated_at = now()
                RETURNING name
            )
            INSERT INTO events (type, queue, data)
            SELECT 'queue.updated', name, jsonb_build_object('concurrency', $2::int) FROM q
            "#,
        )
        .bind(queue)
        .bind(concurrency)
        .execute(&self.pool)
        .await
        .map_err(query("set queue concurrency"))?;
        Ok(())
    }

    pub(crate) async fn workers(
        &self,
        live_since: DateTime<Utc>,
    ) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = sqlx::query::<Postgres>(
            "SELECT w.id, w.queue, w.host, w.pid, w.concurrency, w.kinds, w.started_at, \
                    w.last_seen_at, w.stopped_at, \
                    (SELECT count(*) FROM jobs j WHERE j.state = 'running' AND j.locked_by = w.id) \
                        AS running \
             FROM workers w WHERE w.last_seen_at >= $1 ORDER BY w.started_at, w.id",
        )
        .bind(live_since)
        .fetch_all(&self.pool)
        .await
        .map_err(query("list workers"))?;
        rows.iter().map(worker_row).collect()
    }

    pub(crate) async fn create_token(
        &self,
        token: &TokenRow,
        hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query::<Postgres>(
            "INSERT INTO api_tokens (id, name, prefix, hash, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.id)
        .bind(&token.name)
        .bind(&token.prefix)
        .bind(hash)
        .bind(Json(&token.scopes))
        .bind(token.created_at)
        .execute(&self.pool)
        .await
        .map_err(query("create token"))?;
        Ok(())
    }

    pub(crate) async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1"
        )))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(query("read token"))?;
        row.as_ref().map(token_row).transpose()
    }

    pub(crate) async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(query("list tokens"))?;
        rows.iter().map(token_row).collect()
    }

    pub(crate) async fn active_tokens(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Postgres, i64>(
            "SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(query("count tokens"))
    }

    pub(crate) async fn revoke_token(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query::<Postgres>(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query("revoke token"))?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn touch_token(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query::<Postgres>("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.lease_pool)
            .await
            .map_err(query("touch token"))?;
        Ok(())
    }

    pub(crate) async fn write_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        sqlx::query::<Postgres>(
            "INSERT INTO audit_log (actor, action, targets, detail, request_id) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(Json(&entry.targets))
        .bind(entry.detail.as_ref().map(Json))
        .bind(entry.request_id.as_deref())
        .execute(&self.pool)
        .await
        .map_err(query("write audit"))?;
        Ok(())
    }

    pub(crate) async fn audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query::<Postgres>(
            "SELECT id, at, actor, action, targets, detail, request_id FROM audit_log \
             WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query("read audit"))?;
        rows.iter()
            .map(|row| {
                let Json(targets): Json<Vec<String>> = rows::get(row, "targets")?;
                let detail: Option<Json<serde_json::Value>> = rows::get(row, "detail")?;
                Ok(AuditEntry {
                    id: rows::get(row, "id")?,
                    at: rows::time(row, "at")?,
                    actor: rows::get(row, "actor")?,
                    action: rows::get(row, "action")?,
                    targets,
                    detail: detail.map(|d| d.0),
                    request_id: rows::get(row, "request_id")?,
                })
            })
            .collect()
    }

    pub(crate) async fn claim_idempotency(
        &self,
        actor: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<IdempotencyClaim, StoreError> {
        // A key still unanswered after a minute belongs to a request whose process died:
        // the retry takes it over instead of meeting 409 until the key expires.
        let inserted = sqlx::query::<Postgres>(
            "INSERT INTO idempotency_keys (actor, key, request_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (actor, key) DO UPDATE \
                SET request_hash = EXCLUDED.request_hash, created_at = now() \
                WHERE idempotency_keys.status IS NULL \
                  AND idempotency_keys.created_at < now() - interval '1 minute'",
        )
        .bind(actor)
        .bind(key)
        .bind(request_hash)
        .execute(&self.pool)
        .await
        .map_err(query("claim idempotency key"))?;
        if inserted.rows_affected() == 1 {
            return Ok(IdempotencyClaim::Fresh);
        }
        let row = sqlx::query::<Postgres>(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE actor = $1 AND key = $2",
        )
        .bind(actor)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(query("read idempotency key"))?;
        let Some(row) = row else {
            // Released between the two statements: the caller may try again.
            return Ok(IdempotencyClaim::InFlight);
        };
        let hash: String = rows::get(&row, "request_hash")?;
        let status: Option<i32> = rows::get(&row, "status")?;
        let body: Option<String> = rows::get(&row, "response")?;
        Ok(idempotency_answer(&hash, request_hash, status, body))
    }

    pub(crate) async fn finish_idempotency(
        &self,
        actor: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        sqlx::query::<Postgres>(
            "UPDATE idempotency_keys SET status = $3, response = $4 WHERE actor = $1 AND key = $2",
        )
        .bind(actor)
        .bind(key)
        .bind(i32::from(status))
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(query("record idempotent response"))?;
        Ok(())
    }

    pub(crate) async fn release_idempotency(
        &self,
        actor: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        sqlx::query::<Postgres>(
            "DELETE FROM idempotency_keys WHERE actor = $1 AND key = $2 AND status IS NULL",
        )
        .bind(actor)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(query("release idempotency key"))?;
        Ok(())
    }

    pub(crate) async fn prune_control(
        &self,
        idempotency_before: DateTime<Utc>,
        audit_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let keys = sqlx::query::<Postgres>("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(idempotency_before)
            .execute(&self.pool)
            .await
            .map_err(query("prune idempotency keys"))?
            .rows_affected();
        let audit = sqlx::query::<Postgres>("DELETE FROM audit_log WHERE at < $1")
            .bind(audit_before)
            .execute(&self.pool)
            .await
            .map_err(query("prune audit log"))?
            .rows_affected();
        Ok(keys + audit)
    }

    pub(crate) async fn create_operation(&self, op: &Operation) -> Result<(), StoreError> {
        sqlx::query::<Postgres>(
            "INSERT INTO operations (id, action, selector, state, total, actor, created_at, \
                owner, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())",
        )
        .bind(op.id)
        .bind(op.action.as_str())
        .bind(Json(&op.filter))
        .bind(&op.state)
        .bind(op.total)
        .bind(&op.actor)
        .bind(op.created_at)
        .bind(op.owner.as_deref())
        .execute(&self.pool)
        .await
        .map_err(query("create operation"))?;
        Ok(())
    }

    pub(crate) async fn update_operation(&self, op: &Operation) -> Result<bool, StoreError> {
        let updated = sqlx::query::<Postgres>(
            "UPDATE operations SET state = $2, total = $3, done = $4, skipped = $5, \
                finished_at = $6, error = $7, resume_before = $8, heartbeat_at = now() \
             WHERE id = $1 AND owner IS NOT DISTINCT FROM $9",
        )
        .bind(op.id)
        .bind(&op.state)
        .bind(op.total)
        .bind(op.done)
        .bind(op.skipped)
        .bind(op.finished_at)
        .bind(op.error.as_deref())
        .bind(op.resume_before.map(|id| id.0))
        .bind(op.owner.as_deref())
        .execute(&self.pool)
        .await
        .map_err(query("update operation"))?;
        Ok(updated.rows_affected() == 1)
    }

    pub(crate) async fn touch_operation(&self, id: Uuid, owner: &str) -> Result<bool, StoreError> {
        let touched = sqlx::query::<Postgres>(
            "UPDATE operations SET heartbeat_at = now() \
             WHERE id = $1 AND owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(query("renew operation"))?;
        Ok(touched.rows_affected() == 1)
    }

    pub(crate) async fn take_over_operations(
        &self,
        owner: &str,
        stale: Duration,
    ) -> Result<Vec<Operation>, StoreError> {
        let rows = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(format!(
            "UPDATE operations SET owner = $1, heartbeat_at = now() \
             WHERE id IN (SELECT id FROM operations WHERE state = 'running' \
                AND (heartbeat_at IS NULL OR heartbeat_at < now() - $2 * interval '1 millisecond') \
                FOR UPDATE SKIP LOCKED) \
             RETURNING {OPERATION_COLUMNS}"
        )))
        .bind(owner)
        .bind(crate::store::millis(stale))
        .fetch_all(&self.pool)
        .await
        .map_err(query("take over operations"))?;
        rows.iter().map(operation_row).collect()
    }

    pub(crate) async fn operation(&self, id: Uuid) -> Result<Option<Operation>, StoreError> {
        let row = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(format!(
            "SELECT {OPERATION_COLUMNS} FROM operations WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query("read operation"))?;
        row.as_ref().map(operation_row).transpose()
    }

    pub(crate) async fn operations(&self, limit: u32) -> Result<Vec<Operation>, StoreError> {
        let rows = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(format!(
            "SELECT {OPERATION_COLUMNS} FROM operations ORDER BY created_at DESC, id LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query("list operations"))?;
        rows.iter().map(operation_row).collect()
    }

    pub(crate) async fn setting_or_insert(
        &self,
        key: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        sqlx::query_scalar::<Postgres, String>(
            "WITH i AS (INSERT INTO settings (key, value) VALUES ($1, $2) \
                        ON CONFLICT (key) DO NOTHING RETURNING value) \
             SELECT value FROM i UNION ALL SELECT value FROM settings WHERE key = $1 LIMIT 1",
        )
        .bind(key)
        .bind(value)
        .fetch_one(&self.pool)
        .await
        .map_err(query("read setting"))
    }

    pub(crate) async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar::<Postgres, String>("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(query("read setting"))
    }

    /// Every event below this id is committed: none can appear there later.
    pub(crate) async fn event_horizon(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Postgres, i64>(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(query("event horizon"))
    }

    pub(crate) async fn job_progress(
        &self,
        id: JobId,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let progress: Option<Option<Json<serde_json::Value>>> =
            sqlx::query_scalar::<Postgres, Option<Json<serde_json::Value>>>(
                "SELECT progress FROM jobs WHERE id = $1",
            )
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(query("read progress"))?;
        Ok(progress.flatten().map(|p| p.0))
    }

    pub(crate) async fn save_progress(
        &self,
        id: JobId,
        attempt: i32,
        worker: &WorkerId,
        progress: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        save_progress_on(&self.pool, id, attempt, worker, progress).await
    }

    pub(crate) async fn oldest_event(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar::<Postgres, Option<i64>>("SELECT min(id) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(query("oldest event"))
    }
}

const TOKEN_COLUMNS: &str = "id, name, prefix, scopes, created_at, last_used_at, revoked_at";
const OPERATION_COLUMNS: &str = "id, action, selector, state, total, done, skipped, actor, \
    created_at, finished_at, error, owner, resume_before";

fn token_row(row: &PgRow) -> Result<TokenRow, StoreError> {
    let Json(scopes) = rows::get(row, "scopes")?;
    Ok(TokenRow {
        id: rows::get(row, "id")?,
        name: rows::get(row, "name")?,
        prefix: rows::get(row, "prefix")?,
        scopes,
        created_at: rows::time(row, "created_at")?,
        last_used_at: rows::opt_time(row, "last_used_at")?,
        revoked_at: rows::opt_time(row, "revoked_at")?,
    })
}

fn operation_row(row: &PgRow) -> Result<Operation, StoreError> {
    let Json(filter) = rows::get(row, "selector")?;
    let action: String = rows::get(row, "action")?;
    Ok(Operation {
        id: rows::get(row, "id")?,
        action: serde_json::from_value(serde_json::Value::String(action)).map_err(|e| {
            StoreError::Corrupt {
                what: "operation action",
                detail: e.to_string(),
            }
        })?,
        filter,
        state: rows::get(row, "state")?,
        total: rows::get(row, "total")?,
        done: rows::get(row, "done")?,
        skipped: rows::get(row, "skipped")?,
        actor: rows::get(row, "actor")?,
        created_at: rows::time(row, "created_at")?,
        finished_at: rows::opt_time(row, "finished_at")?,
        error: rows::get(row, "error")?,
        owner: rows::get(row, "owner")?,
        resume_before: rows::get::<Option<Uuid>>(row, "resume_before")?.map(JobId),
    })
}

fn worker_row(row: &PgRow) -> Result<WorkerRow, StoreError> {
    let Json(kinds) = rows::get(row, "kinds")?;
    Ok(WorkerRow {
        id: rows::get(row, "id")?,
        queue: rows::get(row, "queue")?,
        host: rows::get(row, "host")?,
        pid: rows::get(row, "pid")?,
        concurrency: rows::get(row, "concurrency")?,
        kinds,
        started_at: rows::time(row, "started_at")?,
        last_seen_at: rows::time(row, "last_seen_at")?,
        stopped_at: rows::opt_time(row, "stopped_at")?,
        running: rows::get(row, "running")?,
    })
}

/// Stores a running job's progress on `conn` (a transaction of the caller's, or the pool),
/// if `worker` still holds attempt `attempt`; false when it does not.
pub(super) async fn save_progress_on(
    conn: impl sqlx::PgExecutor<'_>,
    id: JobId,
    attempt: i32,
    worker: &WorkerId,
    progress: &serde_json::Value,
) -> Result<bool, StoreError> {
    let done = sqlx::query::<Postgres>(
        "UPDATE jobs SET progress = $4 WHERE id = $1 AND attempt = $2 AND locked_by = $3 \
           AND state = 'running'",
    )
    .bind(id.0)
    .bind(attempt)
    .bind(worker.as_str())
    .bind(Json(progress))
    .execute(conn)
    .await
    .map_err(query("save progress"))?;
    Ok(done.rows_affected() == 1)
}
