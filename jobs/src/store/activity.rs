//! Active users: when each user was last seen, for the cluster-wide gauge of distinct users
//! over trailing windows (`longshore_active_users`, `GET /stats`).

use chrono::{DateTime, Utc};

use super::dispatch;

dispatch! {
    /// Marks each user seen at its time; a user's mark only moves forward.
    fn record_activity(&self, seen: &[(String, DateTime<Utc>)]) -> ();
    /// Distinct users seen at or after each time of `since`, in the same order.
    fn active_users(&self, since: &[DateTime<Utc>]) -> Vec<i64>;
    /// Forgets users not seen since `before`; returns how many.
    fn prune_activity(&self, before: DateTime<Utc>) -> u64;
}
