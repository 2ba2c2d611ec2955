//! The push log: pushes stored once by `event_id`, read by position, kept for the push
//! retention.

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::{Store, dispatch, on_backend};
use crate::error::StoreError;
use crate::push::{NewPush, Push, Pushed};

dispatch! {
    /// Pushes after position `after`, oldest first. Never skips a push that commits late.
    fn pushes_after(&self, after: i64, limit: u32) -> Vec<Push>;
    /// Deletes up to `batch` pushes stored before `before`; the number deleted.
    fn prune_pushes(&self, before: DateTime<Utc>, batch: i64) -> u64;
    /// Every push below this position is committed: a gateway starting just below it misses
    /// nothing that commits later.
    fn push_horizon(&self) -> i64;
}

impl Store {
    /// Stores pushes in one transaction, each once by its `event_id`.
    pub async fn insert_pushes(&self, pushes: &[NewPush]) -> Result<Vec<Pushed>, StoreError> {
        if pushes.is_empty() {
            return Ok(Vec::new());
        }
        let kinds = pushes.iter().map(|p| p.kind.as_str());
        let span = crate::telemetry::producer_span("publish", kinds, pushes.len());
        async { on_backend!(self, s => s.insert_pushes(pushes).await) }
            .instrument(span)
            .await
    }

    /// The highest position deleted by retention: a gateway resuming below it lost pushes.
    pub async fn pushes_pruned_through(&self) -> Result<i64, StoreError> {
        let value = self.setting("pushes_pruned_through").await?;
        Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
    }
}
