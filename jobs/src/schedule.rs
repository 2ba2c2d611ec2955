//! Cron schedules: what a schedule is, and the pure decision of which ticks to fire when the
//! scheduler looks at a schedule at some moment (after downtime, several ticks may be due).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::EnqueueRequest;
use crate::cron::CronSpec;
use crate::id::JobId;
use crate::job::{UniqueOptions, UniqueScope};

/// Most ticks the scheduler considers for one schedule in one look.
pub const MAX_TICKS_PER_LOOK: usize = 10_000;
/// A tick this recent is on time: with `skip`, it still fires.
pub const ON_TIME: Duration = Duration::from_secs(10);
/// The built-in schedule that fires the pruner (retention, set under `[pool.retention]`).
pub const PRUNE_SCHEDULE_ID: &str = "longshore:prune";

/// Ticks of a schedule by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickCounts {
    /// Ticks that enqueued their job.
    pub fired: i64,
    /// Ticks skipped because the previous job had not finished.
    pub skipped: i64,
    /// Ticks dropped by the catch-up policy.
    pub missed: i64,
}

/// What happens to ticks missed while no scheduler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Missed ticks are dropped; only an on-time tick fires.
    Skip,
    /// The latest missed tick fires, once.
    Latest,
    /// Every missed tick within the window fires, oldest first, up to the cap.
    All,
}

/// Whether a tick fires while the previous fire's job is still waiting or running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// It fires anyway.
    Allow,
    /// It is skipped (a `schedule.skipped` event says so).
    Skip,
}

/// Where a schedule was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The config file; reconciled at start, not editable through the API.
    Config,
    /// The API.
    Api,
}

/// A stored schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Chosen by its author; stable.
    pub id: String,
    /// A cron expression with seconds.
    pub cron: String,
    /// An IANA time zone.
    pub timezone: String,
    /// The job each fire enqueues: its kind, args, queue, priority, attempts and tags (the
    /// schedule sets the time, the uniqueness and the metadata of each fire).
    pub template: EnqueueRequest,
    /// Missed ticks.
    pub catch_up: CatchUp,
    /// With `all`: how far back missed ticks still fire.
    pub catch_up_window: Duration,
    /// With `all`: most missed ticks fired at once.
    pub catch_up_cap: u32,
    /// Ticks while the previous job is unfinished.
    pub overlap: Overlap,
    /// Whether it fires.
    pub enabled: bool,
    /// Where it was declared.
    pub source: Source,
    /// The latest tick fired.
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The job of the latest fire.
    pub last_job_id: Option<JobId>,
    /// The next tick.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// Ticks by outcome so far.
    pub counts: TickCounts,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

impl Schedule {
    /// The unique key of the job of the tick at `fire`.
    pub fn fire_key(&self, fire: DateTime<Utc>) -> String {
        format!("schedule:{}:{}", self.id, fire.timestamp_millis())
    }

    /// The tag every job of this schedule has.
    pub fn tag(&self) -> String {
        format!("schedule:{}", self.id)
    }

    /// The job of the tick at `tick`: the template, due at the tick, unique per
    /// (schedule, tick). Without a tick, a manual fire: due now, not unique.
    pub fn fire_request(&self, tick: Option<DateTime<Utc>>) -> EnqueueRequest {
        let mut request = self.template.clone();
        request.tags.push(self.tag());
        request.run_at = tick;
        request.unique = tick.map(|tick| UniqueOptions {
            key: self.fire_key(tick),
            scope: UniqueScope::Any,
            window: None,
        });
        request.metadata = Some(match tick {
            Some(tick) => serde_json::json!({ "schedule": self.id, "tick": tick }),
            None => serde_json::json!({ "schedule": self.id, "triggered_at": Utc::now() }),
        });
        request
    }
}

/// What to do with a schedule at one look.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Ticks to fire, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Ticks dropped by the catch-up policy.
    pub missed: Vec<DateTime<Utc>>,
    /// The next tick after this look.
    pub next: Option<DateTime<Utc>>,
}

