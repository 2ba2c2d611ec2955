//! Bulk operations: their progress, and the lease under which one process runs each.

use std::time::Duration;

use uuid::Uuid;

use super::dispatch;
use crate::admin::Operation;

dispatch! {
    /// Records a new bulk operation.
    fn create_operation(&self, op: &Operation) -> ();
    /// Records a bulk operation's progress (and renews its lease); false when `op.owner` no
    /// longer owns it (another process took it over).
    fn update_operation(&self, op: &Operation) -> bool;
    /// Renews the lease of a running operation; false when `owner` no longer owns it.
    fn touch_operation(&self, id: Uuid, owner: &str) -> bool;
    /// Makes `owner` the owner of every running operation whose lease was not renewed for
    /// `stale`, and returns them: their process died, and they are to be resumed.
    fn take_over_operations(&self, owner: &str, stale: Duration) -> Vec<Operation>;
    /// One bulk operation.
    fn operation(&self, id: Uuid) -> Option<Operation>;
    /// Bulk operations, newest first (their ids are UUIDv7, in the order they were made),
    /// older than `before`.
    fn operations(&self, before: Option<Uuid>, limit: u32) -> Vec<Operation>;
}
