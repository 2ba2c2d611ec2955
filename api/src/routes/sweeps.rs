//! `/sweeps`: declared clean-up passes — list them with their last run, next run and counts,
//! start a pass or a dry run, and (admins) define sweeps through the API. A definition is
//! checked fully before it is stored: its fields, its fan-out kind, and its statements,
//! prepared on the target. Targets themselves are declared in the config file only.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use humantime_serde::re::humantime;
use longshore_jobs::admin::{ArgsMatch, JobFilter, Scope};
use longshore_jobs::schedule::{Schedule, Source};
use longshore_jobs::sweep::{self, StoredSweep, SweepAction, SweepDef, SweepProgress};
use longshore_jobs::{EnqueueRequest, Job, JobState, Store, UniqueOptions, UniqueScope};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::{Tag, audit};
use crate::ApiState;
use crate::auth::{Auth, Principal};
use crate::model::{EnqueuedView, State};
use crate::problem::ApiError;

/// What a sweep does with each page of candidates.
#[derive(Clone, Copy, Debug, Enum, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum SweepActionType {
    /// One statement per page; `$1` is the page's keys.
    Statement,
    /// One job per candidate.
    FanOut,
}

/// The action: `{"type": "statement", "sql": …}` or `{"type": "fan_out", "kind": …}`.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct SweepActionView {
    /// `statement` or `fan_out`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub action_type: SweepActionType,
    /// With `statement`: the statement, `$1` the page's keys.
    #[oai(skip_serializing_if_is_none, validator(max_length = 20000))]
    pub sql: Option<String>,
    /// With `fan_out`: the children's kind.
    #[oai(skip_serializing_if_is_none, validator(max_length = 200))]
    pub kind: Option<String>,
    /// With `fan_out`: the children's queue (default: the kind's).
    #[oai(skip_serializing_if_is_none, validator(max_length = 200))]
    pub queue: Option<String>,
}

/// A sweep's definition, as `PUT /sweeps/{name}` takes it. Durations are written like
/// `30days`, `90s`, `1h 30m`.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct SweepBody {
    /// A target declared in the config file (`[targets.<name>]`).
    #[oai(validator(min_length = 1, max_length = 100))]
    pub target: String,
    /// The candidate query: `$1` the cutoff, `$2` the last key done (NULL at first), `$3`
    /// the page size; it returns `key` (text, ascending) and, for fan-out, may return `args`.
    #[oai(validator(min_length = 1, max_length = 20000))]
    pub query: String,
    /// Candidates older than this are swept.
    #[oai(validator(max_length = 100))]
    pub retention: String,
    /// Candidates per page, 1–10000 (default 500).
    #[oai(skip_serializing_if_is_none)]
    pub batch: Option<u32>,
    /// Most candidates one pass acts on (default: no limit).
    #[oai(skip_serializing_if_is_none)]
    pub max_rows: Option<u64>,
    /// A pause between pages (default none).
    #[oai(skip_serializing_if_is_none, validator(max_length = 100))]
    pub pause: Option<String>,
    /// Longest one pass runs (default 10m).
    #[oai(skip_serializing_if_is_none, validator(max_length = 100))]
    pub max_time: Option<String>,
    /// A cron expression with seconds that starts passes (default: on request only).
    #[oai(skip_serializing_if_is_none, validator(max_length = 200))]
    pub schedule: Option<String>,
    /// The schedule's IANA time zone (default `UTC`).
    #[oai(skip_serializing_if_is_none, validator(max_length = 100))]
    pub timezone: Option<String>,
    /// What happens to each page.
    pub action: SweepActionView,
}

/// The latest pass of a sweep.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct SweepRunView {
    /// The pass's job.
    pub job_id: uuid::Uuid,
    /// Its state.
    pub state: State,
    /// Whether it only counted.
    pub dry_run: bool,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    #[oai(skip_serializing_if_is_none)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Candidates found (so far, while it runs).
    pub matched: u64,
    /// Candidates acted on: rows changed, or children enqueued.
    pub acted: u64,
    /// Children refused at enqueue.
    pub refused: u64,
    /// Pages done.
    pub pages: u64,
    /// Whether it reached the end of the candidates.
    pub complete: bool,
    /// Why it stopped early: `max_rows` or `max_time`.
    #[oai(skip_serializing_if_is_none)]
    pub stopped_by: Option<String>,
    /// Its last error.
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
}

