//! The audit log: every change made through the API, who made it and from which request.

use super::{Store, on_backend};
use crate::admin::{AuditEntry, NewAudit};
use crate::error::StoreError;

impl Store {
    /// Writes an audit record.
    pub async fn write_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        on_backend!(self, s => s.write_audit(entry).await)
    }

    /// Audit records, newest first, older than `before` when given.
    pub async fn audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        on_backend!(self, s => s.audit(before, limit).await)
    }
}
