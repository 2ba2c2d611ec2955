//! `lifecycle`: a user lifecycle event's cascade. Each event type has an ordered list of steps
//! in the config — `http` (call a service), `sql` (a statement on a named target, the event's
//! fields bound as parameters), `push` (a push to the user) and `job` (any kind) — and each
//! step runs as a child job with its own retries, one after the other (the children share the
//! sequence `lifecycle:{parent}`).
//!
//! The parent makes its children once (they and the parent's progress commit together), then
//! waits for them, snoozing between looks without spending attempts. It completes when every
//! child is done, its result listing each step's outcome; a step that fails for good fails the
//! parent with that step named. Retrying the parent retries only its failed step (and
//! retrying that step revives the parent: see `Store::retry`). While it waits or has failed,
//! the parent holds its user's sequence, so the user's later events wait behind it.

mod step;
mod template;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::lifecycle::{self, LifecycleArgs, LifecycleEvent};
use longshore_jobs::{
    EnqueueRequest, JobContext, JobError, JobId, JobResult, JobState, Kind, KindOptions,
    UniqueOptions, UniqueScope,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use step::{Step, StepArgs};

use crate::kinds::HttpArgs;

/// How long the parent waits between looks at its children.
const WAIT: Duration = Duration::from_millis(300);

/// `[lifecycle]`: where lifecycle jobs run, and the cascade of each event type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// The queue of lifecycle jobs and their steps. Defaults to `lifecycle`.
    pub queue: String,
    /// Lifecycle jobs and steps one process runs at once. Defaults to 8.
    pub concurrency: u32,
    /// The steps of each event type, in order (`[[lifecycle.cascades."user.deleted"]]`).
    pub cascades: BTreeMap<String, Vec<StepDef>>,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            queue: "lifecycle".to_owned(),
            concurrency: 8,
            cascades: BTreeMap::new(),
        }
    }
}

/// One step of a cascade: exactly one of `http`, `sql`, `push` and `job`. Strings in its
/// URL, headers, bodies, payloads and args may name the event's fields as `{user_id}`,
/// `{event_type}`, `{occurred_at_ms}`, `{reason_code}`, … (in a URL, percent-encoded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// Its name, unique in its cascade: what results, errors and retries call it.
    pub name: String,
    /// Call a service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpArgs>,
    /// Run a statement on a declared target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<SqlStep>,
    /// Push to the event's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushStep>,
    /// Enqueue a job of any kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobStep>,
    /// Attempts of the step. Defaults to its kind's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
}

impl StepDef {
    /// A step named `name` that does nothing yet: set one of its actions.
    pub fn named(name: &str) -> StepDef {
        StepDef {
            name: name.to_owned(),
            http: None,
            sql: None,
            push: None,
            job: None,
            max_attempts: None,
        }
    }

    /// A step that enqueues a job of `kind` with no args, on the kind's queue.
    pub fn job(name: &str, kind: &str) -> StepDef {
        StepDef {
            job: Some(JobStep {
                kind: kind.to_owned(),
                args: None,
                queue: None,
            }),
            ..StepDef::named(name)
        }
    }
}

/// A statement on a target, with event fields bound as text parameters `$1`, `$2`, …
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlStep {
    /// A target declared under `[targets]`.
    pub target: String,
    /// The statement, e.g. `DELETE FROM sessions WHERE user_id = $1::bigint`.
    pub statement: String,
    /// The event fields bound as `$1`, `$2`, … in order. Defaults to `["user_id"]`.
    #[serde(default = "user_id_only")]
    pub params: Vec<String>,
}

fn user_id_only() -> Vec<String> {
    vec!["user_id".to_owned()]
}

/// A push to the event's user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushStep {
    /// The push's kind, e.g. `account.goodbye`.
    pub kind: String,
    /// What the gateway forwards. Defaults to the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// A job of any kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobStep {
    /// The kind.
    pub kind: String,
    /// Its args. Defaults to `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// Its queue. Defaults to the kind's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