/// A sweep with its last run, next run and counts.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct SweepView {
    /// Its name.
    pub name: String,
    /// `config` (from the config file; not editable here) or `api`.
    pub source: String,
    /// Its definition.
    pub definition: SweepBody,
    /// The next scheduled pass; none without a schedule or while it is paused.
    #[oai(skip_serializing_if_is_none)]
    pub next_run_at: Option<DateTime<Utc>>,
    /// Whether its schedule is paused (pause and resume it under `/schedules/sweep:<name>`).
    pub paused: bool,
    /// The latest pass that acted (not a dry run).
    #[oai(skip_serializing_if_is_none)]
    pub last_run: Option<SweepRunView>,
    /// The latest dry run.
    #[oai(skip_serializing_if_is_none)]
    pub last_dry_run: Option<SweepRunView>,
    /// Fan-out sweeps, on `GET /sweeps/{name}`: their children by state (failed children
    /// are `retryable`, then `discarded`).
    #[oai(skip_serializing_if_is_none)]
    pub children: Option<BTreeMap<String, i64>>,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum SweepStored {
    /// Replaced.
    #[oai(status = 200)]
    Replaced(Json<SweepView>),
    /// Created.
    #[oai(status = 201)]
    Created(Json<SweepView>),
}

#[derive(ApiResponse)]
enum PassEnqueued {
    /// The pass's job (for a run while another pass waits or runs, that pass, with
    /// `duplicate`).
    #[oai(status = 201)]
    Created(Json<EnqueuedView>),
}

#[derive(ApiResponse)]
enum SweepDeleted {
    /// Deleted, with its schedule; its passes stay.
    #[oai(status = 204)]
    Deleted,
}

pub struct SweepsApi {
    pub state: ApiState,
}

fn text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn duration(field: &str, value: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(value)
        .map_err(|e| ApiError::invalid(field, format!("{e} (write e.g. 30days, 90s, 1h 30m)")))
}

impl From<&SweepDef> for SweepBody {
    fn from(d: &SweepDef) -> SweepBody {
        let action = match &d.action {
            SweepAction::Statement { sql } => SweepActionView {
                action_type: SweepActionType::Statement,
                sql: Some(sql.clone()),
                kind: None,
                queue: None,
            },
            SweepAction::FanOut { kind, queue } => SweepActionView {
                action_type: SweepActionType::FanOut,
                sql: None,
                kind: Some(kind.clone()),
                queue: queue.clone(),
            },
        };
        SweepBody {
            target: d.target.clone(),
            query: d.query.clone(),
            retention: text(d.retention),
            batch: Some(d.batch),
            max_rows: d.max_rows,
            pause: Some(text(d.pause)),
            max_time: Some(text(d.max_time)),
            schedule: d.schedule.clone(),
            timezone: Some(d.timezone.clone()),
            action,
        }
    }
}

impl SweepBody {
    /// The definition this body declares, its durations and action checked.
    fn into_def(self, name: String) -> Result<SweepDef, ApiError> {
        let action = match self.action.action_type {
            SweepActionType::Statement => SweepAction::Statement {
                sql: self
                    .action
                    .sql
                    .ok_or_else(|| ApiError::invalid("action.sql", "a statement needs sql"))?,
            },
            SweepActionType::FanOut => SweepAction::FanOut {
                kind: self
                    .action
                    .kind
                    .ok_or_else(|| ApiError::invalid("action.kind", "a fan-out needs a kind"))?,
                queue: self.action.queue,
            },
        };
        Ok(SweepDef {
            name,
            target: self.target,
            query: self.query,
            retention: duration("retention", &self.retention)?,
            batch: self.batch.unwrap_or(sweep::DEFAULT_BATCH),
            max_rows: self.max_rows,
            pause: match &self.pause {
                Some(p) => duration("pause", p)?,
                None => Duration::ZERO,
            },
            max_time: match &self.max_time {
                Some(t) => duration("max_time", t)?,
                None => sweep::DEFAULT_MAX_TIME,
            },
            schedule: self.schedule,
            timezone: self.timezone.unwrap_or_else(|| "UTC".to_owned()),
            action,
        })
    }
}

/// A pass as its job shows it: its result once it ended, its checkpoint while it runs.
async fn run_view(store: &Store, job: &Job) -> Result<SweepRunView, ApiError> {
    let counts = match &job.result {
        Some(result) => Some(result.clone()),
        None if !job.state.is_terminal() => store.job_progress(job.id).await?,
        None => None,
    };
    let progress: SweepProgress = counts
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default();
    Ok(SweepRunView {
        job_id: job.id.0,
        state: job.state.into(),
        dry_run: job.args["dry_run"] == true,
        created_at: job.created_at,
        finished_at: job.finished_at,
        matched: progress.matched,
        acted: progress.acted,
        refused: progress.refused,
        pages: progress.pages,
        complete: progress.complete,
        stopped_by: progress.stopped_by,
        last_error: job.last_error.clone(),
    })
}

