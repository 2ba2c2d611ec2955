//! The `workers` table on Postgres: registration, liveness, clean-up.

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::types::Json;

use super::PgStore;
use crate::error::{StoreError, query};
use crate::id::WorkerId;
use crate::store::WorkerInfo;

impl PgStore {
    pub(crate) async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), StoreError> {
        sqlx::query::<Postgres>(
            "INSERT INTO workers (id, queue, host, pid, concurrency, kinds) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), stopped_at = NULL",
        )
        .bind(worker.id.as_str())
        .bind(&worker.queue)
        .bind(&worker.host)
        .bind(worker.pid as i32)
        .bind(worker.concurrency as i32)
        .bind(Json(&worker.kinds))
        .execute(&self.pool)
        .await
        .map_err(query("register worker"))?;
        Ok(())
    }

    pub(crate) async fn touch_workers(&self, workers: &[WorkerId]) -> Result<(), StoreError> {
        sqlx::query::<Postgres>("UPDATE workers SET last_seen_at = now() WHERE id = ANY($1)")
            .bind(workers.iter().map(WorkerId::as_str).collect::<Vec<_>>())
            .execute(&self.lease_pool)
            .await
            .map_err(query("touch workers"))?;
        Ok(())
    }

    pub(crate) async fn stop_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        sqlx::query::<Postgres>("UPDATE workers SET stopped_at = now() WHERE id = $1")
            .bind(worker.as_str())
            .execute(&self.pool)
            .await
            .map_err(query("stop worker"))?;
        Ok(())
    }

    pub(crate) async fn reap_workers(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = sqlx::query::<Postgres>("DELETE FROM workers WHERE last_seen_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(query("reap workers"))?;
        Ok(result.rows_affected())
    }
}
