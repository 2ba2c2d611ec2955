//! The event outbox: every state change writes an event in its own transaction; readers
//! follow it by id, never past the horizon below which every event is final.

use chrono::{DateTime, Utc};

use super::{Store, dispatch, on_backend};
use crate::error::StoreError;
use crate::event::Event;
use crate::id::{EventId, JobId};

/// A transaction that holds the event stream back: events committed after it began are
/// hidden from readers until it ends (Postgres only; readers stop below the oldest running
/// transaction so that they never skip an event that commits late).
#[derive(Clone, Debug, PartialEq)]
pub struct Holdback {
    /// Its server process.
    pub pid: i32,
    /// How long it has been open, in seconds.
    pub age_s: f64,
    /// The application name its client gave.
    pub application: String,
    /// Events committed that readers cannot see yet.
    pub hidden: i64,
}

/// How many events of one type a queue wrote in one minute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventCount {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// The queue (none for events of no queue).
    pub queue: Option<String>,
    /// The event type, e.g. `job.completed`.
    pub event_type: String,
    /// How many.
    pub count: i64,
}

dispatch! {
    /// Events of `types` written at or after `since`, counted per minute and queue, oldest
    /// minute first: what the dashboard's charts draw (as far back as events are kept).
    fn event_counts(&self, since: DateTime<Utc>, types: &[&str]) -> Vec<EventCount>;
    /// Events after `after`, oldest first. Never skips an event that commits late.
    fn events_after(&self, after: EventId, limit: u32) -> Vec<Event>;
    /// The events of one job, oldest first.
    fn job_events(&self, id: JobId) -> Vec<Event>;
    /// Writes an event that no job change carries (e.g. `schedule.missed`).
    fn write_event(
        &self,
        event_type: &str,
        queue: Option<&str>,
        job_id: Option<JobId>,
        data: serde_json::Value,
    ) -> ();
    /// The transaction holding the event stream back, if one is.
    fn event_holdback(&self) -> Option<Holdback>;
    /// The newest stored event written before `at`, or `EventId(0)` when none is: a reader
    /// resuming after it starts with the first event written at or after `at`.
    fn last_event_before(&self, at: DateTime<Utc>) -> EventId;
}

impl Store {
    /// Every event with a lower id is committed: a reader starting just below it misses
    /// nothing that commits later.
    pub async fn event_horizon(&self) -> Result<EventId, StoreError> {
        Ok(EventId(on_backend!(self, s => s.event_horizon().await)?))
    }

    /// The highest event id deleted by retention: a reader resuming below it lost events.
    pub async fn events_pruned_through(&self) -> Result<EventId, StoreError> {
        let value = self.setting("events_pruned_through").await?;
        Ok(EventId(value.and_then(|v| v.parse().ok()).unwrap_or(0)))
    }
}
