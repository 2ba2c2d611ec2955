//! `/schedules`: cron schedules — create, read, edit, delete, pause, resume, trigger, the
//! next ticks and the history of fired jobs. Schedules declared in the config file are
//! reconciled at start and cannot be edited or deleted here (pause and resume work).

use chrono::{DateTime, Utc};
use longshore_jobs::EnqueueRequest;
use longshore_jobs::admin::{JobFilter, Scope};
use longshore_jobs::cron::CronSpec;
use longshore_jobs::schedule::{
    CatchUp, Overlap, PRUNE_SCHEDULE_ID, Schedule, ScheduleDef, Source,
};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::{Tag, audit};
use crate::ApiState;
use crate::auth::Auth;
use crate::model::{EnqueuedView, JobView};
use crate::problem::ApiError;

/// The job each tick enqueues.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct TemplateView {
    /// The kind.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub kind: String,
    /// The args (default `{}`).
    #[oai(skip_serializing_if_is_none)]
    pub args: Option<serde_json::Value>,
    /// The queue (default: the kind's).
    #[oai(skip_serializing_if_is_none)]
    pub queue: Option<String>,
    /// 0–9 (default: the kind's).
    #[oai(skip_serializing_if_is_none)]
    pub priority: Option<i64>,
    /// Attempts allowed (default: the kind's).
    #[oai(skip_serializing_if_is_none)]
    pub max_attempts: Option<i64>,
    /// Tags, besides `schedule:<id>`.
    #[oai(default)]
    pub tags: Vec<String>,
}

/// The API shows and takes the fields a schedule's job may set (the schedule refuses the
/// others, naming them).
impl From<EnqueueRequest> for TemplateView {
    fn from(t: EnqueueRequest) -> TemplateView {
        TemplateView {
            kind: t.kind,
            args: t.args,
            queue: t.queue,
            priority: t.priority,
            max_attempts: t.max_attempts,
            tags: t.tags,
        }
    }
}

impl From<TemplateView> for EnqueueRequest {
    fn from(t: TemplateView) -> EnqueueRequest {
        EnqueueRequest {
            kind: t.kind,
            args: t.args,
            queue: t.queue,
            priority: t.priority,
            max_attempts: t.max_attempts,
            tags: t.tags,
            ..EnqueueRequest::default()
        }
    }
}

/// Missed ticks after downtime (ticks up to 10 s late always fire).
#[derive(Clone, Copy, Debug, Enum, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum CatchUpView {
    /// Dropped.
    Skip,
    /// The latest fires once.
    Latest,
    /// All within the window fire, oldest first, up to the cap.
    All,
}

/// Ticks while the previous fire's job has not finished.
#[derive(Clone, Copy, Debug, Enum, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum OverlapView {
    /// Fire anyway.
    Allow,
    /// Skip the tick.
    Skip,
}

