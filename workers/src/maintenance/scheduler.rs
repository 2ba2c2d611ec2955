//! The scheduler: every process may run it. It looks for schedules whose next tick is due,
//! lets the catch-up policy decide which ticks fire, enqueues each with the unique key
//! `(schedule, tick)` — so however many schedulers see a tick, it yields one job — and moves
//! the schedule's next tick forward by compare-and-set.

use longshore_jobs::telemetry::{OTEL_NAME, OUTCOME, SCHEDULE_NAME};
use std::time::Duration;
use tracing::Instrument;

use chrono::{DateTime, Utc};
use longshore_jobs::cron::CronSpec;
use longshore_jobs::schedule::{self, Overlap, Schedule, TickCounts};
use longshore_jobs::{Client, EnqueueError, JobId, StoreError, event};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// What one look found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Jobs enqueued (duplicates of another scheduler's fire not counted).
    pub fired: u32,
    /// Ticks skipped because the previous job had not finished.
    pub skipped: u32,
    /// Ticks dropped by the catch-up policy.
    pub missed: u32,
}

/// Fires due schedules.
pub struct Scheduler {
    client: Client,
    /// The longest it sleeps: it wakes at the next tick of any schedule, and when a schedule
    /// changes in any process.
    interval: Duration,
    /// Added to this process's clock (tests use it to play a skewed host).
    offset: chrono::Duration,
}

impl Scheduler {
    /// A scheduler that looks at every tick, and at least every `interval`.
    pub fn new(client: Client, interval: Duration) -> Scheduler {
        Scheduler {
            client,
            interval,
            offset: chrono::Duration::zero(),
        }
    }

    /// Reads the clock `offset` ahead (negative: behind).
    pub fn with_clock_offset(mut self, offset: chrono::Duration) -> Scheduler {
        self.offset = offset;
        self
    }

    /// This scheduler's now.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// Fires every schedule due at `now`.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, StoreError> {
        let mut report = TickReport::default();
        for schedule in self.client.store().due_schedules(now).await? {
            let counts = self.look(&schedule, now).await?;
            report.fired += counts.fired as u32;
            report.skipped += counts.skipped as u32;
            report.missed += counts.missed as u32;
        }
        Ok(report)
    }

    /// One schedule at one look: the catch-up policy plans the ticks, each planned tick
    /// fires (or is skipped while the previous job runs), the dropped ones are reported,
    /// and the next tick moves forward by compare-and-set.
    async fn look(
        &self,
        schedule: &Schedule,
        now: DateTime<Utc>,
    ) -> Result<TickCounts, StoreError> {
        let mut counts = TickCounts::default();
        let Some(due) = schedule.next_fire_at else {
            return Ok(counts);
        };
        let spec = match CronSpec::parse(&schedule.cron, &schedule.timezone) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::warn!(schedule = %schedule.id, %error, "schedule cannot be evaluated; disabled in effect");
                return Ok(counts);
            }
        };
        let plan = schedule::plan(schedule, &spec, due, now);
        let mut fired: Option<(DateTime<Utc>, JobId)> = None;
        let mut previous = schedule.last_job_id;
        for &tick in &plan.fire {
            if schedule.overlap == Overlap::Skip && self.unfinished(previous).await? {
                counts.skipped += 1;
                self.event(
                    event::SCHEDULE_SKIPPED,
                    previous,
                    json!({
                        "schedule": schedule.id, "tick": tick,
                        "reason": "the previous job has not finished",
                    }),
                )
                .await?;
                continue;
            }
            if let Some(job) = self.fire(schedule, tick, &mut counts).await? {
                fired = Some((tick, job));
                previous = Some(job);
            }
        }
        if !plan.missed.is_empty() {
            counts.missed += plan.missed.len() as i64;
            self.event(
                event::SCHEDULE_MISSED,
                None,
                json!({
                    "schedule": schedule.id,
                    "count": plan.missed.len(),
                    "first": plan.missed.first(),
                    "last": plan.missed.last(),
                    "policy": schedule.catch_up,
                }),
            )
            .await?;
        }
        self.client
            .store()
            .advance_schedule(&schedule.id, due, plan.next, fired, counts)
            .await?;
        Ok(counts)
    }

    /// Enqueues the job of one tick, unique per (schedule, tick): the job, also when another
    /// scheduler fired the tick first (only the first counts it). `None` when the template
    /// is refused: the tick is dropped, and said so.
    async fn fire(
        &self,
        schedule: &Schedule,
        tick: DateTime<Utc>,
        counts: &mut TickCounts,
    ) -> Result<Option<JobId>, StoreError> {
        let span = tracing::info_span!(
            "fire",
            { OTEL_NAME } = %format_args!("fire {}", schedule.id),
            { SCHEDULE_NAME } = %schedule.id,
            { OUTCOME } = tracing::field::Empty,
        );
        let fired = self
            .client
            .enqueue(schedule.fire_request(Some(tick)))
            .instrument(span.clone())
            .await;
        span.record(
            OUTCOME,
            match &fired {
                Ok(enqueued) if enqueued.duplicate => "duplicate",
                Ok(_) => "fired",
                Err(EnqueueError::Store(_)) => "failed",
                Err(_) => "refused",
            },
        );
        match fired {
            Ok(enqueued) => {
                if !enqueued.duplicate {
                    counts.fired += 1;
                    let data = json!({ "schedule": schedule.id, "tick": tick });
                    self.event(event::SCHEDULE_FIRED, Some(enqueued.id), data)
                        .await?;
                }
                Ok(Some(enqueued.id))
            }
            Err(EnqueueError::Store(error)) => Err(error),
            Err(error) => {
                tracing::warn!(schedule = %schedule.id, %error, "the schedule's job template is invalid; tick dropped");
                Ok(None)
            }
        }
    }

    async fn event(
        &self,
        event_type: &str,
        job: Option<JobId>,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.client
            .store()
            .write_event(event_type, None, job, data)
            .await
    }

    async fn unfinished(&self, job: Option<JobId>) -> Result<bool, StoreError> {
        let Some(id) = job else { return Ok(false) };
        Ok(self
            .client
            .store()
            .job(id)
            .await?
            .is_some_and(|job| !job.state.is_terminal()))
    }

    /// How long to sleep after a look: until the next tick of any enabled schedule (by this
    /// scheduler's clock), at most `interval`. A tick still due right after a look is one
    /// that cannot move (a cron that no longer parses) or another scheduler's to move: it is
    /// looked at again in a second, not at once.
    async fn next_look(&self) -> Result<Duration, StoreError> {
        let until = match self.client.store().next_fire_at().await? {
            Some(at) => (at - self.now()).to_std().unwrap_or_default(),
            None => self.interval,
        };
        let until = if until.is_zero() {
            Duration::from_secs(1)
        } else {
            until
        };
        Ok(until.min(self.interval))
    }

    /// Looks until `stop`: at each schedule's tick, when a schedule changes (in this process
    /// or another), and at least every `interval`.
    pub async fn run(self, stop: CancellationToken) {
        let changed = self.client.store().wakeups().schedules();
        loop {
            let looked = match self.tick(self.now()).await {
                Ok(_) => self.next_look().await,
                Err(error) => Err(error),
            };
            let wait = looked.unwrap_or_else(|error| {
                tracing::warn!(%error, "scheduler look failed; retrying in a second");
                Duration::from_secs(1).min(self.interval)
            });
            tokio::select! {
                () = stop.cancelled() => return,
                () = changed.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
