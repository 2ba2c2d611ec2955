//! The `settings` table: small values every process shares (the cursor key, the event
//! retention mark).

use super::dialect::{Backend, Db, GREATEST};
use super::{Fetch, Run};
use crate::error::StoreError;

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
        .run(self.writer(), "write setting")
        .await?;
        sqlx::query_scalar::<Db, String>("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .one(self.writer(), "read setting")
            .await
    }

    pub(crate) async fn raise_setting(&self, key: &str, value: i64) -> Result<(), StoreError> {
        raise_mark(self.writer(), key, value).await
    }

    pub(crate) async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar::<Db, String>("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .optional(self.reader(), "read setting")
            .await
    }
}

/// Raises the mark `key` to `value` on `executor` (a retention mark only grows: a stream
/// resuming below it is told it lost what was deleted, instead of silently skipping it).
pub(crate) async fn raise_mark<'c, E>(executor: E, key: &str, value: i64) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    let sql = format!(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET \
         value = CAST({GREATEST}(CAST(settings.value AS BIGINT), CAST($2 AS BIGINT)) AS TEXT)"
    );
    sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .bind(value.to_string())
        .run(executor, "raise a retention mark")
        .await?;
    Ok(())
}