impl SweepsApi {
    async fn load(&self, name: &str) -> Result<StoredSweep, ApiError> {
        self.state
            .store()
            .sweep(name)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no sweep is named {name:?}")))
    }

    /// The sweep with its schedule, latest passes and (with `children`) its children.
    async fn view(&self, stored: StoredSweep, children: bool) -> Result<SweepView, ApiError> {
        let store = self.state.store();
        let def = &stored.def;
        let schedule: Option<Schedule> = store.schedule(&sweep::schedule_id(&def.name)).await?;
        let passes = JobFilter {
            kind: Some("sweep".to_owned()),
            args: vec![ArgsMatch {
                path: vec!["sweep".to_owned()],
                value: def.name.clone(),
            }],
            ..JobFilter::default()
        };
        let recent = store.list_jobs(&passes, None, 20).await?;
        let last_run = recent.iter().find(|j| j.args["dry_run"] != true);
        let last_dry_run = recent.iter().find(|j| j.args["dry_run"] == true);
        let children = match (&def.action, children) {
            (SweepAction::FanOut { kind, .. }, true) => {
                let mut counts = BTreeMap::new();
                for state in JobState::ALL {
                    let filter = JobFilter {
                        kind: Some(kind.clone()),
                        tag: Some(format!("sweep:{}", def.name)),
                        states: vec![state],
                        ..JobFilter::default()
                    };
                    counts.insert(state.as_str().to_owned(), store.count_jobs(&filter).await?);
                }
                Some(counts)
            }
            _ => None,
        };
        Ok(SweepView {
            name: def.name.clone(),
            source: stored.source.as_str().to_owned(),
            definition: def.into(),
            next_run_at: schedule.as_ref().and_then(|s| s.next_fire_at),
            paused: schedule.as_ref().is_some_and(|s| !s.enabled),
            last_run: match last_run {
                Some(job) => Some(run_view(store, job).await?),
                None => None,
            },
            last_dry_run: match last_dry_run {
                Some(job) => Some(run_view(store, job).await?),
                None => None,
            },
            children,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        })
    }

    /// Makes the sweep's schedule match its definition, keeping a pause.
    async fn sync_schedule(&self, def: &SweepDef) -> Result<(), ApiError> {
        let store = self.state.store();
        let id = sweep::schedule_id(&def.name);
        let existing = store.schedule(&id).await?;
        let Some(mut schedule_def) = def.schedule() else {
            if existing.is_some() {
                store.delete_schedule(&id).await?;
            }
            return Ok(());
        };
        schedule_def.enabled = existing.as_ref().is_none_or(|s| s.enabled);
        let mut schedule = schedule_def
            .into_schedule(Source::Api, Utc::now(), existing.as_ref())
            .map_err(|e| ApiError::invalid(e.field.replace("cron", "schedule"), e.message))?;
        if !schedule.enabled {
            schedule.next_fire_at = None;
        }
        store.put_schedule(&schedule).await?;
        Ok(())
    }

    /// Enqueues a pass (or a dry run) of sweep `name` for `who`, and audits it.
    async fn enqueue_pass(
        &self,
        who: &Principal,
        name: &str,
        dry_run: bool,
    ) -> Result<PassEnqueued, ApiError> {
        let stored = self.load(name).await?;
        let mut request = EnqueueRequest::new(
            "sweep",
            serde_json::json!({ "sweep": stored.def.name, "dry_run": dry_run }),
        );
        // One requested pass (and one dry run) per sweep waits or runs at a time: more would
        // only queue up behind it, scanning the target again.
        let (what, action) = if dry_run {
            ("sweep-dry-run", "sweeps.dry_run")
        } else {
            ("sweep-pass", "sweeps.run")
        };
        request.unique = Some(UniqueOptions {
            key: format!("{what}:{}", stored.def.name),
            scope: UniqueScope::Active,
            window: None,
        });
        let enqueued = self.state.client.enqueue(request).await?;
        let targets = vec![stored.def.name, enqueued.id.to_string()];
        audit(&self.state, who, action, targets, None).await?;
        Ok(PassEnqueued::Created(Json(EnqueuedView {
            id: enqueued.id.0,
            state: enqueued.state.into(),
            duplicate: enqueued.duplicate,
        })))
    }
}

