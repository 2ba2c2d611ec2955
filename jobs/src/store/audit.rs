//! The audit log: every change made through the API, who made it and from which request.

use super::dispatch;
use crate::admin::{AuditEntry, NewAudit};

dispatch! {
    /// Writes an audit record.
    fn write_audit(&self, entry: &NewAudit) -> ();
    /// Audit records, newest first, older than `before` when given.
    fn audit(&self, before: Option<i64>, limit: u32) -> Vec<AuditEntry>;
}