/// Decides which due ticks fire at `now`: those from `due` (the stored next tick) up to
/// `now`, by the catch-up policy.
pub fn plan(schedule: &Schedule, spec: &CronSpec, due: DateTime<Utc>, now: DateTime<Utc>) -> Plan {
    let mut ticks = Vec::new();
    let mut tick = Some(due);
    while let Some(t) = tick {
        if t > now || ticks.len() == MAX_TICKS_PER_LOOK {
            break;
        }
        ticks.push(t);
        tick = spec.next_after(t);
    }
    let next = match ticks.last() {
        Some(last) => spec.next_after((*last).max(now)),
        None => Some(due),
    };
    // A tick at most ON_TIME old is merely late (a slow look, a skewed clock): it fires
    // under every policy. The policy decides about older ticks, missed during downtime.
    let on_time = chrono::Duration::from_std(ON_TIME).unwrap_or_default();
    let (late, old): (Vec<_>, Vec<_>) = ticks.into_iter().partition(|t| now - *t <= on_time);
    let (mut fire, missed): (Vec<_>, Vec<_>) = match schedule.catch_up {
        CatchUp::Skip => (Vec::new(), old),
        CatchUp::Latest => {
            let mut old = old;
            let newest = old.pop();
            (newest.into_iter().collect(), old)
        }
        CatchUp::All => {
            let window = chrono::Duration::from_std(schedule.catch_up_window).unwrap_or_default();
            let (mut recent, mut missed): (Vec<_>, Vec<_>) =
                old.into_iter().partition(|t| now - *t <= window);
            let cap = schedule.catch_up_cap as usize;
            if recent.len() > cap {
                // The oldest within the window, up to the cap; the rest are missed.
                missed.extend(recent.split_off(cap));
                missed.sort();
            }
            (recent, missed)
        }
    };
    fire.extend(late);
    Plan { fire, missed, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(catch_up: CatchUp, window_s: u64, cap: u32) -> Schedule {
        Schedule {
            id: "s".to_owned(),
            cron: "0 * * * * *".to_owned(),
            timezone: "UTC".to_owned(),
            template: EnqueueRequest {
                kind: "noop".to_owned(),
                ..EnqueueRequest::default()
            },
            catch_up,
            catch_up_window: Duration::from_secs(window_s),
            catch_up_cap: cap,
            overlap: Overlap::Allow,
            enabled: true,
            source: Source::Api,
            last_fire_at: None,
            last_job_id: None,
            next_fire_at: None,
            counts: TickCounts::default(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_on_time_tick_fires_under_every_policy() {
        let spec = CronSpec::parse("0 * * * * *", "UTC").unwrap();
        for policy in [CatchUp::Skip, CatchUp::Latest, CatchUp::All] {
            let plan = plan(
                &schedule(policy, 3600, 10),
                &spec,
                at("2026-11-24T10:00:00Z"),
                at("2026-11-24T10:00:00.300Z"),
            );
            assert_eq!(plan.fire, [at("2026-11-24T10:00:00Z")], "{policy:?}");
            assert!(plan.missed.is_empty());
            assert_eq!(plan.next, Some(at("2026-11-24T10:01:00Z")));
        }
    }

    #[test]
    fn ticks_a_few_seconds_late_fire_under_every_policy() {
        // A look 3.5 s after three one-second ticks (a slow look, or a clock 2 s ahead).
        let spec = CronSpec::parse("* * * * * *", "UTC").unwrap();
        for policy in [CatchUp::Skip, CatchUp::Latest, CatchUp::All] {
            let p = plan(
                &schedule(policy, 0, 1),
                &spec,
                at("2026-11-24T10:00:01Z"),
                at("2026-11-24T10:00:03.500Z"),
            );
            assert_eq!(p.fire.len(), 3, "{policy:?}");
            assert!(p.missed.is_empty());
        }
    }

    #[test]
    fn after_downtime_each_policy_decides() {
        let spec = CronSpec::parse("0 * * * * *", "UTC").unwrap();
        // Down from 10:00 to 10:30:30: 31 ticks were due (10:00 … 10:30).
        let (due, now) = (at("2026-11-24T10:00:00Z"), at("2026-11-24T10:30:30Z"));
        let skip = plan(&schedule(CatchUp::Skip, 0, 0), &spec, due, now);
        assert_eq!(skip.fire.len(), 0, "10:30 is 30 s late: not on time");
        assert_eq!(skip.missed.len(), 31);
        let latest = plan(&schedule(CatchUp::Latest, 0, 0), &spec, due, now);
        assert_eq!(latest.fire, [at("2026-11-24T10:30:00Z")]);
        assert_eq!(latest.missed.len(), 30);
        // All within 10 minutes, at most 5: the oldest five of 10:21 … 10:30.
        let all = plan(&schedule(CatchUp::All, 600, 5), &spec, due, now);
        assert_eq!(
            all.fire,
            ["10:21", "10:22", "10:23", "10:24", "10:25"]
                .map(|m| at(&format!("2026-11-24T{m}:00Z")))
        );
        assert_eq!(all.missed.len(), 26);
        for p in [&skip, &latest, &all] {
            assert_eq!(p.next, Some(at("2026-11-24T10:31:00Z")));
        }
    }

    fn def(job: serde_json::Value) -> Result<ScheduleDef, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "id": "s", "cron": "0 * * * * *", "job": job }))
    }

    #[test]
    fn a_schedules_job_is_an_enqueue_request_without_what_the_schedule_sets() {
        let now = Utc::now();
        let ok = def(serde_json::json!({ "kind": "noop", "queue": "q", "tags": ["t"] })).unwrap();
        let schedule = ok.into_schedule(Source::Api, now, None).unwrap();
        let tick = at("2026-12-01T10:00:00Z");
        let request = schedule.fire_request(Some(tick));
        assert_eq!(
            (
                request.kind.as_str(),
                request.queue.as_deref(),
                request.run_at
            ),
            ("noop", Some("q"), Some(tick))
        );
        assert_eq!(request.tags, ["t", "schedule:s"]);
        assert_eq!(request.unique.unwrap().key, schedule.fire_key(tick));
        assert_eq!(request.metadata.unwrap()["schedule"], "s");
        for field in ["delay_ms", "run_at", "unique", "metadata", "timeout_ms"] {
            let value = match field {
                "run_at" => serde_json::json!("2026-12-01T10:00:00Z"),
                "unique" => serde_json::json!({ "key": "k" }),
                "metadata" => serde_json::json!({}),
                _ => serde_json::json!(5),
            };
            let job = serde_json::json!({ "kind": "noop", field: value });
            let refused = def(job).unwrap().into_schedule(Source::Api, now, None);
            assert_eq!(refused.unwrap_err().field, format!("job.{field}"));
        }
        let typo = def(serde_json::json!({ "kind": "noop", "queu": "q" })).unwrap_err();
        assert!(typo.to_string().contains("queu"), "{typo}");
    }
}

