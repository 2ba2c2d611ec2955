//! What operators read and change on SQLite: filtered job lists, edits, deletes, queue
//! statistics, workers, tokens, the audit log, idempotency keys, operations and settings.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use super::events;
use super::jobs::{current, job_event, unique_conflict};
use super::{SqliteStore, micros, now_us, rows};
use crate::admin::{
    AuditEntry, IdempotencyClaim, JobEdit, JobFilter, NewAudit, Operation, TokenRow, WorkerRow,
    check_editable, idempotency_answer,
};
use crate::error::{StoreError, query};
use crate::event;
use crate::id::{JobId, WorkerId};
use crate::job::Job;
use crate::state::JobState;
use crate::store::QueueTotals;

fn push_filter(qb: &mut QueryBuilder<Sqlite>, filter: &JobFilter) {
    qb.push(" WHERE 1");
    if !filter.states.is_empty() {
        qb.push(" AND state IN (");
        let mut list = qb.separated(", ");
        for state in &filter.states {
            list.push_bind(state.as_str());
        }
        qb.push(")");
    }
    if let Some(queue) = &filter.queue {
        qb.push(" AND queue = ").push_bind(queue.clone());
    }
    if let Some(kind) = &filter.kind {
        qb.push(" AND kind = ").push_bind(kind.clone());
    }
    if let Some(tag) = &filter.tag {
        qb.push(" AND EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE value = ")
            .push_bind(tag.clone())
            .push(")");
    }
    if let Some(after) = filter.created_after {
        qb.push(" AND created_at >= ").push_bind(micros(after));
    }
    if let Some(before) = filter.created_before {
        qb.push(" AND created_at < ").push_bind(micros(before));
    }
    for m in &filter.args {
        // The scalar as text, spelled as Postgres' `#>>` spells it.
        let path = m.json_path();
        qb.push(" AND (CASE json_type(args, ")
            .push_bind(path.clone())
            .push(
                ") WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(json_extract(args, ",
            )
            .push_bind(path)
            .push(") AS TEXT) END) = ")
            .push_bind(m.value.clone());
    }
    if !filter.ids.is_empty() {
        qb.push(" AND id IN (");
        let mut list = qb.separated(", ");
        for id in &filter.ids {
            list.push_bind(id.0);
        }
        qb.push(")");
    }
}

/// `columns` of the jobs matching `filter`, newest first, older than `before`.
fn newest_first(
    columns: &str,
    filter: &JobFilter,
    before: Option<JobId>,
    limit: u32,
) -> QueryBuilder<Sqlite> {
    let mut qb = QueryBuilder::new(format!("SELECT {columns} FROM jobs"));
    push_filter(&mut qb, filter);
    if let Some(before) = before {
        qb.push(" AND id < ").push_bind(before.0);
    }
    qb.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit));
    qb
}

