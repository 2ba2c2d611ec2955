//! Webhook endpoints, their circuit breakers, and the delivery log.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dispatch;
use crate::webhook::{DeliveryAttempt, Endpoint, EndpointSpec};

dispatch! {
    /// Stores a new endpoint.
    fn create_endpoint(&self, endpoint: &Endpoint) -> ();
    /// One endpoint.
    fn endpoint(&self, id: Uuid) -> Option<Endpoint>;
    /// Every endpoint, oldest first.
    fn endpoints(&self) -> Vec<Endpoint>;
    /// Applies what `spec` gives; enabling an endpoint also clears its failures.
    fn update_endpoint(&self, id: Uuid, spec: &EndpointSpec) -> Option<Endpoint>;
    /// Replaces the sealed secret, the old one signing beside it until `previous_until`.
    fn rotate_endpoint_secret(
        &self,
        id: Uuid,
        secret: &str,
        previous_secret: &str,
        previous_until: DateTime<Utc>,
    ) -> Option<Endpoint>;
    /// Deletes an endpoint and its delivery log.
    fn delete_endpoint(&self, id: Uuid) -> bool;
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
