//! The event outbox: every state change writes an event in its own transaction; readers
//! follow it by id, never past the horizon below which every event is final.

use super::{Store, on_backend};
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

impl Store {
    /// Events after `after`, oldest first. Never skips an event that commits late.
    pub async fn events_after(&self, after: EventId, limit: u32) -> Result<Vec<Event>, StoreError> {
        on_backend!(self, s => s.events_after(after, limit).await)
    }

    /// The events of one job, oldest first.
    pub async fn job_events(&self, id: JobId) -> Result<Vec<Event>, StoreError> {
        on_backend!(self, s => s.job_events(id).await)
    }

    /// Writes an event that no job change carries (e.g. `schedule.missed`).
    pub async fn write_event(
        &self,
        event_type: &str,
        queue: Option<&str>,
        job_id: Option<JobId>,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.write_event(event_type, queue, job_id, data).await)
    }

    /// Every event with a lower id is committed: a reader starting just below it misses
    /// nothing that commits later.
    pub async fn event_horizon(&self) -> Result<EventId, StoreError> {
        Ok(EventId(on_backend!(self, s => s.event_horizon().await)?))
    }

    /// The transaction holding the event stream back, if one is.
    pub async fn event_holdback(&self) -> Result<Option<Holdback>, StoreError> {
        on_backend!(self, s => s.event_holdback().await)
    }

    /// The highest event id deleted by retention: a reader resuming below it lost events.
    pub async fn events_pruned_through(&self) -> Result<EventId, StoreError> {
        let value = self.setting("events_pruned_through").await?;
        Ok(EventId(value.and_then(|v| v.parse().ok()).unwrap_or(0)))
    }
}
