//! The `workers` table: registration, liveness, clean-up, and the list operators read.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::dialect::{Backend, Db, Row};
use super::rows;
use super::{Fetch, Run};
use crate::admin::WorkerRow;
use crate::error::StoreError;
use crate::id::WorkerId;
use crate::store::WorkerInfo;
use crate::store::codec::Time;

impl Backend {
    pub(crate) async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), StoreError> {
        sqlx::query::<Db>(
            "INSERT INTO workers (id, queue, host, pid, concurrency, kinds, started_at, \
                last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (id) DO UPDATE SET last_seen_at = $7, stopped_at = NULL",
        )
        .bind(worker.id.as_str())
        .bind(&worker.queue)
        .bind(&worker.host)
        .bind(worker.pid as i32)
        .bind(worker.concurrency as i32)
        .bind(Json(&worker.kinds))
        .bind(Time::now())
        .run(self.writer(), "register worker")
        .await?;
        Ok(())
    }

    pub(crate) async fn touch_workers(&self, workers: &[WorkerId]) -> Result<(), StoreError> {
        let mut qb = sqlx::QueryBuilder::<Db>::new("UPDATE workers SET last_seen_at = ");
        qb.push_bind(Time::now()).push(" WHERE id IN (");
        let mut list = qb.separated(", ");
        for worker in workers {
            list.push_bind(worker.as_str());
        }
        qb.push(")");
        qb.build().run(self.background(), "touch workers").await?;
        Ok(())
    }

    pub(crate) async fn stop_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        sqlx::query::<Db>("UPDATE workers SET stopped_at = $2 WHERE id = $1")
            .bind(worker.as_str())
            .bind(Time::now())
            .run(self.writer(), "stop worker")
            .await?;
        Ok(())
    }

    pub(crate) async fn reap_workers(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = sqlx::query::<Db>("DELETE FROM workers WHERE last_seen_at < $1")
            .bind(Time(before))
            .run(self.writer(), "reap workers")
            .await?;
        Ok(result)
    }

    pub(crate) async fn workers(
        &self,
        live_since: DateTime<Utc>,
    ) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = sqlx::query::<Db>(
            "SELECT w.id, w.queue, w.host, w.pid, w.concurrency, w.kinds, w.started_at, \
                    w.last_seen_at, w.stopped_at, \
                    (SELECT count(*) FROM jobs j WHERE j.state = 'running' AND j.locked_by = w.id) \
                        AS running \
             FROM workers w WHERE w.last_seen_at >= $1 ORDER BY w.started_at, w.id",
        )
        .bind(Time(live_since))
        .all(self.reader(), "list workers")
        .await?;
        rows.iter().map(worker_row).collect()
    }
}

fn worker_row(row: &Row) -> Result<WorkerRow, StoreError> {
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
