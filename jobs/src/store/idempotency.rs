//! Idempotency keys: one answer per key and actor, replayed to a retry.

use chrono::{DateTime, Utc};

use super::{Store, on_backend};
use crate::admin::IdempotencyClaim;
use crate::error::StoreError;

impl Store {
    /// Takes an idempotency key for a request, or reports what an earlier use left.
    pub async fn claim_idempotency(
        &self,
        actor: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<IdempotencyClaim, StoreError> {
        on_backend!(self, s => s.claim_idempotency(actor, key, request_hash).await)
    }

    /// Records the response to replay for a key.
    pub async fn finish_idempotency(
        &self,
        actor: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.finish_idempotency(actor, key, status, body).await)
    }

    /// Frees a key whose request failed without a response worth replaying.
    pub async fn release_idempotency(&self, actor: &str, key: &str) -> Result<(), StoreError> {
        on_backend!(self, s => s.release_idempotency(actor, key).await)
    }

    /// Deletes idempotency keys and audit records past their retention.
    pub async fn prune_control(
        &self,
        idempotency_before: DateTime<Utc>,
        audit_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        on_backend!(self, s => s.prune_control(idempotency_before, audit_before).await)
    }
}
