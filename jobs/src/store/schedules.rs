//! Cron schedules: definitions, the ticks that are due, and the compare-and-set that moves a
//! schedule's next tick so that each tick fires once however many schedulers run.

use chrono::{DateTime, Utc};

use super::dispatch;
use crate::id::JobId;
use crate::schedule::{Schedule, TickCounts};

dispatch! {
    /// Creates or replaces a schedule's definition and next tick.
    fn put_schedule(&self, schedule: &Schedule) -> Schedule;
    /// One schedule.
    fn schedule(&self, id: &str) -> Option<Schedule>;
    /// Every schedule, by id.
    fn schedules(&self) -> Vec<Schedule>;
    /// Enabled schedules whose next tick is at or before `now`.
    fn due_schedules(&self, now: DateTime<Utc>) -> Vec<Schedule>;
    /// Deletes a schedule (its jobs stay); false when there was none.
    fn delete_schedule(&self, id: &str) -> bool;
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