/// Records an idempotent request's response in the caller's transaction (an upsert, as on
/// Postgres).
pub(super) async fn record_idempotency_on(
    conn: &mut sqlx::SqliteConnection,
    keyed: &crate::store::KeyedResponse,
    status: u16,
    body: &str,
) -> Result<(), StoreError> {
    sqlx::query::<Sqlite>(
        "INSERT INTO idempotency_keys (actor, key, request_hash, status, response, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (actor, key) DO UPDATE \
         SET request_hash = excluded.request_hash, status = excluded.status, \
             response = excluded.response",
    )
    .bind(&keyed.actor)
    .bind(&keyed.key)
    .bind(&keyed.request_hash)
    .bind(i32::from(status))
    .bind(body)
    .bind(now_us())
    .execute(conn)
    .await
    .map_err(query("record idempotent response"))?;
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn list_jobs(
        &self,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let mut qb = newest_first(rows::JOB_COLUMNS, filter, before, limit);
        let rows = qb
            .build()
            .fetch_all(&self.reader)
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
            .fetch_all(&self.reader)
            .await
            .map_err(query("list job ids"))?;
        rows.iter().map(|r| rows::job_id(r, "id")).collect()
    }

    pub(crate) async fn count_jobs(&self, filter: &JobFilter) -> Result<i64, StoreError> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT count(*) AS n FROM jobs");
        push_filter(&mut qb, filter);
        let row = qb
            .build()
            .fetch_one(&self.reader)
            .await
            .map_err(query("count jobs"))?;
        rows::get(&row, "n")
    }

    pub(crate) async fn delete_job(&self, id: JobId) -> Result<(), StoreError> {
        let mut tx = self.write("delete job").await?;
        // Only the columns the event needs: a row whose other columns cannot be read (a time
        // written out of range by hand) can still be deleted.
        let row =
            sqlx::query::<Sqlite>("SELECT state, queue, kind, attempt FROM jobs WHERE id = ?")
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
        sqlx::query::<Sqlite>("DELETE FROM jobs WHERE id = ?")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(query("delete job"))?;
        let (queue, kind): (String, String) = (rows::get(&row, "queue")?, rows::get(&row, "kind")?);
        let event = events::NewEvent {
            event_type: event::JOB_DELETED,
            job_id: Some(id),
            queue: Some(&queue),
            kind: Some(&kind),
            state: Some(state.as_str()),
            attempt: Some(rows::get(&row, "attempt")?),
            data: None,
        };
        events::write(&mut tx, event).await?;
        tx.commit().await.map_err(query("delete job"))
    }

    pub(crate) async fn edit_job(&self, id: JobId, edit: &JobEdit) -> Result<Job, StoreError> {
        let now = now_us();
        let mut tx = self.write("edit job").await?;
        let job = current(&mut tx, id).await?;
        check_editable(id, job.state, job.attempt, edit)?;
        let state = match edit.run_at.map(micros) {
            Some(at) if at > now && job.state == JobState::Available => JobState::Scheduled,
            Some(at) if at <= now && job.state == JobState::Scheduled => JobState::Available,
            _ => job.state,
        };
        let sql = format!(
            "UPDATE jobs SET args = COALESCE(?2, args), priority = COALESCE(?3, priority), \
                run_at = COALESCE(?4, run_at), state = ?5, \
                max_attempts = COALESCE(?6, max_attempts), tags = COALESCE(?7, tags), \
                metadata = COALESCE(?8, metadata) \
             WHERE id = ?1 RETURNING {}",
            rows::JOB_COLUMNS
        );
        let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(edit.args.as_ref().map(|a| a.to_string()))
            .bind(edit.priority)
            .bind(edit.run_at.map(micros))
            .bind(state.as_str())
            .bind(edit.max_attempts)
            .bind(edit.tags.as_ref().map(|t| serde_json::json!(t).to_string()))
            .bind(edit.metadata.as_ref().map(|m| m.to_string()))
            .fetch_one(&mut *tx)
            .await
            .map_err(query("edit job"))?;
        let edited = rows::job(&row)?;
        events::write(
            &mut tx,
            job_event(&edited, event::JOB_UPDATED, edited.state.as_str(), None),
        )
        .await?;
        tx.commit().await.map_err(query("edit job"))?;
        Ok(edited)
    }

    pub(crate) async fn promote_job(&self, id: JobId) -> Result<Job, StoreError> {
        let now = now_us();
        let mut tx = self.write("run job now").await?;
        let job = current(&mut tx, id).await?;
        if !job.state.is_pending() {
            return Err(StoreError::Conflict {
                id,
                state: job.state.to_string(),
                reason: "only a waiting job can be made to run now; retry a finished one",
            });
        }
        let sql = format!(
            "UPDATE jobs SET state = 'available', run_at = MIN(run_at, ?2) WHERE id = ?1 \
             RETURNING {}",
            rows::JOB_COLUMNS
        );
        let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| unique_conflict(e, id, job.state))?;
        let promoted = rows::job(&row)?;
        events::write(
            &mut tx,
            job_event(&promoted, event::JOB_PROMOTED, "available", None),
        )
        .await?;
        tx.commit().await.map_err(query("run job now"))?;
        Ok(promoted)
    }

    pub(crate) async fn queue_totals(&self) -> Result<QueueTotals, StoreError> {
        let now = now_us();
        let mut totals = QueueTotals::default();
        let counts = sqlx::query::<Sqlite>(
            "SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state",
        )
        .fetch_all(&self.reader)
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
        let settings = sqlx::query::<Sqlite>("SELECT name, paused, concurrency FROM queues")
            .fetch_all(&self.reader)
            .await
            .map_err(query("queue stats"))?;
        for row in &settings {
            totals.settings.insert(
                rows::get(row, "name")?,
                (rows::get(row, "paused")?, rows::get(row, "concurrency")?),
            );
        }
        let oldest = sqlx::query::<Sqlite>(
            "SELECT queue, min(run_at) AS at FROM jobs WHERE state = 'available' GROUP BY queue",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(query("queue stats"))?;
        for row in &oldest {
            let at: i64 = rows::get(row, "at")?;
            totals
                .oldest_available_s
                .insert(rows::get(row, "queue")?, (now - at) as f64 / 1e6);
        }
        let recent = sqlx::query::<Sqlite>(
            "SELECT queue, count(*) AS n FROM jobs WHERE state = 'completed' \
               AND finished_at > ? GROUP BY queue",
        )
        .bind(now - 60_000_000)
        .fetch_all(&self.reader)
        .await
        .map_err(query("queue stats"))?;
        for row in &recent {
            totals
                .completed_last_minute
                .insert(rows::get(row, "queue")?, rows::get(row, "n")?);
        }
        let workers = sqlx::query::<Sqlite>(
            "SELECT queue, count(*) AS n FROM workers WHERE stopped_at IS NULL \
               AND last_seen_at > ? GROUP BY queue",
        )
        .bind(now - 60_000_000)
        .fetch_all(&self.reader)
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
        let mut tx = self.write("set queue concurrency").await?;
        sqlx::query::<Sqlite>(
            "INSERT INTO queues (name, concurrency, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET concurrency = ?2, updated_at = ?3",
        )
        .bind(queue)
        .bind(concurrency)
        .bind(now_us())
        .execute(&mut *tx)
        .await
        .map_err(query("set queue concurrency"))?;
        events::write(
            &mut tx,
            events::NewEvent {
                event_type: event::QUEUE_UPDATED,
                job_id: None,
                queue: Some(queue),
                kind: None,
                state: None,
                attempt: None,
                data: Some(serde_json::json!({ "concurrency": concurrency })),
            },
        )
        .await?;
        tx.commit().await.map_err(query("set queue concurrency"))
    }

    pub(crate) async fn workers(
        &self,
        live_since: DateTime<Utc>,
    ) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = sqlx::query::<Sqlite>(
            "SELECT w.id, w.queue, w.host, w.pid, w.concurrency, w.kinds, w.started_at, \
                    w.last_seen_at, w.stopped_at, \
                    (SELECT count(*) FROM jobs j WHERE j.state = 'running' AND j.locked_by = w.id) \
                        AS running \
             FROM workers w WHERE w.last_seen_at >= ? ORDER BY w.started_at, w.id",
        )
        .bind(micros(live_since))
        .fetch_all(&self.reader)
        .await
        .map_err(query("list workers"))?;
        rows.iter().map(worker_row).collect()
    }

    pub(crate) async fn create_token(
        &self,
        token: &TokenRow,
        hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query::<Sqlite>(
            "INSERT INTO api_tokens (id, name, prefix, hash, scopes, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(token.id)
        .bind(&token.name)
        .bind(&token.prefix)
        .bind(hash)
        .bind(serde_json::json!(token.scopes).to_string())
        .bind(micros(token.created_at))
        .execute(&self.writer)
        .await
        .map_err(query("create token"))?;
        Ok(())
    }

    pub(crate) async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = ?"
        )))
        .bind(hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(query("read token"))?;
        row.as_ref().map(token_row).transpose()
    }

    pub(crate) async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
        )))
        .fetch_all(&self.reader)
        .await
        .map_err(query("list tokens"))?;
        rows.iter().map(token_row).collect()
    }

    pub(crate) async fn active_tokens(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Sqlite, i64>(
            "SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(query("count tokens"))
    }

    pub(crate) async fn revoke_token(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query::<Sqlite>(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(now_us())
        .bind(id)
        .execute(&self.writer)
        .await
        .map_err(query("revoke token"))?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn touch_token(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query::<Sqlite>("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
            .bind(now_us())
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(query("touch token"))?;
        Ok(())
    }

    pub(crate) async fn write_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        sqlx::query::<Sqlite>(
            "INSERT INTO audit_log (at, actor, action, targets, detail, request_id) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(now_us())
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(serde_json::json!(entry.targets).to_string())
        .bind(entry.detail.as_ref().map(|d| d.to_string()))
        .bind(entry.request_id.as_deref())
        .execute(&self.writer)
        .await
        .map_err(query("write audit"))?;
        Ok(())
    }

    pub(crate) async fn audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query::<Sqlite>(
            "SELECT id, at, actor, action, targets, detail, request_id FROM audit_log \
             WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(query("read audit"))?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: rows::get(row, "id")?,
                    at: rows::time(row, "at")?,
                    actor: rows::get(row, "actor")?,
                    action: rows::get(row, "action")?,
                    targets: rows::json(row, "targets")?,
                    detail: rows::opt_json(row, "detail")?,
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
        let now = now_us();
        let inserted = sqlx::query::<Sqlite>(
            "INSERT INTO idempotency_keys (actor, key, request_hash, created_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (actor, key) DO UPDATE \
                SET request_hash = excluded.request_hash, created_at = ?4 \
                WHERE idempotency_keys.status IS NULL AND idempotency_keys.created_at < ?5",
        )
        .bind(actor)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .bind(now - 60_000_000)
        .execute(&self.writer)
        .await
        .map_err(query("claim idempotency key"))?;
        if inserted.rows_affected() == 1 {
            return Ok(IdempotencyClaim::Fresh);
        }
        let row = sqlx::query::<Sqlite>(
            "SELECT request_hash, status, response FROM idempotency_keys \
             WHERE actor = ? AND key = ?",
        )
        .bind(actor)
        .bind(key)
        .fetch_optional(&self.writer)
        .await
        .map_err(query("read idempotency key"))?;
        let Some(row) = row else {
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
        sqlx::query::<Sqlite>(
            "UPDATE idempotency_keys SET status = ?, response = ? WHERE actor = ? AND key = ?",
        )
        .bind(i32::from(status))
        .bind(body)
        .bind(actor)
        .bind(key)
        .execute(&self.writer)
        .await
        .map_err(query("record idempotent response"))?;
        Ok(())
    }

    pub(crate) async fn release_idempotency(
        &self,
        actor: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        sqlx::query::<Sqlite>(
            "DELETE FROM idempotency_keys WHERE actor = ? AND key = ? AND status IS NULL",
        )
        .bind(actor)
        .bind(key)
        .execute(&self.writer)
        .await
        .map_err(query("release idempotency key"))?;
        Ok(())
    }

    pub(crate) async fn prune_control(
        &self,
        idempotency_before: DateTime<Utc>,
        audit_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let keys = sqlx::query::<Sqlite>("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(micros(idempotency_before))
            .execute(&self.writer)
            .await
            .map_err(query("prune idempotency keys"))?
            .rows_affected();
        let audit = sqlx::query::<Sqlite>("DELETE FROM audit_log WHERE at < ?")
            .bind(micros(audit_before))
            .execute(&self.writer)
            .await
            .map_err(query("prune audit log"))?
            .rows_affected();
        Ok(keys + audit)
    }

    pub(crate) async fn create_operation(&self, op: &Operation) -> Result<(), StoreError> {
        sqlx::query::<Sqlite>(
            "INSERT INTO operations (id, action, selector, state, total, actor, created_at, \
                owner, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(op.id)
        .bind(op.action.as_str())
        .bind(serde_json::json!(op.filter).to_string())
        .bind(&op.state)
        .bind(op.total)
        .bind(&op.actor)
        .bind(micros(op.created_at))
        .bind(op.owner.as_deref())
        .bind(now_us())
        .execute(&self.writer)
        .await
        .map_err(query("create operation"))?;
        Ok(())
    }

    pub(crate) async fn update_operation(&self, op: &Operation) -> Result<bool, StoreError> {
        let updated = sqlx::query::<Sqlite>(
            "UPDATE operations SET state = ?2, total = ?3, done = ?4, skipped = ?5, \
                finished_at = ?6, error = ?7, resume_before = ?8, heartbeat_at = ?9 \
             WHERE id = ?1 AND owner IS ?10",
        )
        .bind(op.id)
        .bind(&op.state)
        .bind(op.total)
        .bind(op.done)
        .bind(op.skipped)
        .bind(op.finished_at.map(micros))
        .bind(op.error.as_deref())
        .bind(op.resume_before.map(|id| id.0))
        .bind(now_us())
        .bind(op.owner.as_deref())
        .execute(&self.writer)
        .await
        .map_err(query("update operation"))?;
        Ok(updated.rows_affected() == 1)
    }

    pub(crate) async fn touch_operation(&self, id: Uuid, owner: &str) -> Result<bool, StoreError> {
        let touched = sqlx::query::<Sqlite>(
            "UPDATE operations SET heartbeat_at = ? WHERE id = ? AND owner = ? AND state = 'running'",
        )
        .bind(now_us())
        .bind(id)
        .bind(owner)
        .execute(&self.writer)
        .await
        .map_err(query("renew operation"))?;
        Ok(touched.rows_affected() == 1)
    }

    pub(crate) async fn take_over_operations(
        &self,
        owner: &str,
        stale: std::time::Duration,
    ) -> Result<Vec<Operation>, StoreError> {
        let now = now_us();
        let rows = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "UPDATE operations SET owner = ?1, heartbeat_at = ?2 \
             WHERE state = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?3) \
             RETURNING {OPERATION_COLUMNS}"
        )))
        .bind(owner)
        .bind(now)
        .bind(now.saturating_sub(super::duration_us(stale)))
        .fetch_all(&self.writer)
        .await
        .map_err(query("take over operations"))?;
        rows.iter().map(operation_row).collect()
    }

    pub(crate) async fn operation(&self, id: Uuid) -> Result<Option<Operation>, StoreError> {
        let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "SELECT {OPERATION_COLUMNS} FROM operations WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(query("read operation"))?;
        row.as_ref().map(operation_row).transpose()
    }

    pub(crate) async fn operations(&self, limit: u32) -> Result<Vec<Operation>, StoreError> {
        let rows = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "SELECT {OPERATION_COLUMNS} FROM operations ORDER BY created_at DESC, id LIMIT ?"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(query("list operations"))?;
        rows.iter().map(operation_row).collect()
    }

    pub(crate) async fn setting_or_insert(
        &self,
        key: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        sqlx::query::<Sqlite>(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await
        .map_err(query("write setting"))?;
        sqlx::query_scalar::<Sqlite, String>("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_one(&self.writer)
            .await
            .map_err(query("read setting"))
    }

    pub(crate) async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar::<Sqlite, String>("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(query("read setting"))
    }

    /// One writer commits events in id order: everything up to the newest is final.
    pub(crate) async fn event_horizon(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Sqlite, Option<i64>>("SELECT max(id) FROM events")
            .fetch_one(&self.writer)
            .await
            .map(|max| max.unwrap_or(0) + 1)
            .map_err(query("event horizon"))
    }

    pub(crate) async fn job_progress(
        &self,
        id: JobId,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let progress: Option<Option<String>> =
            sqlx::query_scalar::<Sqlite, Option<String>>("SELECT progress FROM jobs WHERE id = ?")
                .bind(id.0)
                .fetch_optional(&self.writer)
                .await
                .map_err(query("read progress"))?;
        Ok(progress
            .flatten()
            .and_then(|p| serde_json::from_str(&p).ok()))
    }

    pub(crate) async fn save_progress(
        &self,
        id: JobId,
        attempt: i32,
        worker: &WorkerId,
        progress: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        save_progress_on(&self.writer, id, attempt, worker, progress).await
    }

    pub(crate) async fn oldest_event(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar::<Sqlite, Option<i64>>("SELECT min(id) FROM events")
            .fetch_one(&self.reader)
            .await
            .map_err(query("oldest event"))
    }
}

const TOKEN_COLUMNS: &str = "id, name, prefix, scopes, created_at, last_used_at, revoked_at";
const OPERATION_COLUMNS: &str = "id, action, selector, state, total, done, skipped, actor, \
    created_at, finished_at, error, owner, resume_before";

fn token_row(row: &SqliteRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: rows::get(row, "id")?,
        name: rows::get(row, "name")?,
        prefix: rows::get(row, "prefix")?,
        scopes: rows::json(row, "scopes")?,
        created_at: rows::time(row, "created_at")?,
        last_used_at: rows::opt_time(row, "last_used_at")?,
        revoked_at: rows::opt_time(row, "revoked_at")?,
    })
}

fn operation_row(row: &SqliteRow) -> Result<Operation, StoreError> {
    let action: String = rows::get(row, "action")?;
    Ok(Operation {
        id: rows::get(row, "id")?,
        action: serde_json::from_value(serde_json::Value::String(action)).map_err(|e| {
            StoreError::Corrupt {
                what: "operation action",
                detail: e.to_string(),
            }
        })?,
        filter: rows::json(row, "selector")?,
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

fn worker_row(row: &SqliteRow) -> Result<WorkerRow, StoreError> {
    Ok(WorkerRow {
        id: rows::get(row, "id")?,
        queue: rows::get(row, "queue")?,
        host: rows::get(row, "host")?,
        pid: rows::get(row, "pid")?,
        concurrency: rows::get(row, "concurrency")?,
        kinds: rows::json(row, "kinds")?,
        started_at: rows::time(row, "started_at")?,
        last_seen_at: rows::time(row, "last_seen_at")?,
        stopped_at: rows::opt_time(row, "stopped_at")?,
        running: rows::get(row, "running")?,
    })
}

/// Stores a running job's progress on `conn` (a transaction of the caller's, or the
/// writer), if `worker` still holds attempt `attempt`; false when it does not.
pub(super) async fn save_progress_on(
    conn: impl sqlx::SqliteExecutor<'_>,
    id: JobId,
    attempt: i32,
    worker: &WorkerId,
    progress: &serde_json::Value,
) -> Result<bool, StoreError> {
    let done = sqlx::query::<Sqlite>(
        "UPDATE jobs SET progress = ?4 WHERE id = ?1 AND attempt = ?2 AND locked_by = ?3 \
           AND state = 'running'",
    )
    .bind(id.0)
    .bind(attempt)
    .bind(worker.as_str())
    .bind(progress.to_string())
    .execute(conn)
    .await
    .map_err(query("save progress"))?;
    Ok(done.rows_affected() == 1)
}