impl LifecycleConfig {
    /// Checks the cascades, naming the bad field (`cascades."user.deleted"[1].sql.params`).
    pub fn validate<T>(&self, targets: &BTreeMap<String, T>) -> Result<(), (String, String)> {
        if self.concurrency == 0 {
            return Err(("concurrency".to_owned(), "must be at least 1".to_owned()));
        }
        longshore_jobs::client::check_queue_name(&self.queue)
            .map_err(|e| ("queue".to_owned(), e.to_string()))?;
        for (event_type, steps) in &self.cascades {
            let at = |i: usize, field: &str| format!("cascades.{event_type:?}[{i}]{field}");
            let probe = sample(event_type);
            probe
                .check(|_| true)
                .map_err(|r| (format!("cascades.{event_type:?}"), r.to_string()))?;
            let mut names = std::collections::HashSet::new();
            for (i, step) in steps.iter().enumerate() {
                let named = !step.name.is_empty()
                    && step.name.len() <= 64
                    && step
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !named {
                    return Err((
                        at(i, ".name"),
                        "must be 1 to 64 of A-Z a-z 0-9 - _ .".to_owned(),
                    ));
                }
                if !names.insert(step.name.as_str()) {
                    return Err((at(i, ".name"), format!("{:?} names two steps", step.name)));
                }
                let actions = [
                    step.http.is_some(),
                    step.sql.is_some(),
                    step.push.is_some(),
                    step.job.is_some(),
                ];
                if actions.iter().filter(|a| **a).count() != 1 {
                    return Err((
                        at(i, ""),
                        "give exactly one of http, sql, push, job".to_owned(),
                    ));
                }
                if let Some(sql) = &step.sql {
                    if !targets.contains_key(&sql.target) {
                        return Err((
                            at(i, ".sql.target"),
                            format!("no target {:?} is declared under [targets]", sql.target),
                        ));
                    }
                    for param in &sql.params {
                        if !LifecycleEvent::FIELDS.contains(&param.as_str()) {
                            return Err((
                                at(i, ".sql.params"),
                                format!(
                                    "{param:?} is not an event field (one of {})",
                                    LifecycleEvent::FIELDS.join(", ")
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a cascade handles `event_type`.
    pub fn knows(&self, event_type: &str) -> bool {
        self.cascades.contains_key(event_type)
    }

    /// The event types, sorted.
    pub fn event_types(&self) -> Vec<String> {
        self.cascades.keys().cloned().collect()
    }

    /// A request for each step of `event_type` as if for a sample event: what a start-up
    /// check prepares, so a step that cannot be enqueued stops the start, not the first event.
    pub fn sample_requests(&self) -> Vec<(String, EnqueueRequest)> {
        let parent = JobId::new();
        let mut requests = Vec::new();
        for (event_type, steps) in &self.cascades {
            let event = sample(event_type);
            for (i, step) in steps.iter().enumerate() {
                let at = format!("cascades.{event_type:?}[{i}]");
                requests.push((at, self.step_request(step, &event, parent, None)));
            }
        }
        requests
    }

    /// The child job of `step` for `event`, under the lifecycle job `parent`.
    fn step_request(
        &self,
        step: &StepDef,
        event: &LifecycleEvent,
        parent: JobId,
        traceparent: Option<&serde_json::Value>,
    ) -> EnqueueRequest {
        let (kind, args, queue) = if let Some(http) = &step.http {
            let mut http = http.clone();
            http.url = template::render_url(&http.url, event);
            let args = template::render(&serde_json::to_value(http).unwrap_or_default(), event);
            ("http".to_owned(), args, Some(self.queue.clone()))
        } else if let Some(job) = &step.job {
            let args = template::render(job.args.as_ref().unwrap_or(&json!({})), event);
            (job.kind.clone(), args, job.queue.clone())
        } else {
            let args = StepArgs {
                event: event.clone(),
                step: step.name.clone(),
                parent,
            };
            let args = serde_json::to_value(args).unwrap_or_default();
            (step::NAME.to_owned(), args, Some(self.queue.clone()))
        };
        let mut metadata = json!({ "parent": parent.to_string(), "step": step.name });
        if let Some(traceparent) = traceparent {
            metadata["traceparent"] = traceparent.clone();
        }
        EnqueueRequest {
            queue,
            max_attempts: step.max_attempts,
            unique: Some(UniqueOptions {
                key: format!("{parent}:{}", step.name),
                scope: UniqueScope::Any,
                window: None,
            }),
            sequence: Some(format!("lifecycle:{parent}")),
            metadata: Some(metadata),
            ..EnqueueRequest::new(kind, args)
        }
    }
}

/// An event of `event_type` with every field set, for checks.
fn sample(event_type: &str) -> LifecycleEvent {
    LifecycleEvent {
        event_type: event_type.to_owned(),
        user_id: "1".to_owned(),
        occurred_at_ms: 1,
        source: Some("check".to_owned()),
        actor_type: Some("system".to_owned()),
        actor_id: Some("1".to_owned()),
        reason_code: Some("check".to_owned()),
        trace_id: None,
    }
}

/// A step as the parent tracks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Child {
    name: String,
    kind: String,
    job: JobId,
}

/// The parent's progress: its children, and the child it failed on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Progress {
    steps: Vec<Child>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed: Option<JobId>,
}

/// The `lifecycle` kind.
pub struct Lifecycle {
    config: Arc<LifecycleConfig>,
}

impl Lifecycle {
    /// The kind, running the cascades of `config`.
    pub fn new(config: Arc<LifecycleConfig>) -> Lifecycle {
        Lifecycle { config }
    }

    /// Makes the children of a first attempt, with the progress that lists them.
    async fn start(
        &self,
        job: &JobContext,
        event: &LifecycleEvent,
        steps: &[StepDef],
    ) -> Result<Progress, JobError> {
        let mut progress = Progress::default();
        let mut children = Vec::with_capacity(steps.len());
        for step in steps {
            let request =
                self.config
                    .step_request(step, event, job.id, job.metadata.get("traceparent"));
            let kind = request.kind.clone();
            let child = job
                .client
                .prepare(request)
                .map_err(|e| JobError::fatal(format!("step {}: {e}", step.name)))?;
            progress.steps.push(Child {
                name: step.name.clone(),
                kind,
                job: child.id,
            });
            children.push(child);
        }
        let value = serde_json::to_value(&progress).unwrap_or_default();
        let Some(stored) = job.enqueue_with_progress(children, &value).await? else {
            return Err(JobError::retry(
                "lost the lease before the steps were stored".to_owned(),
            ));
        };
        // Steps made already (by an attempt whose progress was lost) are answered by their
        // unique keys: track those jobs, not the ones just prepared.
        if stored.iter().any(|e| e.duplicate) {
            for (child, enqueued) in progress.steps.iter_mut().zip(&stored) {
                child.job = enqueued.id;
            }
            job.save_progress(&serde_json::to_value(&progress).unwrap_or_default())
                .await?;
        }
        Ok(progress)
    }
}

impl Kind for Lifecycle {
    const NAME: &'static str = lifecycle::KIND;
    type Args = LifecycleArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            queue: self.config.queue.clone(),
            max_attempts: 25,
            ..KindOptions::default()
        }
    }

    fn seal_args(&self, args: serde_json::Value) -> Result<serde_json::Value, String> {
        let parsed: LifecycleArgs =
            serde_json::from_value(args.clone()).map_err(|e| e.to_string())?;
        parsed
            .event
            .check(|t| self.config.knows(t))
            .map_err(|r| format!("event.{r}"))?;
        Ok(args)
    }

    async fn run(&self, job: JobContext, args: LifecycleArgs) -> JobResult {
        let event = &args.event;
        let Some(steps) = self.config.cascades.get(&event.event_type) else {
            return Err(JobError::fatal(format!(
                "no cascade handles {:?} any more",
                event.event_type
            )));
        };
        let store = job.client.store();
        let saved = store.job_progress(job.id).await?;
        let mut progress = match saved.and_then(|p| serde_json::from_value::<Progress>(p).ok()) {
            Some(progress) => progress,
            None => {
                // The user was active: the gauge counts them from the event's time (or now,
                // for an event stamped in the future).
                let seen = chrono::DateTime::from_timestamp_millis(event.occurred_at_ms)
                    .unwrap_or_else(chrono::Utc::now)
                    .min(chrono::Utc::now());
                store
                    .record_activity(&[(event.user_id.clone(), seen)])
                    .await?;
                self.start(&job, event, steps).await?
            }
        };
        let mut outcomes = Vec::with_capacity(progress.steps.len());
        let mut waiting = false;
        let mut failed: Option<(Child, Option<String>)> = None;
        for child in &progress.steps {
            let Some(stored) = store.job(child.job).await? else {
                // Pruned after it finished (or deleted by an operator): it ran its course.
                outcomes.push(json!({ "name": child.name, "kind": child.kind,
                    "job_id": child.job, "state": "gone" }));
                continue;
            };
            let mut outcome = json!({ "name": child.name, "kind": child.kind,
                "job_id": child.job, "state": stored.state });
            match stored.state {
                JobState::Completed => {
                    if let Some(result) = stored.result {
                        outcome["result"] = result;
                    }
                }
                JobState::Cancelled => {}
                JobState::Discarded => {
                    outcome["error"] = json!(stored.last_error);
                    if failed.is_none() {
                        failed = Some((child.clone(), stored.last_error.clone()));
                    }
                }
                _ => waiting = true,
            }
            outcomes.push(outcome);
        }
        if let Some((child, error)) = failed {
            if progress.failed == Some(child.job) {
                // This attempt is an operator's retry of the failed lifecycle job: retry the
                // step that failed, and wait for it.
                store.retry(child.job).await?;
                progress.failed = None;
                let value = serde_json::to_value(&progress).unwrap_or_default();
                job.save_progress(&value).await?;
                return Err(JobError::snooze(WAIT));
            }
            progress.failed = Some(child.job);
            let value = serde_json::to_value(&progress).unwrap_or_default();
            job.save_progress(&value).await?;
            let error = error.unwrap_or_else(|| "no error recorded".to_owned());
            return Err(JobError::fatal(format!(
                "step {} ({}, job {}) failed: {error}",
                child.name, child.kind, child.job
            )));
        }
        if waiting {
            if progress.failed.take().is_some() {
                let value = serde_json::to_value(&progress).unwrap_or_default();
                job.save_progress(&value).await?;
            }
            return Err(JobError::snooze(WAIT));
        }
        Ok(json!({
            "event_type": event.event_type,
            "user_id": event.user_id,
            "steps": outcomes,
        }))
    }
}
