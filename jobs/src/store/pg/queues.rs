//! The `queues` table on Postgres: pause and resume.

use sqlx::Postgres;

use super::PgStore;
use crate::error::{StoreError, query};

impl PgStore {
    pub(crate) async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        sqlx::query::<Postgres>(
            r#"
            WITH q AS (
                INSERT INTO queues (name, paused, updated_at) VALUES ($1, $2, now())
                ON CONFLICT (name) DO UPDATE SET paused = $2, updated_at = now()
                RETURNING name
            )
            INSERT INTO events (type, queue)
            SELECT CASE WHEN $2 THEN 'queue.paused' ELSE 'queue.resumed' END, name FROM q
            "#,
        )
        .bind(queue)
        .bind(paused)
        .execute(&self.pool)
        .await
        .map_err(query("pause or resume queue"))?;
        Ok(())
    }
}
