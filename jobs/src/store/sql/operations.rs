//! The `operations` table: bulk operations, their progress, and their lease.

use std::time::Duration;

use sqlx::QueryBuilder;
use sqlx::types::Json;
use uuid::Uuid;

use super::dialect::{Backend, Db, Row};
use super::rows;
use super::{Fetch, Run};
use crate::admin::Operation;
use crate::error::StoreError;
use crate::store::codec::Time;

const COLUMNS: &str = "id, action, selector, state, total, done, skipped, actor, created_at, \
    finished_at, error, owner, resume_before";

fn operation(row: &Row) -> Result<Operation, StoreError> {
    let action: String = rows::get(row, "action")?;
    Ok(Operation {
        id: rows::get(row, "id")?,
        action: serde_json::from_value(serde_json::Value::String(action))
            .map_err(|e| rows::corrupt("action", e))?,
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
        resume_before: rows::opt_job_id(row, "resume_before")?,
    })
}

impl Backend {
    pub(crate) async fn create_operation(&self, op: &Operation) -> Result<(), StoreError> {
        sqlx::query::<Db>(
            "INSERT INTO operations (id, action, selector, state, total, actor, created_at, \
                owner, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(op.id)
        .bind(op.action.as_str())
        .bind(Json(&op.filter))
        .bind(&op.state)
        .bind(op.total)
        .bind(&op.actor)
        .bind(Time(op.created_at))
        .bind(op.owner.as_deref())
        .bind(Time::now())
        .run(self.writer(), "create operation")
        .await?;
        Ok(())
    }

    /// Fenced by the owner: a process that lost the operation stops writing it.
    pub(crate) async fn update_operation(&self, op: &Operation) -> Result<bool, StoreError> {
        let updated = sqlx::query::<Db>(
            "UPDATE operations SET state = $2, total = $3, done = $4, skipped = $5, \
                finished_at = $6, error = $7, resume_before = $8, heartbeat_at = $9 \
             WHERE id = $1 AND (owner = $10 OR (owner IS NULL AND $10 IS NULL))",
        )
        .bind(op.id)
        .bind(&op.state)
        .bind(op.total)
        .bind(op.done)
        .bind(op.skipped)
        .bind(op.finished_at.map(Time))
        .bind(op.error.as_deref())
        .bind(op.resume_before.map(|id| id.0))
        .bind(Time::now())
        .bind(op.owner.as_deref())
        .run(self.writer(), "update operation")
        .await?;
        Ok(updated == 1)
    }

    pub(crate) async fn touch_operation(&self, id: Uuid, owner: &str) -> Result<bool, StoreError> {
        let touched = sqlx::query::<Db>(
            "UPDATE operations SET heartbeat_at = $3 \
             WHERE id = $1 AND owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(Time::now())
        .run(self.writer(), "renew operation")
        .await?;
        Ok(touched == 1)
    }

    pub(crate) async fn take_over_operations(
        &self,
        owner: &str,
        stale: Duration,
    ) -> Result<Vec<Operation>, StoreError> {
        let now = chrono::Utc::now();
        let stale = chrono::Duration::from_std(stale).unwrap_or(chrono::Duration::MAX);
        let sql = format!(
            "UPDATE operations SET owner = $1, heartbeat_at = $2 \
             WHERE state = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < $3) \
             RETURNING {COLUMNS}"
        );
        let rows = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(Time(now))
            .bind(Time(now - stale))
            .all(self.writer(), "take over operations")
            .await?;
        rows.iter().map(operation).collect()
    }

    pub(crate) async fn operation(&self, id: Uuid) -> Result<Option<Operation>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM operations WHERE id = $1");
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .optional(self.reader(), "read operation")
            .await?;
        row.as_ref().map(operation).transpose()
    }

    pub(crate) async fn operations(
        &self,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Operation>, StoreError> {
        let mut qb = QueryBuilder::<Db>::new(format!("SELECT {COLUMNS} FROM operations"));
        if let Some(before) = before {
            qb.push(" WHERE id < ").push_bind(before);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = qb.build().all(self.reader(), "list operations").await?;
        rows.iter().map(operation).collect()
    }
}
