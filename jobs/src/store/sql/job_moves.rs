//! What operators do to one job (cancel, retry, run now, edit, delete), and retention. Each
//! move reads the job's head under a lock (Postgres `FOR UPDATE`; SQLite's write transaction
//! holds the whole file), changes it, and writes its event in the same transaction.

use sqlx::QueryBuilder;
use sqlx::types::Json;

use super::dialect::{Backend, Conn, Db, FOR_UPDATE, GREATEST, LEAST, NOW};
use super::events::{self, NewEvent};
use super::{Fetch, Run};
use super::{rows, settings};
use crate::admin::{JobEdit, check_editable};
use crate::error::{StoreError, query};
use crate::event;
use crate::id::JobId;
use crate::job::Job;
use crate::state::JobState;
use crate::store::codec::Time;
use crate::store::{CancelOutcome, PruneLimits, Pruned};

/// What a move needs to know of a job before changing it. Only these columns are read, so a
/// row whose other columns cannot be read (a time written out of range by hand) can still be
/// deleted.
struct Head {
    state: JobState,
    queue: String,
    kind: String,
    attempt: i32,
}

impl Head {
    async fn lock(conn: &mut Conn, id: JobId) -> Result<Head, StoreError> {
        let sql = format!("SELECT state, queue, kind, attempt FROM jobs WHERE id = $1{FOR_UPDATE}");
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .optional(&mut *conn, "lock job")
            .await?
            .ok_or(StoreError::JobNotFound(id))?;
        Ok(Head {
            state: rows::state(&row, "state")?,
            queue: rows::get(&row, "queue")?,
            kind: rows::get(&row, "kind")?,
            attempt: rows::get(&row, "attempt")?,
        })
    }

    fn conflict(&self, id: JobId, reason: &'static str) -> StoreError {
        StoreError::Conflict {
            id,
            state: self.state.to_string(),
            reason,
        }
    }

    fn event<'a>(&'a self, id: JobId, event_type: &'a str, state: &'a str) -> NewEvent<'a> {
        NewEvent {
            event_type,
            job_id: Some(id),
            queue: Some(&self.queue),
            kind: Some(&self.kind),
            state: Some(state),
            attempt: Some(self.attempt),
            data: None,
        }
    }
}

/// Maps a unique violation to a conflict: another job holds the key.
fn unique_conflict(error: sqlx::Error, id: JobId, state: JobState, op: &'static str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            id,
            state: state.to_string(),
            reason: "another active job holds its unique key",
        },
        _ => StoreError::Query { op, error },
    }
}

/// The end of a move that makes a locked job available: its `UPDATE … RETURNING` (a unique
/// violation is a conflict: another active job took the key meanwhile), its event, the commit.
async fn make_available(
    mut tx: sqlx::Transaction<'static, Db>,
    head: &Head,
    id: JobId,
    sql: String,
    event_type: &'static str,
    op: &'static str,
) -> Result<Job, StoreError> {
    let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| unique_conflict(e, id, head.state, op))?;
    let job = rows::job(&row)?;
    events::write(&mut *tx, head.event(id, event_type, "available")).await?;
    tx.commit().await.map_err(query(op))?;
    Ok(job)
}

