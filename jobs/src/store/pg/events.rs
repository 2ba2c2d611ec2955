//! The `events` outbox on Postgres.
//!
//! An event id's high bits are its transaction's id. Every transaction whose id is below the
//! oldest still-running transaction (`pg_snapshot_xmin`) has finished, so every event below
//! that horizon is final: reading only below it never skips an event that commits late.

use sqlx::Postgres;

use super::{PgStore, rows};
use crate::error::{StoreError, query};
use crate::event::Event;
use crate::id::{EventId, JobId};

const COLUMNS: &str = "id, at, type, job_id, queue, kind, state, attempt, data";

impl PgStore {
    pub(crate) async fn events_after(
        &self,
        after: EventId,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events \
             WHERE id > $1 AND id < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20) \
             ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(sql))
            .bind(after.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query("read events"))?;
        rows.iter().map(rows::event).collect()
    }

    pub(crate) async fn job_events(&self, id: JobId) -> Result<Vec<Event>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE job_id = $1 ORDER BY id");
        let rows = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(query("read job events"))?;
        rows.iter().map(rows::event).collect()
    }
}
