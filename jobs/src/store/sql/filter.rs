//! Which jobs a list, a count or a bulk operation concerns, as SQL: one builder over both
//! backends, the backend's dialect spelling the two tests that differ (a tag in a JSON
//! array, a scalar inside the args).

use sqlx::QueryBuilder;

use super::dialect::{self, Db};
use crate::admin::JobFilter;
use crate::id::JobId;
use crate::store::codec::Time;

/// Appends `WHERE …` for `filter`.
pub(crate) fn push_filter(qb: &mut QueryBuilder<Db>, filter: &JobFilter) {
    qb.push(" WHERE 1 = 1");
    if !filter.states.is_empty() {
        qb.push(" AND state IN (");
        let mut list = qb.separated(", ");
        for state in &filter.states {
            list.push_bind(state.as_str());
        }
        qb.push(")");
    }
    if let Some(queue) = &filter.queue {
        qb.push(" AND queue = ").push_bind(queue.clone());
    }
    if let Some(kind) = &filter.kind {
        qb.push(" AND kind = ").push_bind(kind.clone());
    }
    if let Some(key) = &filter.unique_key {
        qb.push(" AND unique_key = ").push_bind(key.clone());
    }
    if let Some(text) = &filter.error {
        qb.push(dialect::CONTAINS_OPEN)
            .push("last_error, ")
            .push_bind(text.clone())
            .push(") > 0");
    }
    if let Some(tag) = &filter.tag {
        dialect::push_has_tag(qb, tag);
    }
    if let Some(after) = filter.created_after {
        qb.push(" AND created_at >= ").push_bind(Time(after));
    }
    if let Some(before) = filter.created_before {
        qb.push(" AND created_at < ").push_bind(Time(before));
    }
    for m in &filter.args {
        dialect::push_args_match(qb, m);
    }
    if !filter.ids.is_empty() {
        qb.push(" AND id IN (");
        let mut list = qb.separated(", ");
        for id in &filter.ids {
            list.push_bind(id.0);
        }
        qb.push(")");
    }
    if let Some(prefix) = &filter.id_prefix {
        // A range of the primary key: ids compare as their 16 bytes on both backends (a
        // `uuid` on Postgres, a blob on SQLite), the order of their hex digits.
        let (first, last) = prefix.range();
        qb.push(" AND id BETWEEN ")
            .push_bind(first.0)
            .push(" AND ")
            .push_bind(last.0);
    }
}

/// `columns` of the jobs matching `filter`, newest first, older than `before`.
pub(crate) fn newest_first(
    columns: &str,
    filter: &JobFilter,
    before: Option<JobId>,
    limit: u32,
) -> QueryBuilder<Db> {
    let mut qb = QueryBuilder::new(format!("SELECT {columns} FROM jobs"));
    push_filter(&mut qb, filter);
    if let Some(before) = before {
        qb.push(" AND id < ").push_bind(before.0);
    }
    qb.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit));
    qb
}
