//! The `workers` table on SQLite: registration, liveness, clean-up.

use chrono::{DateTime, Utc};
use sqlx::Sqlite;

use super::{SqliteStore, micros, now_us};
use crate::error::{StoreError, query};
use crate::id::WorkerId;
use crate::store::WorkerInfo;

impl SqliteStore {
    pub(crate) async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), StoreError> {
        let now = now_us();
        sqlx::query::<Sqlite>(
            "INSERT INTO workers (id, queue, host, pid, concurrency, kinds, started_at, last_seen_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
             ON CONFLICT (id) DO UPDATE SET last_seen_at = ?7, stopped_at = NULL",
        )
        .bind(worker.id.as_str())
        .bind(&worker.queue)
        .bind(&worker.host)
        .bind(worker.pid as i64)
        .bind(worker.concurrency as i64)
        .bind(serde_json::to_string(&worker.kinds).unwrap_or_else(|_| "[]".to_owned()))
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(query("register worker"))?;
        Ok(())
    }

    pub(crate) async fn touch_workers(&self, workers: &[WorkerId]) -> Result<(), StoreError> {
        let ids = serde_json::to_string(&workers).unwrap_or_else(|_| "[]".to_owned());
        sqlx::query::<Sqlite>(
            "UPDATE workers SET last_seen_at = ? WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(now_us())
        .bind(ids)
        .execute(&self.writer)
        .await
        .map_err(query("touch workers"))?;
        Ok(())
    }

    pub(crate) async fn stop_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        sqlx::query::<Sqlite>("UPDATE workers SET stopped_at = ? WHERE id = ?")
            .bind(now_us())
            .bind(worker.as_str())
            .execute(&self.writer)
            .await
            .map_err(query("stop worker"))?;
        Ok(())
    }

    pub(crate) async fn reap_workers(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = sqlx::query::<Sqlite>("DELETE FROM workers WHERE last_seen_at < ?")
            .bind(micros(before))
            .execute(&self.writer)
            .await
            .map_err(query("reap workers"))?;
        Ok(result.rows_affected())
    }
}