fn corrupt(what: &'static str, value: &str) -> crate::error::StoreError {
    crate::error::StoreError::Corrupt {
        what,
        detail: format!("unknown value {value:?}"),
    }
}

pub(crate) fn catch_up_name(c: CatchUp) -> &'static str {
    match c {
        CatchUp::Skip => "skip",
        CatchUp::Latest => "latest",
        CatchUp::All => "all",
    }
}

pub(crate) fn parse_catch_up(s: &str) -> Result<CatchUp, crate::error::StoreError> {
    match s {
        "skip" => Ok(CatchUp::Skip),
        "latest" => Ok(CatchUp::Latest),
        "all" => Ok(CatchUp::All),
        other => Err(corrupt("catch-up policy", other)),
    }
}

pub(crate) fn overlap_name(o: Overlap) -> &'static str {
    match o {
        Overlap::Allow => "allow",
        Overlap::Skip => "skip",
    }
}

pub(crate) fn parse_overlap(s: &str) -> Result<Overlap, crate::error::StoreError> {
    match s {
        "allow" => Ok(Overlap::Allow),
        "skip" => Ok(Overlap::Skip),
        other => Err(corrupt("overlap policy", other)),
    }
}

impl Source {
    /// `config` or `api`, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Api => "api",
        }
    }
}

pub(crate) fn parse_source(s: &str) -> Result<Source, crate::error::StoreError> {
    match s {
        "config" => Ok(Source::Config),
        "api" => Ok(Source::Api),
        other => Err(corrupt("schedule source", other)),
    }
}

