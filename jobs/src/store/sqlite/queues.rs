//! The `queues` table on SQLite: pause and resume.

use sqlx::Sqlite;

use super::events::{self, NewEvent};
use super::{SqliteStore, now_us};
use crate::error::{StoreError, query};
use crate::event;

impl SqliteStore {
    pub(crate) async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        let mut tx = self.write("pause or resume queue").await?;
        sqlx::query::<Sqlite>(
            "INSERT INTO queues (name, paused, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET paused = ?2, updated_at = ?3",
        )
        .bind(queue)
        .bind(paused)
        .bind(now_us())
        .execute(&mut *tx)
        .await
        .map_err(query("pause or resume queue"))?;
        let event_type = if paused {
            event::QUEUE_PAUSED
        } else {
            event::QUEUE_RESUMED
        };
        events::write(
            &mut tx,
            NewEvent {
                event_type,
                job_id: None,
                queue: Some(queue),
                kind: None,
                state: None,
                attempt: None,
                data: None,
            },
        )
        .await?;
        tx.commit().await.map_err(query("pause or resume queue"))
    }
}
