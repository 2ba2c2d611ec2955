//! Webhook endpoints, their circuit breakers, and the delivery log.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, dispatch, on_backend};
use crate::error::StoreError;
use crate::webhook::{self, DeliveryAttempt, Endpoint, EndpointSpec};

/// What changes which endpoints are enabled wakes the relays of every process; an endpoint
/// enabled when none was starts the relay's cursors at the present (while no endpoint was
/// enabled the relay read nothing, and an endpoint never gets the log's past).
impl Store {
    /// Stores a new endpoint.
    pub async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        if endpoint.enabled {
            webhook::relay_from_now_unless_enabled(self).await?;
        }
        on_backend!(self, s => s.create_endpoint(endpoint).await)?;
        self.wakeups.endpoints_changed();
        Ok(())
    }

    /// Applies what `spec` gives; enabling an endpoint also clears its failures.
    pub async fn update_endpoint(
        &self,
        id: Uuid,
        spec: &EndpointSpec,
    ) -> Result<Option<Endpoint>, StoreError> {
        if spec.enabled == Some(true) {
            webhook::relay_from_now_unless_enabled(self).await?;
        }
        let updated = on_backend!(self, s => s.update_endpoint(id, spec).await)?;
        self.wakeups.endpoints_changed();
        Ok(updated)
    }

    /// Deletes an endpoint and its delivery log.
    pub async fn delete_endpoint(&self, id: Uuid) -> Result<bool, StoreError> {
        let deleted = on_backend!(self, s => s.delete_endpoint(id).await)?;
        self.wakeups.endpoints_changed();
        Ok(deleted)
    }
}

dispatch! {
    /// One endpoint.
    fn endpoint(&self, id: Uuid) -> Option<Endpoint>;
    /// Every endpoint, oldest first.
    fn endpoints(&self) -> Vec<Endpoint>;
    /// Replaces the sealed secret, the old one signing beside it until `previous_until`.
    fn rotate_endpoint_secret(
        &self,
        id: Uuid,
        secret: &str,
        previous_secret: &str,
        previous_until: DateTime<Utc>,
    ) -> Option<Endpoint>;
    /// Disables an enabled endpoint; false when it was not enabled.
    fn disable_endpoint(&self, id: Uuid, reason: &str) -> bool;
    /// A delivery succeeded; true when the endpoint was failing until now.
    fn endpoint_succeeded(&self, id: Uuid) -> bool;
    /// A delivery failed; the breaker opens until `open_until` once `threshold` fail in a row.
    fn endpoint_failed(&self, id: Uuid, threshold: i32, open_until: DateTime<Utc>) -> Option<Endpoint>;
    /// Takes the half-open probe of an endpoint whose breaker's wait is over.
    fn take_probe(&self, id: Uuid, open_until: DateTime<Utc>) -> bool;
    /// Writes an attempt to the delivery log.
    fn record_delivery_attempt(&self, attempt: &DeliveryAttempt) -> ();
    /// The delivery log of an endpoint, newest first.
    fn delivery_attempts(&self, endpoint_id: Uuid, before: Option<i64>, limit: u32) -> Vec<DeliveryAttempt>;
    /// Whether an earlier delivery of the same key to an ordered endpoint is still pending.
    fn earlier_delivery_pending(&self, endpoint_id: Uuid, order_key: &str, seq: i64) -> bool;
}
