//! The `events` outbox on SQLite. One writer hands out ids in commit order, so a reader that
//! resumes after an id never misses an event.

use sqlx::{Sqlite, SqliteConnection};

use super::{SqliteStore, now_us, rows};
use crate::error::{StoreError, query};
use crate::event::Event;
use crate::id::{EventId, JobId};

const COLUMNS: &str = "id, at, type, job_id, queue, kind, state, attempt, data";

/// An event about to be written.
pub(super) struct NewEvent<'a> {
    pub event_type: &'a str,
    pub job_id: Option<JobId>,
    pub queue: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub state: Option<&'a str>,
    pub attempt: Option<i32>,
    pub data: Option<serde_json::Value>,
}

/// Writes an event inside the caller's transaction.
pub(super) async fn write(
    conn: &mut SqliteConnection,
    event: NewEvent<'_>,
) -> Result<(), StoreError> {
    sqlx::query::<Sqlite>(
        "INSERT INTO events (at, type, job_id, queue, kind, state, attempt, data) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(now_us())
    .bind(event.event_type)
    .bind(event.job_id.map(|id| id.0))
    .bind(event.queue)
    .bind(event.kind)
    .bind(event.state)
    .bind(event.attempt)
    .bind(event.data.map(|d| d.to_string()))
    .execute(conn)
    .await
    .map_err(query("write event"))?;
    Ok(())
}

impl SqliteStore {
    /// One writer commits in id order: nothing ever holds events back.
    pub(crate) async fn event_holdback(
        &self,
    ) -> Result<Option<crate::store::Holdback>, StoreError> {
        Ok(None)
    }

    pub(crate) async fn events_after(
        &self,
        after: EventId,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?");
        let rows = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql))
            .bind(after.0)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(query("read events"))?;
        rows.iter().map(rows::event).collect()
    }

    pub(crate) async fn job_events(&self, id: JobId) -> Result<Vec<Event>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE job_id = ? ORDER BY id");
        let rows = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_all(&self.reader)
            .await
            .map_err(query("read job events"))?;
        rows.iter().map(rows::event).collect()
    }
}
