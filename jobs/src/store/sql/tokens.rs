//! The `api_tokens` table: tokens stored by the SHA-256 of their secret.

use sqlx::types::Json;
use uuid::Uuid;

use super::dialect::{Backend, Db, Row};
use super::rows;
use super::{Fetch, Run};
use crate::admin::TokenRow;
use crate::error::StoreError;
use crate::store::codec::Time;

const COLUMNS: &str = "id, name, prefix, scopes, created_at, last_used_at, revoked_at";

fn token(row: &Row) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: rows::get(row, "id")?,
        name: rows::get(row, "name")?,
        prefix: rows::get(row, "prefix")?,
        scopes: rows::json(row, "scopes")?,
        created_at: rows::time(row, "created_at")?,
        last_used_at: rows::opt_time(row, "last_used_at")?,
        revoked_at: rows::opt_time(row, "revoked_at")?,
    })
}

impl Backend {
    pub(crate) async fn create_token(&self, t: &TokenRow, hash: &str) -> Result<(), StoreError> {
        sqlx::query::<Db>(
            "INSERT INTO api_tokens (id, name, prefix, hash, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(t.id)
        .bind(&t.name)
        .bind(&t.prefix)
        .bind(hash)
        .bind(Json(&t.scopes))
        .bind(Time(t.created_at))
        .run(self.writer(), "create token")
        .await?;
        Ok(())
    }

    pub(crate) async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE hash = $1");
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .optional(self.reader(), "read token")
            .await?;
        row.as_ref().map(token).transpose()
    }

    pub(crate) async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, id");
        let rows = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .all(self.reader(), "list tokens")
            .await?;
        rows.iter().map(token).collect()
    }

    pub(crate) async fn active_tokens(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Db, i64>("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL")
            .one(self.reader(), "count tokens")
            .await
    }

    pub(crate) async fn revoke_token(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query::<Db>(
            "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(Time::now())
        .run(self.writer(), "revoke token")
        .await?;
        Ok(done == 1)
    }

    pub(crate) async fn touch_token(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query::<Db>("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(Time::now())
            .run(self.background(), "touch token")
            .await?;
        Ok(())
    }
}
