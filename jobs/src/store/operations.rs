//! Bulk operations: their progress, and the lease under which one process runs each.

use std::time::Duration;

use uuid::Uuid;

use super::{Store, on_backend};
use crate::admin::Operation;
use crate::error::StoreError;

impl Store {
    /// Records a new bulk operation.
    pub async fn create_operation(&self, op: &Operation) -> Result<(), StoreError> {
        on_backend!(self, s => s.create_operation(op).await)
    }

    /// Records a bulk operation's progress (and renews its lease); false when `op.owner` no
    /// longer owns it (another process took it over).
    pub async fn update_operation(&self, op: &Operation) -> Result<bool, StoreError> {
        on_backend!(self, s => s.update_operation(op).await)
    }

    /// Renews the lease of a running operation; false when `owner` no longer owns it.
    pub async fn touch_operation(&self, id: Uuid, owner: &str) -> Result<bool, StoreError> {
        on_backend!(self, s => s.touch_operation(id, owner).await)
    }

    /// Makes `owner` the owner of every running operation whose lease was not renewed for
    /// `stale`, and returns them: their process died, and they are to be resumed.
    pub async fn take_over_operations(
        &self,
        owner: &str,
        stale: Duration,
    ) -> Result<Vec<Operation>, StoreError> {
        on_backend!(self, s => s.take_over_operations(owner, stale).await)
    }

    /// One bulk operation.
    pub async fn operation(&self, id: Uuid) -> Result<Option<Operation>, StoreError> {
        on_backend!(self, s => s.operation(id).await)
    }

    /// The latest bulk operations.
    pub async fn operations(&self, limit: u32) -> Result<Vec<Operation>, StoreError> {
        on_backend!(self, s => s.operations(limit).await)
    }
}
