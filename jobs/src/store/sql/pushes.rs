//! The `pushes` table: the push log, read by position.
//!
//! A read stops below the backend's horizon ([`super::dialect::BELOW_PUSH_HORIZON`]): on
//! Postgres a position carries its writing transaction's id, and a reader only reads below
//! the oldest transaction still running, so a push that commits late is never skipped by a
//! gateway that already read past its position; on SQLite the one writer hands positions
//! out in commit order, and every stored push is final.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use sqlx::types::Json;

use super::dialect::{BELOW_PUSH_HORIZON, Backend, Db, PUSH_HORIZON, Row};
use super::{Fetch, Run};
use super::{rows, settings};
use crate::error::{StoreError, query};
use crate::push::{NewPush, Push, Pushed};
use crate::store::codec::Time;

const COLUMNS: &str = "position, event_id, user_id, kind, payload, at";

/// The setting that holds the highest position deleted by retention.
pub(crate) const PRUNED_THROUGH: &str = "pushes_pruned_through";

fn push(row: &Row) -> Result<Push, StoreError> {
    Ok(Push {
        position: rows::get(row, "position")?,
        event_id: rows::get(row, "event_id")?,
        user_id: rows::get(row, "user_id")?,
        kind: rows::get(row, "kind")?,
        payload: rows::json(row, "payload")?,
        at: rows::time(row, "at")?,
    })
}

impl Backend {
    /// One statement for the batch; a push whose `event_id` is stored already (or comes
    /// earlier in the batch) answers the stored position as a duplicate.
    pub(crate) async fn insert_pushes(
        &self,
        pushes: &[NewPush],
    ) -> Result<Vec<Pushed>, StoreError> {
        let now = Time::now();
        let mut tx = self.write("store pushes").await?;
        let mut qb =
            QueryBuilder::<Db>::new("INSERT INTO pushes (event_id, user_id, kind, payload, at) ");
        qb.push_values(pushes, |mut row, p| {
            row.push_bind(&p.event_id)
                .push_bind(&p.user_id)
                .push_bind(&p.kind)
                .push_bind(Json(&p.payload))
                .push_bind(now);
        });
        qb.push(" ON CONFLICT (event_id) DO NOTHING RETURNING position, event_id");
        let inserted = qb.build().all(&mut *tx, "store pushes").await?;
        let mut fresh = HashMap::with_capacity(inserted.len());
        for row in &inserted {
            let event_id: String = rows::get(row, "event_id")?;
            fresh.insert(event_id, rows::get::<i64>(row, "position")?);
        }
        let mut stored = HashMap::new();
        let known: Vec<&str> = pushes
            .iter()
            .filter(|p| !fresh.contains_key(&p.event_id))
            .map(|p| p.event_id.as_str())
            .collect();
        if !known.is_empty() {
            let mut qb = QueryBuilder::<Db>::new(
                "SELECT position, event_id FROM pushes WHERE event_id IN (",
            );
            let mut ids = qb.separated(", ");
            for event_id in known {
                ids.push_bind(event_id);
            }
            qb.push(")");
            for row in qb.build().all(&mut *tx, "find stored pushes").await? {
                let event_id: String = rows::get(&row, "event_id")?;
                stored.insert(event_id, rows::get::<i64>(&row, "position")?);
            }
        }
        // Each push marks its user active, with the push (at most a batch's worth of users).
        let users = super::activity::latest(pushes.iter().map(|p| (p.user_id.as_str(), now.0)));
        super::activity::mark(&mut *tx, &users).await?;
        tx.commit().await.map_err(query("store pushes"))?;
        pushes
            .iter()
            .map(|p| {
                // The first of the batch with an event id is the one stored.
                let (position, duplicate) = match fresh.remove(&p.event_id) {
                    Some(position) => {
                        stored.insert(p.event_id.clone(), position);
                        (position, false)
                    }
                    None => (
                        *stored.get(&p.event_id).ok_or_else(|| StoreError::Corrupt {
                            what: "push",
                            detail: format!("push {:?} was neither stored nor found", p.event_id),
                        })?,
                        true,
                    ),
                };
                Ok(Pushed {
                    position,
                    event_id: p.event_id.clone(),
                    duplicate,
                })
            })
            .collect()
    }

    /// Pushes after `after`, in position order, below the horizon.
    pub(crate) async fn pushes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Push>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM pushes WHERE position > $1{BELOW_PUSH_HORIZON} \
             ORDER BY position LIMIT $2"
        );
        let rows = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(i64::from(limit))
            .all(self.reader(), "read pushes")
            .await?;
        rows.iter().map(push).collect()
    }

    /// Every push below this position is final: none can appear there later.
    pub(crate) async fn push_horizon(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Db, i64>(sqlx::AssertSqlSafe(format!("SELECT {PUSH_HORIZON}")))
            .one(self.writer(), "push horizon")
            .await
    }

    /// Deletes up to `batch` pushes stored before `before`, and raises the mark a resuming
    /// gateway compares its position with.
    pub(crate) async fn prune_pushes(
        &self,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write("prune pushes").await?;
        let last = sqlx::query_scalar::<Db, Option<i64>>(
            "SELECT max(position) FROM (SELECT position FROM pushes WHERE at < $1 \
             ORDER BY position LIMIT $2) old",
        )
        .bind(Time(before))
        .bind(batch)
        .one(&mut *tx, "prune pushes")
        .await?;
        let Some(last) = last else {
            return Ok(0);
        };
        let deleted = sqlx::query::<Db>("DELETE FROM pushes WHERE position <= $1 AND at < $2")
            .bind(last)
            .bind(Time(before))
            .run(&mut *tx, "prune pushes")
            .await?;
        settings::raise_mark(&mut *tx, PRUNED_THROUGH, last).await?;
        tx.commit().await.map_err(query("prune pushes"))?;
        Ok(deleted)
    }
}
