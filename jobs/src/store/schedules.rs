//! Cron schedules: definitions, the ticks that are due, and the compare-and-set that moves a
//! schedule's next tick so that each tick fires once however many schedulers run.

use chrono::{DateTime, Utc};

use super::{Store, on_backend};
use crate::error::StoreError;
use crate::id::JobId;
use crate::schedule::Schedule;

impl Store {
    /// Creates or replaces a schedule's definition and next tick.
    pub async fn put_schedule(&self, schedule: &Schedule) -> Result<Schedule, StoreError> {
        on_backend!(self, s => s.put_schedule(schedule).await)
    }

    /// One schedule.
    pub async fn schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        on_backend!(self, s => s.schedule(id).await)
    }

    /// Every schedule, by id.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        on_backend!(self, s => s.schedules().await)
    }

    /// Enabled schedules whose next tick is at or before `now`.
    pub async fn due_schedules(&self, now: DateTime<Utc>) -> Result<Vec<Schedule>, StoreError> {
        on_backend!(self, s => s.due_schedules(now).await)
    }

    /// Deletes a schedule (its jobs stay); false when there was none.
    pub async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError> {
        on_backend!(self, s => s.delete_schedule(id).await)
    }

    /// Moves a schedule's next tick from `expected` to `next`, recording the latest fire and
    /// adding to its tick counts; false when another scheduler moved it first.
    pub async fn advance_schedule(
        &self,
        id: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        fired: Option<(DateTime<Utc>, JobId)>,
        counts: crate::schedule::TickCounts,
    ) -> Result<bool, StoreError> {
        on_backend!(self, s => s.advance_schedule(id, expected, next, fired, counts).await)
    }
}