#[OpenApi(tag = "Tag::Sweeps")]
impl SweepsApi {
    /// Every sweep, by name, with its last run and next run.
    #[oai(path = "/sweeps", method = "get", operation_id = "list_sweeps")]
    async fn list(&self, auth: Auth) -> Result<Json<Vec<SweepView>>, ApiError> {
        auth.0.require(Scope::Read)?;
        let mut views = Vec::new();
        for stored in self.state.store().sweeps().await? {
            views.push(self.view(stored, false).await?);
        }
        Ok(Json(views))
    }

    /// A sweep, with its last run, next run and, for fan-out, its children by state.
    #[oai(path = "/sweeps/:name", method = "get", operation_id = "get_sweep")]
    async fn get(&self, auth: Auth, name: Path<String>) -> Result<Json<SweepView>, ApiError> {
        auth.0.require(Scope::Read)?;
        let stored = self.load(&name.0).await?;
        Ok(Json(self.view(stored, true).await?))
    }

    /// Define or replace a sweep. It is checked before it is stored: a bad field, an
    /// unknown target or kind, or a statement the target refuses is a 422 naming the field.
    /// Sweeps from the config file are changed there (409).
    #[oai(path = "/sweeps/:name", method = "put", operation_id = "put_sweep")]
    async fn put(
        &self,
        auth: Auth,
        name: Path<String>,
        body: Json<SweepBody>,
    ) -> Result<SweepStored, ApiError> {
        auth.0.require(Scope::Admin)?;
        let store = self.state.store();
        let existing = store.sweep(&name.0).await?;
        if existing
            .as_ref()
            .is_some_and(|s| s.source == Source::Config)
        {
            return Err(ApiError::conflict(
                "config_sweep",
                format!(
                    "sweep {:?} is declared in the config file; change it there",
                    name.0
                ),
            ));
        }
        let def = body.0.into_def(name.0)?;
        sweep::check(&def, &self.state.targets, self.state.client.registry())
            .await
            .map_err(|(field, message)| ApiError::invalid(field, message))?;
        let stored = store.put_sweep(&def, Source::Api).await?;
        self.sync_schedule(&def).await?;
        audit(
            &self.state,
            &auth.0,
            "sweeps.put",
            vec![def.name.clone()],
            None,
        )
        .await?;
        let view = Json(self.view(stored, false).await?);
        Ok(match existing {
            Some(_) => SweepStored::Replaced(view),
            None => SweepStored::Created(view),
        })
    }

    /// Delete a sweep defined through the API, with its schedule; its passes stay.
    #[oai(
        path = "/sweeps/:name",
        method = "delete",
        operation_id = "delete_sweep"
    )]
    async fn delete(&self, auth: Auth, name: Path<String>) -> Result<SweepDeleted, ApiError> {
        auth.0.require(Scope::Admin)?;
        let stored = self.load(&name.0).await?;
        if stored.source == Source::Config {
            return Err(ApiError::conflict(
                "config_sweep",
                format!(
                    "sweep {:?} is declared in the config file; remove it there",
                    stored.def.name
                ),
            ));
        }
        let store = self.state.store();
        store.delete_sweep(&stored.def.name).await?;
        store
            .delete_schedule(&sweep::schedule_id(&stored.def.name))
            .await?;
        audit(
            &self.state,
            &auth.0,
            "sweeps.delete",
            vec![stored.def.name],
            None,
        )
        .await?;
        Ok(SweepDeleted::Deleted)
    }

    /// Start a pass now. While another requested pass of this sweep waits or runs, that
    /// pass is returned with `duplicate: true`; a pass that starts while a scheduled one
    /// runs waits for it.
    #[oai(
        path = "/sweeps/:name/run",
        method = "post",
        operation_id = "run_sweep"
    )]
    async fn run(&self, auth: Auth, name: Path<String>) -> Result<PassEnqueued, ApiError> {
        auth.0.require(Scope::Operate)?;
        self.enqueue_pass(&auth.0, &name.0, false).await
    }

    /// Start a dry run: a pass that counts what it would touch and changes nothing. Its
    /// job's result holds the counts. While another dry run of this sweep waits or runs,
    /// that one is returned with `duplicate: true`.
    #[oai(
        path = "/sweeps/:name/dry-run",
        method = "post",
        operation_id = "dry_run_sweep"
    )]
    async fn dry_run(&self, auth: Auth, name: Path<String>) -> Result<PassEnqueued, ApiError> {
        auth.0.require(Scope::Operate)?;
        self.enqueue_pass(&auth.0, &name.0, true).await
    }
}
