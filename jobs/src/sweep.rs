//! Sweeps: declared, bounded, resumable clean-up passes over another database.
//!
//! A sweep names a target database, a candidate query, a retention, a batch size, a budget
//! and an action. A pass is a job of kind `sweep`: it pages through the candidates by key
//! (keyset pagination, never OFFSET), acts on each page, and checkpoints the last key in the
//! job's progress, so a pass that crashes or runs out of budget resumes where it stopped.
//!
//! ## The candidate query
//! Its parameters: `$1` the cutoff (now − retention), `$2` the last key done (NULL at the
//! start), `$3` the page size. It returns a text column `key`, in ascending key order, and
//! may return a JSON column `args` for fan-out. On Postgres the cutoff is a `timestamptz`; on
//! SQLite it is RFC 3339 text.
//!
//! ## The actions
//! - `statement`: one statement per page; `$1` holds the page's keys (a `text[]` on
//!   Postgres, a JSON array on SQLite). The checkpoint is saved after it commits, so a crash
//!   between the two repeats at most that page's statement: write it to be repeatable
//!   (a DELETE is), and to re-check what the query checked.
//! - `fan_out`: one job of `kind` per candidate, its args the row's `args` (or `{"key": …}`),
//!   unique per (sweep, key), so each item has its own retries and a failure never stops the
//!   pass. A page's children commit with the checkpoint, so a crash never makes them twice.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::EnqueueRequest;
use crate::schedule::{CatchUp, Overlap, ScheduleDef, Source};

pub use crate::target::TargetDef;

/// What a sweep does with a page of candidates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SweepAction {
    /// One statement per page; `$1` is the page's keys.
    Statement {
        /// The statement, e.g. `DELETE FROM accounts WHERE id = ANY($1::text[]::bigint[])`.
        sql: String,
    },
    /// One job per candidate.
    FanOut {
        /// The kind of the child jobs.
        kind: String,
        /// Their queue (default: the kind's).
        #[serde(default)]
        queue: Option<String>,
    },
}

/// A sweep as declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepDef {
    /// A stable name: 1 to 100 of `A-Z a-z 0-9 _ - . :`.
    pub name: String,
    /// The name of a target in `[targets]`.
    pub target: String,
    /// The candidate query (see the module's documentation).
    pub query: String,
    /// Candidates older than this are swept, e.g. `30days`.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Candidates per page. Defaults to 500.
    #[serde(default = "batch")]
    pub batch: u32,
    /// Most candidates one pass acts on; the next pass goes on from the checkpoint.
    /// Defaults to no limit.
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// A pause between pages, to spare the target. Defaults to none.
    #[serde(default, with = "humantime_serde")]
    pub pause: Duration,
    /// Longest one pass runs. Defaults to 10 minutes.
    #[serde(default = "ten_minutes", with = "humantime_serde")]
    pub max_time: Duration,
    /// A cron expression (with seconds) that starts a pass; none: passes start on request.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Its time zone. Defaults to UTC.
    #[serde(default = "utc")]
    pub timezone: String,
    /// What happens to each page.
    pub action: SweepAction,
}

/// Candidates per page when a sweep names none.
pub const DEFAULT_BATCH: u32 = 500;
/// The longest a pass runs when a sweep names none.
pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(600);

fn batch() -> u32 {
    DEFAULT_BATCH
}
fn ten_minutes() -> Duration {
    DEFAULT_MAX_TIME
}
fn utc() -> String {
    "UTC".to_owned()
}

/// A sweep as stored: its definition and where it was declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredSweep {
    /// The definition.
    pub def: SweepDef,
    /// The config file (reconciled at start, read-only through the API) or the API.
    pub source: Source,
    /// Where the next pass starts: after this key when the last pass was stopped by its
    /// budget; at the beginning when `None`.
    pub resume_after: Option<String>,
    /// First stored.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// The id of the schedule that starts a sweep's passes.
pub fn schedule_id(sweep: &str) -> String {
    format!("sweep:{sweep}")
}

/// Whether a schedule id belongs to a sweep (it is then managed with the sweep).
pub fn is_sweep_schedule(id: &str) -> bool {
    id.starts_with("sweep:")
}

