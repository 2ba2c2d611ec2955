//! The `audit_log` table: who changed what, newest first.

use sqlx::types::Json;

use super::dialect::{Backend, Db};
use super::rows;
use super::{Fetch, Run};
use crate::admin::{AuditEntry, NewAudit};
use crate::error::StoreError;
use crate::store::codec::Time;

impl Backend {
    pub(crate) async fn write_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        sqlx::query::<Db>(
            "INSERT INTO audit_log (at, actor, action, targets, detail, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Time::now())
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(Json(&entry.targets))
        .bind(entry.detail.as_ref().map(Json))
        .bind(entry.request_id.as_deref())
        .run(self.writer(), "write audit")
        .await?;
        Ok(())
    }

    pub(crate) async fn audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query::<Db>(
            "SELECT id, at, actor, action, targets, detail, request_id FROM audit_log \
             WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .all(self.reader(), "read audit")
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: rows::get(row, "id")?,
                    at: rows::time(row, "at")?,
                    actor: rows::get(row, "actor")?,
                    action: rows::get(row, "action")?,
                    targets: rows::json(row, "targets")?,
                    detail: rows::opt_json(row, "detail")?,
                    request_id: rows::get(row, "request_id")?,
                })
            })
            .collect()
    }
}
