//! The `idempotency_keys` table: one answer per (actor, key).

use super::dialect::{Backend, Db};
use super::rows;
use super::{Fetch, Run};
use crate::admin::{IdempotencyClaim, idempotency_answer};
use crate::error::StoreError;
use crate::store::KeyedResponse;
use crate::store::codec::Time;

/// A key still unanswered this long belongs to a request whose process died: a retry takes
/// it over instead of meeting 409 until the key expires.
const TAKE_OVER_AFTER: chrono::Duration = chrono::Duration::minutes(1);

/// Records an idempotent request's answer on `executor`, the transaction that stores its
/// jobs. An upsert: the key's claim may have been taken over or freed meanwhile, and the
/// answer must be stored with its jobs whatever happened to the claim.
pub(crate) async fn record<'c, E>(
    executor: E,
    keyed: &KeyedResponse,
    status: u16,
    body: &str,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    sqlx::query::<Db>(
        "INSERT INTO idempotency_keys (actor, key, request_hash, status, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (actor, key) DO UPDATE \
         SET request_hash = excluded.request_hash, status = excluded.status, \
             response = excluded.response",
    )
    .bind(&keyed.actor)
    .bind(&keyed.key)
    .bind(&keyed.request_hash)
    .bind(i32::from(status))
    .bind(body)
    .bind(Time::now())
    .run(executor, "record idempotent response")
    .await?;
    Ok(())
}

impl Backend {
    pub(crate) async fn claim_idempotency(
        &self,
        actor: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<IdempotencyClaim, StoreError> {
        let now = chrono::Utc::now();
        let inserted = sqlx::query::<Db>(
            "INSERT INTO idempotency_keys (actor, key, request_hash, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (actor, key) DO UPDATE \
                SET request_hash = excluded.request_hash, created_at = $4 \
                WHERE idempotency_keys.status IS NULL AND idempotency_keys.created_at < $5",
        )
        .bind(actor)
        .bind(key)
        .bind(request_hash)
        .bind(Time(now))
        .bind(Time(now - TAKE_OVER_AFTER))
        .run(self.writer(), "claim idempotency key")
        .await?;
        if inserted == 1 {
            return Ok(IdempotencyClaim::Fresh);
        }
        let row = sqlx::query::<Db>(
            "SELECT request_hash, status, response FROM idempotency_keys \
             WHERE actor = $1 AND key = $2",
        )
        .bind(actor)
        .bind(key)
        .optional(self.writer(), "read idempotency key")
        .await?;
        let Some(row) = row else {
            // Freed between the two statements: the caller may try again.
            return Ok(IdempotencyClaim::InFlight);
        };
        let hash: String = rows::get(&row, "request_hash")?;
        let status: Option<i32> = rows::get(&row, "status")?;
        let body: Option<String> = rows::get(&row, "response")?;
        Ok(idempotency_answer(&hash, request_hash, status, body))
    }

    pub(crate) async fn finish_idempotency(
        &self,
        actor: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        sqlx::query::<Db>(
            "UPDATE idempotency_keys SET status = $3, response = $4 WHERE actor = $1 AND key = $2",
        )
        .bind(actor)
        .bind(key)
        .bind(i32::from(status))
        .bind(body)
        .run(self.writer(), "record idempotent response")
        .await?;
        Ok(())
    }

    pub(crate) async fn release_idempotency(
        &self,
        actor: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        sqlx::query::<Db>(
            "DELETE FROM idempotency_keys WHERE actor = $1 AND key = $2 AND status IS NULL",
        )
        .bind(actor)
        .bind(key)
        .run(self.writer(), "release idempotency key")
        .await?;
        Ok(())
    }

    pub(crate) async fn prune_control(
        &self,
        idempotency_before: chrono::DateTime<chrono::Utc>,
        audit_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let keys = sqlx::query::<Db>("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(Time(idempotency_before))
            .run(self.writer(), "prune idempotency keys")
            .await?;
        let audit = sqlx::query::<Db>("DELETE FROM audit_log WHERE at < $1")
            .bind(Time(audit_before))
            .run(self.writer(), "prune audit log")
            .await?;
        Ok(keys + audit)
    }
}
