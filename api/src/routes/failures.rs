//! `/failures`: the failed jobs (discarded, or retryable and waiting for their next attempt)
//! grouped by the fingerprint of their last error — the text with what differs between two
//! occurrences of one failure (ids, numbers, addresses, quoted values) replaced — so an
//! operator sees "what failed, and why" as a handful of rows, and retries, cancels or deletes
//! a whole group as one bulk operation.
//!
//! A report reads the newest [`SCAN`] failed jobs created in its window (by the primary key,
//! newest first); `complete` says whether that was all of them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use longshore_jobs::admin::{JobFilter, Scope};
use longshore_jobs::{Job, JobId, JobState};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use uuid::Uuid;

use super::Tag;
use super::operations::{self, Started};
use crate::ApiState;
use crate::auth::Auth;
use crate::fingerprint::{fingerprint_of, normalise};
use crate::model::ActionView;
use crate::problem::ApiError;

/// The most failed jobs a report reads.
pub const SCAN: usize = 10_000;
/// Rows read per page of the scan.
const PAGE: u32 = 500;
/// The pattern of a failed job that recorded no error.
const NO_ERROR: &str = "(no error recorded)";

/// One kind of failure.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct FailureGroup {
    /// 16 hex digits naming the normalised error; stable across processes and releases.
    pub fingerprint: String,
    /// The normalised error: `#` for each word with a digit, `"…"` for each quoted value.
    pub pattern: String,
    /// Failed jobs in the group.
    pub count: i64,
    /// Of them, by state (`discarded`, `retryable`).
    pub states: BTreeMap<String, i64>,
    /// Their kinds, most frequent first.
    pub kinds: Vec<String>,
    /// Their queues, most frequent first.
    pub queues: Vec<String>,
    /// The earliest failure of the group (its last attempt's time).
    pub first_seen: DateTime<Utc>,
    /// The latest.
    pub last_seen: DateTime<Utc>,
    /// The newest job of the group.
    pub sample_job_id: Uuid,
    /// Its error, as written.
    pub sample_error: String,
}

/// Failures grouped by fingerprint, largest group first.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct FailureReport {
    /// The groups.
    pub groups: Vec<FailureGroup>,
    /// Failed jobs read.
    pub scanned: i64,
    /// Whether every failed job of the window was read (false past the scan limit).
    pub complete: bool,
    /// The window's start: jobs created at or after it.
    pub since: DateTime<Utc>,
}

/// Act on every job of one group.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct GroupOperationBody {
    /// What to do: `retry`, `cancel` (stops a retryable job) or `delete`.
    pub action: ActionView,
    /// Only count the jobs.
    #[oai(default)]
    pub dry_run: bool,
    /// The window, as in the report; defaults to the last 7 days.
    #[oai(skip_serializing_if_is_none)]
    pub since: Option<DateTime<Utc>>,
    /// Only this queue's jobs.
    #[oai(skip_serializing_if_is_none)]
    pub queue: Option<String>,
    /// Only this kind's jobs.
    #[oai(skip_serializing_if_is_none)]
    pub kind: Option<String>,
}

pub struct FailuresApi {
    pub state: ApiState,
}

#[OpenApi(tag = "Tag::Jobs")]
impl FailuresApi {
    /// Failed jobs grouped by the fingerprint of their last error, largest group first.
    #[oai(path = "/failures", method = "get", operation_id = "list_failures")]
    async fn list(
        &self,
        auth: Auth,
        /// Jobs created at or after this time; defaults to 7 days ago.
        since: Query<Option<DateTime<Utc>>>,
        queue: Query<Option<String>>,
        kind: Query<Option<String>>,
    ) -> Result<Json<FailureReport>, ApiError> {
        auth.0.require(Scope::Read)?;
        let since = since.0.unwrap_or_else(default_since);
        let (jobs, complete) = self.scan(since, queue.0, kind.0).await?;
        Ok(Json(FailureReport {
            scanned: jobs.len() as i64,
            groups: group(&jobs),
            complete,
            since,
        }))
    }

