//! The `events` outbox on SQLite. One writer hands out ids in commit order, so a reader that
//! resumes after an id never misses an event, and nothing ever holds the stream back.

use sqlx::Sqlite;

use super::SqliteStore;
use super::sql::Fetch;
use super::sql::rows;
use crate::error::{StoreError, query};
use crate::event::Event;
use crate::id::EventId;
use crate::store::Holdback;

impl SqliteStore {
    pub(crate) async fn events_after(
        &self,
        after: EventId,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let sql = format!(
            "SELECT {} FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            rows::EVENT_COLUMNS
        );
        let rows = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql))
            .bind(after.0)
            .bind(i64::from(limit))
            .all(&self.reader, "read events")
            .await?;
        rows.iter().map(rows::event).collect()
    }

    /// Everything up to the newest event is final.
    pub(crate) async fn event_horizon(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Sqlite, Option<i64>>("SELECT max(id) FROM events")
            .fetch_one(&self.writer)
            .await
            .map(|max| max.unwrap_or(0) + 1)
            .map_err(query("event horizon"))
    }

    pub(crate) async fn event_holdback(&self) -> Result<Option<Holdback>, StoreError> {
        Ok(None)
    }
}
