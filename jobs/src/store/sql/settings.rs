//! The `settings` table: small values every process shares (the cursor key, the event
//! retention mark).

use super::dialect::{Backend, Db};
use crate::error::{StoreError, query};

impl Backend {
    /// The setting, stored as `value` by whoever asks first.
    pub(crate) async fn setting_or_insert(
        &self,
        key: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        sqlx::query::<Db>(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(self.writer())
        .await
        .map_err(query("write setting"))?;
        sqlx::query_scalar::<Db, String>("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(self.writer())
            .await
            .map_err(query("read setting"))
    }

    pub(crate) async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar::<Db, String>("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.reader())
            .await
            .map_err(query("read setting"))
    }
}
