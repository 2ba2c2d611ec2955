//! The `user_activity` table: when each user was last seen. Counting the rows seen since a
//! window's start gives the distinct users of that window, exactly, on every replica.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::dialect::{Backend, Db, GREATEST};
use super::{Fetch, Run};
use crate::error::{StoreError, query};
use crate::store::codec::Time;

/// Users per statement (two parameters each, well under both databases' limits).
const CHUNK: usize = 1000;

/// Marks each user of `seen` seen at its time, on `executor` (a transaction of the caller's,
/// so a push marks its user with the push). Users are deduplicated and written in id order, so
/// two transactions marking the same users lock their rows in one order.
pub(crate) async fn mark<'c, E>(
    executor: E,
    seen: &BTreeMap<&str, DateTime<Utc>>,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    if seen.is_empty() {
        return Ok(());
    }
    let mut qb =
        sqlx::QueryBuilder::<Db>::new("INSERT INTO user_activity (user_id, last_seen_at) ");
    qb.push_values(seen, |mut row, (user, at)| {
        row.push_bind(user.to_string()).push_bind(Time(*at));
    });
    qb.push(format!(
        " ON CONFLICT (user_id) DO UPDATE SET last_seen_at = \
         {GREATEST}(user_activity.last_seen_at, excluded.last_seen_at)"
    ));
    qb.build().run(executor, "record user activity").await?;
    Ok(())
}

/// The latest time of each user of `seen`, in id order.
pub(crate) fn latest<'a>(
    seen: impl IntoIterator<Item = (&'a str, DateTime<Utc>)>,
) -> BTreeMap<&'a str, DateTime<Utc>> {
    let mut out: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for (user, at) in seen {
        let entry = out.entry(user).or_insert(at);
        *entry = (*entry).max(at);
    }
    out
}

impl Backend {
    /// Marks each user seen at its time; a user's mark only moves forward.
    pub(crate) async fn record_activity(
        &self,
        seen: &[(String, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        let all = latest(seen.iter().map(|(user, at)| (user.as_str(), *at)));
        let all: Vec<(&str, DateTime<Utc>)> = all.into_iter().collect();
        for chunk in all.chunks(CHUNK) {
            mark(self.writer(), &chunk.iter().copied().collect()).await?;
        }
        Ok(())
    }

    /// Distinct users seen at or after each of `since`, in the same order.
    pub(crate) async fn active_users(
        &self,
        since: &[DateTime<Utc>],
    ) -> Result<Vec<i64>, StoreError> {
        // One pass over the range of the oldest window, each window a sum of its own.
        let Some(oldest) = since.iter().min() else {
            return Ok(Vec::new());
        };
        let mut qb = sqlx::QueryBuilder::<Db>::new("SELECT ");
        for (i, start) in since.iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            qb.push("CAST(coalesce(sum(CASE WHEN last_seen_at >= ")
                .push_bind(Time(*start))
                .push(" THEN 1 ELSE 0 END), 0) AS BIGINT)");
        }
        qb.push(" FROM user_activity WHERE last_seen_at >= ")
            .push_bind(Time(*oldest));
        let row = qb.build().one(self.reader(), "count active users").await?;
        (0..since.len())
            .map(|i| sqlx::Row::try_get::<i64, _>(&row, i).map_err(query("read active users")))
            .collect()
    }

    /// Forgets users not seen since `before`; returns how many.
    pub(crate) async fn prune_activity(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        sqlx::query::<Db>("DELETE FROM user_activity WHERE last_seen_at < $1")
            .bind(Time(before))
            .execute(self.background())
            .await
            .map(|done| done.rows_affected())
            .map_err(query("prune user activity"))
    }
}
