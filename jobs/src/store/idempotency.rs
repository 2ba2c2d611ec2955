//! Idempotency keys: one answer per key and actor, replayed to a retry.

use chrono::{DateTime, Utc};

use super::dispatch;
use crate::admin::IdempotencyClaim;

dispatch! {
    /// Takes an idempotency key for a request, or reports what an earlier use left.
    fn claim_idempotency(&self, actor: &str, key: &str, request_hash: &str) -> IdempotencyClaim;
    /// Records the response to replay for a key.
    fn finish_idempotency(&self, actor: &str, key: &str, status: u16, body: &str) -> ();
    /// Frees a key whose request failed without a response worth replaying.
    fn release_idempotency(&self, actor: &str, key: &str) -> ();
    /// Deletes idempotency keys and audit records past their retention.
    fn prune_control(
        &self,
        idempotency_before: DateTime<Utc>,
        audit_before: DateTime<Utc>,
    ) -> u64;
}
