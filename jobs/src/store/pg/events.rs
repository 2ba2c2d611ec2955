//! What holds the event stream back on Postgres. An event id's high bits are its
//! transaction's id, and readers stop below the oldest transaction still running
//! (`sql/events.rs`): a long transaction hides every event committed after it began.

use sqlx::Postgres;

use super::PgStore;
use super::sql::Fetch;
use super::sql::rows;
use crate::error::StoreError;
use crate::store::Holdback;

impl PgStore {
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
