//! The `events` outbox on Postgres.
//!
//! An event id's high bits are its transaction's id. Every transaction whose id is below the
//! oldest still-running transaction (`pg_snapshot_xmin`) has finished, so every event below
//! that horizon is final: reading only below it never skips an event that commits late.

use sqlx::Postgres;

use super::PgStore;
use super::sql::Fetch;
use super::sql::rows;
use crate::error::StoreError;
use crate::event::Event;
use crate::id::EventId;
use crate::store::Holdback;

impl PgStore {
    pub(crate) async fn events_after(
        &self,
        after: EventId,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let sql = format!(
            "SELECT {} FROM events \
             WHERE id > $1 AND id < (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20) \
             ORDER BY id LIMIT $2",
            rows::EVENT_COLUMNS
        );
        let rows = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(sql))
            .bind(after.0)
            .bind(i64::from(limit))
            .all(&self.pool, "read events")
            .await?;
        rows.iter().map(rows::event).collect()
    }

    /// Every event below this id is committed: none can appear there later.
    pub(crate) async fn event_horizon(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Postgres, i64>(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20",
        )
        .one(&self.pool, "event horizon")
        .await
    }

    /// The oldest transaction holding the read horizon back, when events were committed
    /// above it: until it ends, readers cannot see them.
    pub(crate) async fn event_holdback(&self) -> Result<Option<Holdback>, StoreError> {
        let row = sqlx::query::<Postgres>(
            "WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20 AS h) \
             SELECT a.pid, extract(epoch FROM now() - a.xact_start)::float8 AS age_s, \
                    coalesce(a.application_name, '') AS application, \
                    (SELECT count(*) FROM (SELECT 1 FROM events, horizon WHERE id >= horizon.h \
                                           LIMIT 1000000) hidden) AS hidden \
             FROM pg_stat_activity a \
             WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid() \
             ORDER BY age(a.backend_xid) DESC LIMIT 1",
        )
        .optional(&self.pool, "find what holds events back").await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let hidden: i64 = rows::get(&row, "hidden")?;
        if hidden == 0 {
            return Ok(None);
        }
        Ok(Some(Holdback {
            pid: rows::get(&row, "pid")?,
            age_s: rows::get::<Option<f64>>(&row, "age_s")?.unwrap_or(0.0),
            application: rows::get(&row, "application")?,
            hidden,
        }))
    }
}