impl Backend {
    pub(crate) async fn cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.write("cancel").await?;
        let head = Head::lock(&mut tx, id).await?;
        let (sql, outcome, event_type, state) = match head.state {
            s if s.is_pending() => (
                format!(
                    "UPDATE jobs SET state = 'cancelled', finished_at = {NOW}, \
                     unique_slot = CASE WHEN unique_scope = 'active' THEN NULL ELSE unique_slot END \
                     WHERE id = $1"
                ),
                CancelOutcome::Cancelled,
                event::JOB_CANCELLED,
                "cancelled",
            ),
            JobState::Running => (
                format!(
                    "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, {NOW}) \
                     WHERE id = $1"
                ),
                CancelOutcome::Requested,
                event::JOB_CANCEL_REQUESTED,
                "running",
            ),
            _ => return Err(head.conflict(id, "a finished job cannot be cancelled")),
        };
        sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .run(&mut *tx, "cancel")
            .await?;
        events::write(&mut *tx, head.event(id, event_type, state)).await?;
        tx.commit().await.map_err(query("cancel"))?;
        Ok(outcome)
    }

    pub(crate) async fn retry(&self, id: JobId) -> Result<Job, StoreError> {
        let mut tx = self.write("retry").await?;
        let head = Head::lock(&mut tx, id).await?;
        if head.state == JobState::Running {
            return Err(head.conflict(id, "a running job cannot be retried; cancel it first"));
        }
        let sql = format!(
            "UPDATE jobs SET state = 'available', run_at = {NOW}, finished_at = NULL, \
                cancel_requested_at = NULL, max_attempts = {GREATEST}(max_attempts, attempt + 1), \
                unique_slot = COALESCE(unique_slot, unique_key) \
             WHERE id = $1 RETURNING {}",
            rows::JOB_COLUMNS
        );
        make_available(tx, &head, id, sql, event::JOB_RETRIED, "retry").await
    }

    pub(crate) async fn promote_job(&self, id: JobId) -> Result<Job, StoreError> {
        let mut tx = self.write("run job now").await?;
        let head = Head::lock(&mut tx, id).await?;
        if !head.state.is_pending() {
            let reason = "only a waiting job can be made to run now; retry a finished one";
            return Err(head.conflict(id, reason));
        }
        let sql = format!(
            "UPDATE jobs SET state = 'available', run_at = {LEAST}(run_at, {NOW}) \
             WHERE id = $1 RETURNING {}",
            rows::JOB_COLUMNS
        );
        make_available(tx, &head, id, sql, event::JOB_PROMOTED, "run job now").await
    }

    pub(crate) async fn edit_job(&self, id: JobId, edit: &JobEdit) -> Result<Job, StoreError> {
        let mut tx = self.write("edit job").await?;
        let head = Head::lock(&mut tx, id).await?;
        check_editable(id, head.state, head.attempt, edit)?;
        // A new run_at moves the job between scheduled and available (both are claimable
        // once due, so this is the label operators see).
        let due = edit.run_at.map(|at| at <= chrono::Utc::now());
        let state = match due {
            Some(false) if head.state == JobState::Available => JobState::Scheduled,
            Some(true) if head.state == JobState::Scheduled => JobState::Available,
            _ => head.state,
        };
        let sql = format!(
            "UPDATE jobs SET args = COALESCE($2, args), priority = COALESCE($3, priority), \
                run_at = COALESCE($4, run_at), state = $5, \
                max_attempts = COALESCE($6, max_attempts), tags = COALESCE($7, tags), \
                metadata = COALESCE($8, metadata) \
             WHERE id = $1 RETURNING {}",
            rows::JOB_COLUMNS
        );
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .bind(edit.args.as_ref().map(Json))
            .bind(edit.priority)
            .bind(edit.run_at.map(Time))
            .bind(state.as_str())
            .bind(edit.max_attempts)
            .bind(edit.tags.as_ref().map(Json))
            .bind(edit.metadata.as_ref().map(Json))
            .one(&mut *tx, "edit job")
            .await?;
        let job = rows::job(&row)?;
        events::write(&mut *tx, head.event(id, event::JOB_UPDATED, state.as_str())).await?;
        tx.commit().await.map_err(query("edit job"))?;
        Ok(job)
    }

    pub(crate) async fn delete_job(&self, id: JobId) -> Result<(), StoreError> {
        let mut tx = self.write("delete job").await?;
        let head = Head::lock(&mut tx, id).await?;
        if head.state == JobState::Running {
            return Err(head.conflict(id, "a running job cannot be deleted; cancel it first"));
        }
        // Its attempts first: on Postgres no foreign key deletes them (see the migration).
        for sql in [
            "DELETE FROM job_attempts WHERE job_id = $1",
            "DELETE FROM jobs WHERE id = $1",
        ] {
            sqlx::query::<Db>(sql)
                .bind(id.0)
                .run(&mut *tx, "delete job")
                .await?;
        }
        let event = head.event(id, event::JOB_DELETED, head.state.as_str());
        events::write(&mut *tx, event).await?;
        tx.commit().await.map_err(query("delete job"))
    }

    pub(crate) async fn prune(&self, limits: PruneLimits) -> Result<Pruned, StoreError> {
        let jobs = self.prune_jobs(limits).await?;
        let mut tx = self.write("prune events").await?;
        let last = sqlx::query_scalar::<Db, Option<i64>>(
            "SELECT max(id) FROM (SELECT id FROM events WHERE at < $1 ORDER BY id LIMIT $2) old",
        )
        .bind(Time(limits.events_before))
        .bind(limits.batch)
        .one(&mut *tx, "prune events")
        .await?;
        let mut events = 0;
        if let Some(last) = last {
            events = sqlx::query::<Db>("DELETE FROM events WHERE id <= $1 AND at < $2")
                .bind(last)
                .bind(Time(limits.events_before))
                .run(&mut *tx, "prune events")
                .await?;
            settings::raise_mark(&mut *tx, "events_pruned_through", last).await?;
        }
        tx.commit().await.map_err(query("prune events"))?;
        Ok(Pruned { jobs, events })
    }

    /// Deletes a batch of finished jobs past retention, with their attempts: the batch is
    /// read under a lock first, so that the attempts deleted are those of the jobs deleted
    /// (a job retried meanwhile keeps both).
    async fn prune_jobs(&self, limits: PruneLimits) -> Result<u64, StoreError> {
        let mut tx = self.write("prune jobs").await?;
        let sql = format!(
            "SELECT id FROM jobs \
             WHERE (state IN ('completed', 'cancelled') AND finished_at < $1) \
                OR (state = 'discarded' AND finished_at < $2) \
             LIMIT $3{FOR_UPDATE}"
        );
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar::<Db, uuid::Uuid>(sqlx::AssertSqlSafe(sql))
            .bind(Time(limits.finished_before))
            .bind(Time(limits.discarded_before))
            .bind(limits.batch)
            .all(&mut *tx, "prune jobs")
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut deleted = 0;
        for (table, key) in [("job_attempts", "job_id"), ("jobs", "id")] {
            let mut qb = QueryBuilder::<Db>::new(format!("DELETE FROM {table} WHERE {key} IN ("));
            let mut list = qb.separated(", ");
            for id in &ids {
                list.push_bind(*id);
            }
            qb.push(")");
            deleted = qb.build().run(&mut *tx, "prune jobs").await?;
        }
        tx.commit().await.map_err(query("prune jobs"))?;
        Ok(deleted)
    }
}