/// A schedule as its author declares it (config file or API).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    /// A stable id: 1 to 100 of `A-Z a-z 0-9 _ - . :`.
    pub id: String,
    /// A cron expression with seconds (`sec min hour day month weekday`), or five fields.
    pub cron: String,
    /// An IANA time zone. Defaults to UTC.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The job each tick enqueues (see [`Schedule::template`]).
    pub job: EnqueueRequest,
    /// Missed ticks after downtime. Defaults to `skip`.
    #[serde(default = "skip")]
    pub catch_up: CatchUp,
    /// With `all`: how far back missed ticks still fire. Defaults to 1 h.
    #[serde(default = "hour", with = "humantime_serde")]
    pub catch_up_window: Duration,
    /// With `all`: most missed ticks fired at once. Defaults to 100.
    #[serde(default = "hundred")]
    pub catch_up_cap: u32,
    /// Ticks while the previous job is unfinished. Defaults to `allow`.
    #[serde(default = "allow")]
    pub overlap: Overlap,
    /// Whether it fires. Defaults to true.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn utc() -> String {
    "UTC".to_owned()
}
fn skip() -> CatchUp {
    CatchUp::Skip
}
fn hour() -> Duration {
    Duration::from_secs(3600)
}
fn hundred() -> u32 {
    100
}
fn allow() -> Overlap {
    Overlap::Allow
}
fn yes() -> bool {
    true
}

/// A field of a schedule definition that is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSchedule {
    /// The field, e.g. `cron` or `timezone`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> InvalidSchedule {
    InvalidSchedule {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A schedule's job names what to run and where; the schedule decides when (each tick's
/// time), the uniqueness (one job per tick) and the metadata (the schedule and the tick).
fn check_template(job: &EnqueueRequest) -> Result<(), InvalidSchedule> {
    if job.kind.is_empty() {
        return Err(invalid("job.kind", "name the kind each tick enqueues"));
    }
    let set_by_schedule = [
        ("job.delay_ms", job.delay_ms.is_some()),
        ("job.run_at", job.run_at.is_some()),
        ("job.unique", job.unique.is_some()),
        ("job.metadata", job.metadata.is_some()),
        ("job.timeout_ms", job.timeout_ms.is_some()),
    ];
    match set_by_schedule.into_iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(invalid(
            field,
            "a schedule's job takes kind, args, queue, priority, max_attempts and tags",
        )),
        None => Ok(()),
    }
}

impl ScheduleDef {
    /// Checks the definition and makes the stored schedule. Its next tick is kept from
    /// `existing` when the timing did not change, else the first tick after `now`.
    pub fn into_schedule(
        self,
        source: Source,
        now: DateTime<Utc>,
        existing: Option<&Schedule>,
    ) -> Result<Schedule, InvalidSchedule> {
        let plain = !self.id.is_empty()
            && self.id.len() <= 100
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !plain {
            return Err(invalid("id", "1 to 100 of A-Z a-z 0-9 _ - . :"));
        }
        let spec =
            CronSpec::parse(&self.cron, &self.timezone).map_err(|e| invalid(e.field, e.message))?;
        check_template(&self.job)?;
        if self.catch_up_cap == 0 || self.catch_up_cap as usize > MAX_TICKS_PER_LOOK {
            return Err(invalid(
                "catch_up_cap",
                format!("must be 1 to {MAX_TICKS_PER_LOOK}"),
            ));
        }
        if self.catch_up_window > Duration::from_secs(31 * 24 * 3600) {
            return Err(invalid("catch_up_window", "at most 31 days"));
        }
        let same_timing = existing.filter(|e| {
            e.cron == spec.expr() && e.timezone == self.timezone && e.enabled && self.enabled
        });
        let next_fire_at = match same_timing {
            Some(e) => e.next_fire_at,
            None => spec.next_after(now),
        };
        Ok(Schedule {
            id: self.id,
            cron: spec.expr().to_owned(),
            timezone: self.timezone,
            template: self.job,
            catch_up: self.catch_up,
            catch_up_window: self.catch_up_window,
            catch_up_cap: self.catch_up_cap,
            overlap: self.overlap,
            enabled: self.enabled,
            source,
            last_fire_at: existing.and_then(|e| e.last_fire_at),
            last_job_id: existing.and_then(|e| e.last_job_id),
            next_fire_at,
            counts: existing.map(|e| e.counts).unwrap_or_default(),
            created_at: existing.map_or(now, |e| e.created_at),
            updated_at: now,
        })
    }
}
