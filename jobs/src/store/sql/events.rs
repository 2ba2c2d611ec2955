//! The `events` outbox: writing an event, and reading the stream in order.
//!
//! A read of the stream stops below the backend's horizon
//! ([`super::dialect::BELOW_EVENT_HORIZON`]): on Postgres an id carries its writing
//! transaction's id, and a reader only reads below the oldest transaction still running, so
//! an event that commits late is never skipped by a reader that already read past its id; on
//! SQLite the one writer hands ids out in commit order, and every stored event is final.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::dialect::{BELOW_EVENT_HORIZON, Backend, Db, EVENT_HORIZON};
use super::rows;
use super::{Fetch, Run};
use crate::error::{StoreError, query};
use crate::event::Event;
use crate::id::{EventId, JobId};
use crate::store::EventCount;
use crate::store::codec::Time;

/// An event about to be written.
pub(crate) struct NewEvent<'a> {
    pub event_type: &'a str,
    pub job_id: Option<JobId>,
    pub queue: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub state: Option<&'a str>,
    pub attempt: Option<i32>,
    pub data: Option<serde_json::Value>,
}

/// Writes an event on `executor`, a transaction of the caller's as a rule, so the event
/// commits with the change it reports. Its id comes from the database (on Postgres it
/// carries the writing transaction's id; see the horizon above).
pub(crate) async fn write<'c, E>(executor: E, event: NewEvent<'_>) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    sqlx::query::<Db>(
        "INSERT INTO events (at, type, job_id, queue, kind, state, attempt, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Time::now())
    .bind(event.event_type)
    .bind(event.job_id.map(|id| id.0))
    .bind(event.queue)
    .bind(event.kind)
    .bind(event.state)
    .bind(event.attempt)
    .bind(event.data.map(Json))
    .run(executor, "write event")
    .await?;
    Ok(())
}

impl Backend {
    pub(crate) async fn events_after(
        &self,
        after: EventId,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let sql = format!(
            "SELECT {} FROM events WHERE id > $1{BELOW_EVENT_HORIZON} ORDER BY id LIMIT $2",
            rows::EVENT_COLUMNS
        );
        let rows = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(after.0)
            .bind(i64::from(limit))
            .all(self.reader(), "read events")
            .await?;
        rows.iter().map(rows::event).collect()
    }

    /// Every event below this id is final: none can appear there later.
    pub(crate) async fn event_horizon(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<Db, i64>(sqlx::AssertSqlSafe(format!("SELECT {EVENT_HORIZON}")))
            .one(self.writer(), "event horizon")
            .await
    }

    pub(crate) async fn write_event(
        &self,
        event_type: &str,
        queue: Option<&str>,
        job_id: Option<JobId>,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        let event = NewEvent {
            event_type,
            job_id,
            queue,
            kind: None,
            state: None,
            attempt: None,
            data: Some(data),
        };
        write(self.writer(), event).await
    }

    pub(crate) async fn job_events(&self, id: JobId) -> Result<Vec<Event>, StoreError> {
        let sql = format!(
            "SELECT {} FROM events WHERE job_id = $1 ORDER BY id",
            rows::EVENT_COLUMNS
        );
        let rows = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id.0)
            .all(self.reader(), "read job events")
            .await?;
        rows.iter().map(rows::event).collect()
    }

    /// Events of `types` written at or after `since`, counted per minute and queue in the
    /// database (a range of `events_at_idx`), oldest minute first.
    pub(crate) async fn event_counts(
        &self,
        since: DateTime<Utc>,
        types: &[&str],
    ) -> Result<Vec<EventCount>, StoreError> {
        use sqlx::Row as _;
        let mut qb = sqlx::QueryBuilder::<Db>::new(format!(
            "SELECT {} AS minute, queue, type, count(*) AS n FROM events WHERE at >= ",
            super::dialect::EVENT_MINUTE
        ));
        qb.push_bind(Time(since)).push(" AND type IN (");
        let mut list = qb.separated(", ");
        for t in types {
            list.push_bind(t.to_string());
        }
        qb.push(") GROUP BY 1, 2, 3 ORDER BY 1");
        let rows = qb
            .build()
            .all(self.reader(), "count events by minute")
            .await?;
        rows.iter()
            .map(|row| {
                let minute: i64 = row.try_get("minute")?;
                Ok(EventCount {
                    minute: DateTime::from_timestamp(minute * 60, 0).unwrap_or_default(),
                    queue: row.try_get("queue")?,
                    event_type: row.try_get("type")?,
                    count: row.try_get("n")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query("read event counts"))
    }

    /// Two index lookups, never a scan of the table: the event written last before `at` (by
    /// `events_at_idx`), then the highest id written before `at` among the 1,000 ids from it
    /// on (by the key). Ids follow time only closely (on Postgres they follow the writing
    /// transactions, and the clocks of processes differ a little), so a higher id may carry
    /// an earlier time.
    pub(crate) async fn last_event_before(&self, at: DateTime<Utc>) -> Result<EventId, StoreError> {
        sqlx::query_scalar::<Db, Option<i64>>(
            "SELECT max(id) FROM ( \
               SELECT id, at FROM events \
               WHERE id >= (SELECT id FROM events WHERE at < $1 ORDER BY at DESC LIMIT 1) \
               ORDER BY id LIMIT 1000 \
             ) near WHERE at < $1",
        )
        .bind(Time(at))
        .fetch_one(self.reader())
        .await
        .map(|id| EventId(id.unwrap_or(0)))
        .map_err(query("find the last event before a time"))
    }
}
