//! Cron schedules: definitions, the ticks that are due, and the compare-and-set that moves a
//! schedule's next tick so that each tick fires once however many schedulers run.

use chrono::{DateTime, Utc};

use super::{Store, dispatch, on_backend};
use crate::error::StoreError;
use crate::id::JobId;
use crate::schedule::{Schedule, TickCounts};

impl Store {
    /// Creates or replaces a schedule's definition and next tick, and wakes the schedulers
    /// of every process (its next tick may come before the one they sleep until).
    pub async fn put_schedule(&self, schedule: &Schedule) -> Result<Schedule, StoreError> {
        let stored = on_backend!(self, s => s.put_schedule(schedule).await)?;
        self.wakeups.schedules_changed();
        Ok(stored)
    }

    /// Deletes a schedule (its jobs stay); false when there was none.
    pub async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = on_backend!(self, s => s.delete_schedule(id).await)?;
        self.wakeups.schedules_changed();
        Ok(deleted)
    }
}

dispatch! {
    /// One schedule.
    fn schedule(&self, id: &str) -> Option<Schedule>;
    /// Every schedule, by id.
    fn schedules(&self) -> Vec<Schedule>;
    /// Enabled schedules whose next tick is at or before `now`.
    fn due_schedules(&self, now: DateTime<Utc>) -> Vec<Schedule>;
    /// The next tick of any enabled schedule.
    fn next_fire_at(&self) -> Option<DateTime<Utc>>;
    /// Moves a schedule's next tick from `expected` to `next`, recording the latest fire and
    /// adding to its tick counts; false when another scheduler moved it first.
    fn advance_schedule(
        &self,
        id: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        fired: Option<(DateTime<Utc>, JobId)>,
        counts: TickCounts,
    ) -> bool;
}