/// A schedule.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct ScheduleView {
    /// Its id.
    pub id: String,
    /// The cron expression, with seconds.
    pub cron: String,
    /// The IANA time zone it is read in.
    pub timezone: String,
    /// The job each tick enqueues.
    pub job: TemplateView,
    /// Missed ticks.
    pub catch_up: CatchUpView,
    /// With `all`: how far back, in seconds.
    pub catch_up_window_s: u64,
    /// With `all`: most ticks back-filled at once.
    pub catch_up_cap: u32,
    /// Ticks while the previous job runs.
    pub overlap: OverlapView,
    /// Whether it fires.
    pub enabled: bool,
    /// `config` (from the config file; not editable here) or `api`.
    pub source: String,
    /// The latest tick fired.
    #[oai(skip_serializing_if_is_none)]
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The job of the latest tick.
    #[oai(skip_serializing_if_is_none)]
    pub last_job_id: Option<uuid::Uuid>,
    /// The next tick.
    #[oai(skip_serializing_if_is_none)]
    pub next_fire_at: Option<DateTime<Utc>>,
    /// Ticks that enqueued their job.
    pub fired_count: i64,
    /// Ticks skipped while the previous job ran (overlap `skip`).
    pub skipped_count: i64,
    /// Ticks dropped by the catch-up policy.
    pub missed_count: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Schedule> for ScheduleView {
    fn from(s: Schedule) -> ScheduleView {
        ScheduleView {
            id: s.id,
            cron: s.cron,
            timezone: s.timezone,
            job: s.template.into(),
            catch_up: match s.catch_up {
                CatchUp::Skip => CatchUpView::Skip,
                CatchUp::Latest => CatchUpView::Latest,
                CatchUp::All => CatchUpView::All,
            },
            catch_up_window_s: s.catch_up_window.as_secs(),
            catch_up_cap: s.catch_up_cap,
            overlap: match s.overlap {
                Overlap::Allow => OverlapView::Allow,
                Overlap::Skip => OverlapView::Skip,
            },
            enabled: s.enabled,
            source: s.source.as_str().to_owned(),
            last_fire_at: s.last_fire_at,
            last_job_id: s.last_job_id.map(|j| j.0),
            next_fire_at: s.next_fire_at,
            fired_count: s.counts.fired,
            skipped_count: s.counts.skipped,
            missed_count: s.counts.missed,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A schedule to create.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct ScheduleBody {
    /// A stable id: 1 to 100 of `A-Z a-z 0-9 _ - . :`.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub id: String,
    /// `sec min hour day month weekday` (or five fields, seconds 0).
    #[oai(validator(max_length = 200))]
    pub cron: String,
    /// An IANA time zone (default `UTC`).
    #[oai(skip_serializing_if_is_none)]
    pub timezone: Option<String>,
    /// The job each tick enqueues.
    pub job: TemplateView,
    /// Missed ticks (default `skip`).
    #[oai(skip_serializing_if_is_none)]
    pub catch_up: Option<CatchUpView>,
    /// With `all`: how far back, in seconds (default 3600; at most 31 days).
    #[oai(skip_serializing_if_is_none)]
    pub catch_up_window_s: Option<u64>,
    /// With `all`: most ticks back-filled at once (default 100).
    #[oai(skip_serializing_if_is_none)]
    pub catch_up_cap: Option<u32>,
    /// Ticks while the previous job runs (default `allow`).
    #[oai(skip_serializing_if_is_none)]
    pub overlap: Option<OverlapView>,
    /// Whether it fires (default true).
    #[oai(skip_serializing_if_is_none)]
    pub enabled: Option<bool>,
}

/// A change to a schedule; absent fields stay as they are.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct SchedulePatch {
    /// A new cron expression.
    #[oai(skip_serializing_if_is_none, validator(max_length = 200))]
    pub cron: Option<String>,
    /// A new time zone.
    #[oai(skip_serializing_if_is_none)]
    pub timezone: Option<String>,
    /// A new job template.
    #[oai(skip_serializing_if_is_none)]
    pub job: Option<TemplateView>,
    /// A new catch-up policy.
    #[oai(skip_serializing_if_is_none)]
    pub catch_up: Option<CatchUpView>,
    /// A new window, seconds.
    #[oai(skip_serializing_if_is_none)]
    pub catch_up_window_s: Option<u64>,
    /// A new cap.
    #[oai(skip_serializing_if_is_none)]
    pub catch_up_cap: Option<u32>,
    /// A new overlap policy.
    #[oai(skip_serializing_if_is_none)]
    pub overlap: Option<OverlapView>,
}

#[derive(ApiResponse)]
enum ScheduleCreated {
    /// Created.
    #[oai(status = 201)]
    Created(Json<ScheduleView>),
}

#[derive(ApiResponse)]
enum Triggered {
    /// The job of this manual fire.
    #[oai(status = 201)]
    Created(Json<EnqueuedView>),
}

#[derive(ApiResponse)]
enum ScheduleDeleted {
    /// Deleted; its jobs stay.
    #[oai(status = 204)]
    Deleted,
}

pub struct SchedulesApi {
    pub state: ApiState,
}

fn catch_up(c: CatchUpView) -> CatchUp {
    match c {
        CatchUpView::Skip => CatchUp::Skip,
        CatchUpView::Latest => CatchUp::Latest,
        CatchUpView::All => CatchUp::All,
    }
}

fn overlap(o: OverlapView) -> Overlap {
    match o {
        OverlapView::Allow => Overlap::Allow,
        OverlapView::Skip => Overlap::Skip,
    }
}

impl SchedulesApi {
    async fn load(&self, id: &str) -> Result<Schedule, ApiError> {
        self.state
            .store()
            .schedule(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no schedule has id {id:?}")))
    }

    /// Validates `def` (timing, template, kind) and stores it.
    async fn save(
        &self,
        def: ScheduleDef,
        existing: Option<&Schedule>,
    ) -> Result<Schedule, ApiError> {
        if self.state.client.registry().get(&def.job.kind).is_none() {
            return Err(ApiError::invalid(
                "job.kind",
                format!("no kind {:?} is registered", def.job.kind),
            ));
        }
        let schedule = def
            .into_schedule(Source::Api, Utc::now(), existing)
            .map_err(|e| ApiError::invalid(e.field, e.message))?;
        // The template must make a valid job: check it as an enqueue would.
        let probe = schedule.fire_request(None);
        self.state
            .client
            .prepare(probe)
            .map_err(|e| match ApiError::from(e) {
                ApiError::Unprocessable(mut p) => {
                    for error in &mut p.0.errors {
                        error.field = format!("job.{}", error.field);
                    }
                    ApiError::Unprocessable(p)
                }
                other => other,
            })?;
        Ok(self.state.store().put_schedule(&schedule).await?)
    }

    fn refuse_config(schedule: &Schedule) -> Result<(), ApiError> {
        if longshore_jobs::sweep::is_sweep_schedule(&schedule.id) {
            return Err(ApiError::conflict(
                "sweep_schedule",
                format!(
                    "schedule {:?} starts a sweep's passes; change it with the sweep (pause and resume work here)",
                    schedule.id
                ),
            ));
        }
        if schedule.id == PRUNE_SCHEDULE_ID {
            return Err(ApiError::conflict(
                "builtin_schedule",
                format!(
                    "schedule {:?} is built in: it runs the pruner, which deletes finished jobs, \
                     events and old records past their retention; change when it runs with \
                     `schedule`, and how long things are kept with the other settings, under \
                     [pool.retention] in the config file (pause and resume work here)",
                    schedule.id
                ),
            ));
        }
        if schedule.source == Source::Config {
            return Err(ApiError::conflict(
                "config_schedule",
                format!(
                    "schedule {:?} is declared in the config file; change it there (pause and resume work here)",
                    schedule.id
                ),
            ));
        }
        Ok(())
    }
}

#[OpenApi(tag = "Tag::Schedules")]
impl SchedulesApi {
    /// Every schedule, by id.
    #[oai(path = "/schedules", method = "get", operation_id = "list_schedules")]
    async fn list(&self, auth: Auth) -> Result<Json<Vec<ScheduleView>>, ApiError> {
        auth.0.require(Scope::Read)?;
        let schedules = self.state.store().schedules().await?;
        Ok(Json(schedules.into_iter().map(Into::into).collect()))
    }

    /// Create a schedule. An invalid cron expression or time zone is a 422 naming the field.
    #[oai(path = "/schedules", method = "post", operation_id = "create_schedule")]
    async fn create(
        &self,
        auth: Auth,
        body: Json<ScheduleBody>,
    ) -> Result<ScheduleCreated, ApiError> {
        auth.0.require(Scope::Admin)?;
        let b = body.0;
        if longshore_jobs::sweep::is_sweep_schedule(&b.id) {
            return Err(ApiError::invalid(
                "id",
                "ids starting with sweep: belong to sweeps; give the sweep a schedule instead",
            ));
        }
        if self.state.store().schedule(&b.id).await?.is_some() {
            return Err(ApiError::conflict(
                "exists",
                format!(
                    "schedule {:?} exists already; change it with PATCH /api/v1/schedules/{} \
                     or `longshore schedules update {}`",
                    b.id, b.id, b.id
                ),
            ));
        }
        let def = ScheduleDef {
            id: b.id,
            cron: b.cron,
            timezone: b.timezone.unwrap_or_else(|| "UTC".to_owned()),
            job: b.job.into(),
            catch_up: b.catch_up.map_or(CatchUp::Skip, catch_up),
            catch_up_window: std::time::Duration::from_secs(b.catch_up_window_s.unwrap_or(3600)),
            catch_up_cap: b.catch_up_cap.unwrap_or(100),
            overlap: b.overlap.map_or(Overlap::Allow, overlap),
            enabled: b.enabled.unwrap_or(true),
        };
        let schedule = self.save(def, None).await?;
        audit(
            &self.state,
            &auth.0,
            "schedules.create",
            vec![schedule.id.clone()],
            None,
        )
        .await?;
        Ok(ScheduleCreated::Created(Json(schedule.into())))
    }

    /// A schedule.
    #[oai(path = "/schedules/:id", method = "get", operation_id = "get_schedule")]
    async fn get(&self, auth: Auth, id: Path<String>) -> Result<Json<ScheduleView>, ApiError> {
        auth.0.require(Scope::Read)?;
        Ok(Json(self.load(&id.0).await?.into()))
    }

    /// Change a schedule made through the API. A new timing starts from the next tick.
    #[oai(
        path = "/schedules/:id",
        method = "patch",
        operation_id = "edit_schedule"
    )]
    async fn edit(
        &self,
        auth: Auth,
        id: Path<String>,
        body: Json<SchedulePatch>,
    ) -> Result<Json<ScheduleView>, ApiError> {
        auth.0.require(Scope::Admin)?;
        let current = self.load(&id.0).await?;
        Self::refuse_config(&current)?;
        let p = body.0;
        let def = ScheduleDef {
            id: current.id.clone(),
            cron: p.cron.unwrap_or_else(|| current.cron.clone()),
            timezone: p.timezone.unwrap_or_else(|| current.timezone.clone()),
            job: p
                .job
                .map(Into::into)
                .unwrap_or_else(|| current.template.clone()),
            catch_up: p.catch_up.map_or(current.catch_up, catch_up),
            catch_up_window: p
                .catch_up_window_s
                .map_or(current.catch_up_window, std::time::Duration::from_secs),
            catch_up_cap: p.catch_up_cap.unwrap_or(current.catch_up_cap),
            overlap: p.overlap.map_or(current.overlap, overlap),
            enabled: current.enabled,
        };
        let schedule = self.save(def, Some(&current)).await?;
        audit(
            &self.state,
            &auth.0,
            "schedules.edit",
            vec![schedule.id.clone()],
            None,
        )
        .await?;
        Ok(Json(schedule.into()))
    }

    /// Delete a schedule made through the API; its jobs stay.
    #[oai(
        path = "/schedules/:id",
        method = "delete",
        operation_id = "delete_schedule"
    )]
    async fn delete(&self, auth: Auth, id: Path<String>) -> Result<ScheduleDeleted, ApiError> {
        auth.0.require(Scope::Admin)?;
        let current = self.load(&id.0).await?;
        Self::refuse_config(&current)?;
        self.state.store().delete_schedule(&current.id).await?;
        audit(
            &self.state,
            &auth.0,
            "schedules.delete",
            vec![current.id],
            None,
        )
        .await?;
        Ok(ScheduleDeleted::Deleted)
    }

    /// Stop a schedule from firing.
    #[oai(
        path = "/schedules/:id/pause",
        method = "post",
        operation_id = "pause_schedule"
    )]
    async fn pause(&self, auth: Auth, id: Path<String>) -> Result<Json<ScheduleView>, ApiError> {
        auth.0.require(Scope::Operate)?;
        let mut current = self.load(&id.0).await?;
        current.enabled = false;
        current.next_fire_at = None;
        let schedule = self.state.store().put_schedule(&current).await?;
        audit(
            &self.state,
            &auth.0,
            "schedules.pause",
            vec![schedule.id.clone()],
            None,
        )
        .await?;
        Ok(Json(schedule.into()))
    }

    /// Let a paused schedule fire again, from its next tick (paused ticks are not caught up).
    #[oai(
        path = "/schedules/:id/resume",
        method = "post",
        operation_id = "resume_schedule"
    )]
    async fn resume(&self, auth: Auth, id: Path<String>) -> Result<Json<ScheduleView>, ApiError> {
        auth.0.require(Scope::Operate)?;
        let mut current = self.load(&id.0).await?;
        let spec = CronSpec::parse(&current.cron, &current.timezone)
            .map_err(|e| ApiError::conflict("invalid_schedule", e.to_string()))?;
        if !current.enabled {
            current.enabled = true;
            current.next_fire_at = spec.next_after(Utc::now());
        }
        let schedule = self.state.store().put_schedule(&current).await?;
        audit(
            &self.state,
            &auth.0,
            "schedules.resume",
            vec![schedule.id.clone()],
            None,
        )
        .await?;
        Ok(Json(schedule.into()))
    }

    /// Fire now, outside the timing: one job, as a tick would enqueue it.
    #[oai(
        path = "/schedules/:id/trigger",
        method = "post",
        operation_id = "trigger_schedule"
    )]
    async fn trigger(&self, auth: Auth, id: Path<String>) -> Result<Triggered, ApiError> {
        auth.0.require(Scope::Operate)?;
        let schedule = self.load(&id.0).await?;
        let now = Utc::now();
        let enqueued = self
            .state
            .client
            .enqueue(schedule.fire_request(None))
            .await?;
        self.state
            .store()
            .write_event(
                longshore_jobs::event::SCHEDULE_FIRED,
                None,
                Some(enqueued.id),
                serde_json::json!({ "schedule": schedule.id, "tick": now, "manual": true }),
            )
            .await?;
        audit(
            &self.state,
            &auth.0,
            "schedules.trigger",
            vec![schedule.id.clone(), enqueued.id.to_string()],
            None,
        )
        .await?;
        Ok(Triggered::Created(Json(EnqueuedView {
            id: enqueued.id.0,
            state: enqueued.state.into(),
            duplicate: enqueued.duplicate,
        })))
    }

    /// The next `count` ticks (1–100, default 10), in UTC.
    #[oai(
        path = "/schedules/:id/upcoming",
        method = "get",
        operation_id = "upcoming_ticks"
    )]
    async fn upcoming(
        &self,
        auth: Auth,
        id: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] count: Query<Option<u32>>,
    ) -> Result<Json<Vec<DateTime<Utc>>>, ApiError> {
        auth.0.require(Scope::Read)?;
        let schedule = self.load(&id.0).await?;
        let spec = CronSpec::parse(&schedule.cron, &schedule.timezone)
            .map_err(|e| ApiError::conflict("invalid_schedule", e.to_string()))?;
        let from = schedule
            .next_fire_at
            .map(|t| t - chrono::Duration::milliseconds(1))
            .unwrap_or_else(Utc::now);
        Ok(Json(spec.upcoming(from, count.0.unwrap_or(10) as usize)))
    }

    /// The jobs this schedule fired, newest first (up to 500).
    #[oai(
        path = "/schedules/:id/jobs",
        method = "get",
        operation_id = "list_schedule_jobs"
    )]
    async fn jobs(
        &self,
        auth: Auth,
        id: Path<String>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
    ) -> Result<Json<Vec<JobView>>, ApiError> {
        auth.0.require(Scope::Read)?;
        let schedule = self.load(&id.0).await?;
        let filter = JobFilter {
            tag: Some(schedule.tag()),
            ..JobFilter::default()
        };
        let jobs = self
            .state
            .store()
            .list_jobs(&filter, None, limit.0.unwrap_or(50))
            .await?;
        Ok(Json(jobs.into_iter().map(Into::into).collect()))
    }
}