    /// Retry, cancel or delete every job of one group, as a bulk operation (see
    /// `POST /operations`); `dry_run` only counts them.
    #[oai(
        path = "/failures/:fingerprint/operations",
        method = "post",
        operation_id = "start_failure_group_operation"
    )]
    async fn act(
        &self,
        auth: Auth,
        #[oai(validator(max_length = 16))] fingerprint: Path<String>,
        body: Json<GroupOperationBody>,
        #[oai(name = "Idempotency-Key", validator(max_length = 200))] key: Header<Option<String>>,
    ) -> Result<Started, ApiError> {
        auth.0.require(Scope::Operate)?;
        let body = body.0;
        let since = body.since.unwrap_or_else(default_since);
        let (jobs, _) = self
            .scan(since, body.queue.clone(), body.kind.clone())
            .await?;
        let ids: Vec<JobId> = jobs
            .iter()
            .filter(|job| fingerprint_of(&pattern(job)) == fingerprint.0)
            .map(|job| job.id)
            .collect();
        if ids.is_empty() {
            return Err(ApiError::not_found(format!(
                "no failed job since {since} has the fingerprint {:?}",
                fingerprint.0
            )));
        }
        let filter = JobFilter {
            ids,
            ..JobFilter::default()
        };
        let keyed = (&fingerprint.0, &body);
        operations::start(
            &self.state,
            &auth.0,
            body.action,
            filter,
            body.dry_run,
            key.0,
            &keyed,
        )
        .await
    }
}

impl FailuresApi {
    /// The newest failed jobs created since `since`, at most [`SCAN`], and whether that was
    /// all of them.
    async fn scan(
        &self,
        since: DateTime<Utc>,
        queue: Option<String>,
        kind: Option<String>,
    ) -> Result<(Vec<Job>, bool), ApiError> {
        let filter = JobFilter {
            states: vec![JobState::Discarded, JobState::Retryable],
            queue,
            kind,
            created_after: Some(since),
            ..JobFilter::default()
        };
        filter.validate()?;
        let mut jobs: Vec<Job> = Vec::new();
        loop {
            let before = jobs.last().map(|job| job.id);
            let page = self.state.store().list_jobs(&filter, before, PAGE).await?;
            let last_page = page.len() < PAGE as usize;
            jobs.extend(page);
            if last_page {
                return Ok((jobs, true));
            }
            if jobs.len() >= SCAN {
                jobs.truncate(SCAN);
                return Ok((jobs, false));
            }
        }
    }
}

fn default_since() -> DateTime<Utc> {
    Utc::now() - Duration::days(7)
}

/// When a job last failed: the end of its last attempt as well as the store knows it.
fn failed_at(job: &Job) -> DateTime<Utc> {
    job.finished_at
        .or(job.attempted_at)
        .unwrap_or(job.created_at)
}

fn pattern(job: &Job) -> String {
    match job.last_error.as_deref() {
        Some(error) if !error.trim().is_empty() => normalise(error),
        _ => NO_ERROR.to_owned(),
    }
}

/// Groups `jobs` (newest first) by the fingerprint of their error, largest group first.
fn group(jobs: &[Job]) -> Vec<FailureGroup> {
    struct Acc {
        group: FailureGroup,
        kinds: HashMap<String, i64>,
        queues: HashMap<String, i64>,
    }
    let mut groups: HashMap<String, Acc> = HashMap::new();
    for job in jobs {
        let pattern = pattern(job);
        let fingerprint = fingerprint_of(&pattern);
        let at = failed_at(job);
        let acc = groups.entry(fingerprint.clone()).or_insert_with(|| Acc {
            group: FailureGroup {
                fingerprint,
                pattern,
                count: 0,
                states: BTreeMap::new(),
                kinds: Vec::new(),
                queues: Vec::new(),
                first_seen: at,
                last_seen: at,
                sample_job_id: job.id.0,
                sample_error: job.last_error.clone().unwrap_or_default(),
            },
            kinds: HashMap::new(),
            queues: HashMap::new(),
        });
        acc.group.count += 1;
        *acc.group
            .states
            .entry(job.state.as_str().to_owned())
            .or_insert(0) += 1;
        acc.group.first_seen = acc.group.first_seen.min(at);
        acc.group.last_seen = acc.group.last_seen.max(at);
        *acc.kinds.entry(job.kind.clone()).or_insert(0) += 1;
        *acc.queues.entry(job.queue.clone()).or_insert(0) += 1;
    }
    let by_count = |counts: HashMap<String, i64>| {
        let mut names: Vec<(String, i64)> = counts.into_iter().collect();
        names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        names.into_iter().map(|(name, _)| name).collect()
    };
    let mut out: Vec<FailureGroup> = groups
        .into_values()
        .map(|acc| FailureGroup {
            kinds: by_count(acc.kinds),
            queues: by_count(acc.queues),
            ..acc.group
        })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| b.last_seen.cmp(&a.last_seen))
    });
    out
}