impl SweepDef {
    /// Checks the definition against the known targets, naming the bad field.
    pub fn validate(&self, targets: &BTreeMap<String, TargetDef>) -> Result<(), (String, String)> {
        let bad = |field: &str, message: &str| Err((field.to_owned(), message.to_owned()));
        let plain = !self.name.is_empty()
            && self.name.len() <= 100
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !plain || self.name.bytes().all(|b| b == b'.') {
            return bad("name", "1 to 100 of A-Z a-z 0-9 _ - . :, not only dots");
        }
        if !targets.contains_key(&self.target) {
            return bad("target", "names no target in [targets]");
        }
        if !(self.query.contains("$1") && self.query.contains("$2") && self.query.contains("$3")) {
            return bad(
                "query",
                "use $1 (the cutoff), $2 (the last key) and $3 (the page size)",
            );
        }
        if self.batch == 0 || self.batch > 10_000 {
            return bad("batch", "must be 1 to 10000");
        }
        if self.max_time.is_zero() {
            return bad("max_time", "must be above zero");
        }
        if self.max_rows == Some(0) {
            return bad("max_rows", "must be above zero (leave it out for no limit)");
        }
        if self.retention > Duration::from_secs(100 * 365 * 24 * 3600) {
            return bad("retention", "must be at most 100 years");
        }
        if let SweepAction::Statement { sql } = &self.action
            && !sql.contains("$1")
        {
            return bad("action.sql", "use $1 for the page's keys");
        }
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return bad("timezone", "not an IANA time zone, e.g. Europe/Berlin");
        }
        if let Some(cron) = &self.schedule {
            crate::cron::CronSpec::parse(cron, &self.timezone)
                .map_err(|e| (e.field.replace("cron", "schedule"), e.message))?;
        }
        Ok(())
    }

    /// The schedule that starts this sweep's passes, when it has one: a missed tick fires
    /// once (the pass resumes anyway), and a tick while a pass runs is skipped.
    pub fn schedule(&self) -> Option<ScheduleDef> {
        let cron = self.schedule.as_ref()?;
        Some(ScheduleDef {
            id: schedule_id(&self.name),
            cron: cron.clone(),
            timezone: self.timezone.clone(),
            job: EnqueueRequest {
                kind: "sweep".to_owned(),
                args: Some(serde_json::json!({ "sweep": self.name })),
                ..EnqueueRequest::default()
            },
            catch_up: CatchUp::Latest,
            catch_up_window: Duration::from_secs(3600),
            catch_up_cap: 1,
            overlap: Overlap::Skip,
            enabled: true,
        })
    }
}

/// Where a pass stands: stored as the job's progress after every page, and as its result.
/// A pass stopped by its budget (`stopped_by`) is taken up by the next pass, which starts
/// after its last key (`resumed_from`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepProgress {
    /// The last key done; the next page starts after it.
    pub last_key: Option<String>,
    /// Candidates found so far.
    pub matched: u64,
    /// Candidates acted on: rows changed by the statement, or child jobs enqueued (a child
    /// still waiting from an earlier pass counts, and is not enqueued twice).
    pub acted: u64,
    /// Fan-out children refused at enqueue (e.g. args that do not fit their kind).
    #[serde(default)]
    pub refused: u64,
    /// Pages done.
    pub pages: u64,
    /// Whether the pass reached the end of the candidates.
    pub complete: bool,
    /// Why the pass stopped early: `max_rows` or `max_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// The key this pass started after, when the previous pass was stopped by its budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<String>,
}

/// Checks `def` fully before it is stored: its fields, its fan-out kind, and its statements,
/// prepared (not run) on its target, so a typo or a missing table is refused up front.
pub async fn check(
    def: &SweepDef,
    targets: &crate::target::Targets,
    registry: &crate::registry::Registry,
) -> Result<(), (String, String)> {
    def.validate(targets.defs())?;
    if let SweepAction::FanOut { kind, .. } = &def.action
        && registry.get(kind).is_none()
    {
        return Err((
            "action.kind".to_owned(),
            format!("no kind {kind:?} is registered"),
        ));
    }
    let target = targets
        .get(&def.target)
        .await
        .map_err(|e| ("target".to_owned(), e.to_string()))?;
    let refused = |field: &str, e: sqlx::Error| {
        (
            field.to_owned(),
            format!("the target refuses it: {}", crate::error::describe(&e)),
        )
    };
    // The parameters typed as a pass binds them: the cutoff, the last key, the page size;
    // the page's keys.
    target
        .prepare(&def.query, &["timestamptz", "text", "int8"])
        .await
        .map_err(|e| refused("query", e))?;
    if let SweepAction::Statement { sql } = &def.action {
        target
            .prepare(sql, &["_text"])
            .await
            .map_err(|e| refused("action.sql", e))?;
    }
    Ok(())
}
