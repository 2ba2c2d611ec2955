//! `/jobs`: enqueue (one or a batch, idempotent), list with filters, detail, attempts,
//! events, retry, cancel, run now, edit and delete.

use std::time::Duration;

use chrono::{DateTime, Utc};
use longshore_jobs::admin::{ArgsMatch, JobEdit, JobFilter, Scope};
use longshore_jobs::job::UniqueScope;
use longshore_jobs::store::CancelOutcome;
use longshore_jobs::{EnqueueRequest, Enqueued, IdPrefix, JobId, UniqueOptions};
use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::{Keyed, Tag, audit, claim_key};
use crate::auth::Auth;
use crate::model::{AttemptView, EnqueuedView, EventView, JobPage, JobView, State};
use crate::problem::{ApiError, Problem};
use crate::{ApiState, cursor};

/// Most jobs in one list page.
pub const MAX_LIMIT: u32 = 500;
/// Most jobs in one batch enqueue.
pub const MAX_BATCH: usize = 1000;

/// A job to enqueue.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct EnqueueBody {
    /// The kind's name, e.g. `sleep`.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub kind: String,
    /// The handler's input (at most 256 KiB). Defaults to `{}`.
    #[oai(skip_serializing_if_is_none)]
    pub args: Option<serde_json::Value>,
    /// The queue. Defaults to the kind's.
    #[oai(skip_serializing_if_is_none)]
    pub queue: Option<String>,
    /// 0 (first) to 9 (last). Defaults to the kind's.
    #[oai(skip_serializing_if_is_none)]
    pub priority: Option<i64>,
    /// 1 to 1000. Defaults to the kind's.
    #[oai(skip_serializing_if_is_none)]
    pub max_attempts: Option<i64>,
    /// Milliseconds to wait before the first attempt; not with `run_at`.
    #[oai(skip_serializing_if_is_none)]
    pub delay_ms: Option<i64>,
    /// When to run first; not with `delay_ms`.
    #[oai(skip_serializing_if_is_none)]
    pub run_at: Option<DateTime<Utc>>,
    /// At most one job with this key at a time.
    #[oai(skip_serializing_if_is_none)]
    pub unique: Option<UniqueBody>,
    /// Labels for filtering (at most 32).
    #[oai(default)]
    pub tags: Vec<String>,
    /// A JSON object of metadata.
    #[oai(skip_serializing_if_is_none)]
    pub metadata: Option<serde_json::Value>,
    /// Per-attempt time limit in milliseconds.
    #[oai(skip_serializing_if_is_none)]
    pub timeout_ms: Option<i64>,
    /// Jobs that share this key run one at a time, in enqueue order (1 to 512 bytes).
    #[oai(validator(min_length = 1, max_length = 512))]
    #[oai(skip_serializing_if_is_none)]
    pub sequence: Option<String>,
}

/// Uniqueness of an enqueued job.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct UniqueBody {
    /// The key.
    #[oai(validator(min_length = 1, max_length = 500))]
    pub key: String,
    /// `active` (default): held while the job waits or runs; `any`: held for as long as the
    /// job is stored.
    #[oai(skip_serializing_if_is_none)]
    pub scope: Option<UniqueScopeView>,
    /// When set, the key is held per window of this many seconds.
    #[oai(validator(minimum(value = "1"), maximum(value = "31622400")))]
    #[oai(skip_serializing_if_is_none)]
    pub window_s: Option<u64>,
}

/// Which states hold a unique key.
#[derive(Clone, Copy, Debug, Enum, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum UniqueScopeView {
    /// Waiting or running jobs.
    Active,
    /// Any stored job.
    Any,
}

impl From<EnqueueBody> for EnqueueRequest {
    fn from(b: EnqueueBody) -> EnqueueRequest {
        EnqueueRequest {
            kind: b.kind,
            args: b.args,
            queue: b.queue,
            priority: b.priority,
            max_attempts: b.max_attempts,
            delay_ms: b.delay_ms,
            run_at: b.run_at,
            unique: b.unique.map(|u| UniqueOptions {
                key: u.key,
                scope: match u.scope {
                    Some(UniqueScopeView::Any) => UniqueScope::Any,
                    _ => UniqueScope::Active,
                },
                window: u.window_s.map(Duration::from_secs),
            }),
            tags: b.tags,
            metadata: b.metadata,
            timeout_ms: b.timeout_ms,
            sequence: b.sequence,
        }
    }
}

/// Many jobs to enqueue at once.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct BatchBody {
    /// The jobs (1 to 1000). Each is validated on its own.
    pub jobs: Vec<EnqueueBody>,
}

/// The outcome of one item of a batch.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct BatchItem {
    /// The item's position in the request, from 0.
    pub index: u32,
    /// The stored job, when the item was valid.
    #[oai(skip_serializing_if_is_none)]
    pub job: Option<EnqueuedView>,
    /// Why the item was refused.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<Problem>,
}

/// The outcomes of a batch, in request order.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct BatchResult {
    /// One per item.
    pub items: Vec<BatchItem>,
    /// Items stored.
    pub enqueued: u32,
    /// Items refused.
    pub failed: u32,
}

/// A batch's answer: the stored jobs in order, with the refused items between them.
fn batch_result(refused: &[Option<Problem>], stored: &[Enqueued]) -> BatchResult {
    let mut stored = stored.iter();
    let mut out = BatchResult {
        items: Vec::with_capacity(refused.len()),
        enqueued: 0,
        failed: 0,
    };
    for (index, problem) in refused.iter().enumerate() {
        let index = index as u32;
        let (job, error) = match problem {
            Some(problem) => {
                out.failed += 1;
                (None, Some(problem.clone()))
            }
            None => {
                out.enqueued += 1;
                (stored.next().map(EnqueuedView::from), None)
            }
        };
        out.items.push(BatchItem { index, job, error });
    }
    out
}

/// A change to a waiting job. Absent fields stay as they are.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct EditBody {
    /// New args, checked against the job's kind.
    #[oai(skip_serializing_if_is_none)]
    pub args: Option<serde_json::Value>,
    /// New priority, 0–9.
    #[oai(validator(minimum(value = "0"), maximum(value = "9")))]
    #[oai(skip_serializing_if_is_none)]
    pub priority: Option<i16>,
    /// New time to run.
    #[oai(skip_serializing_if_is_none)]
    pub run_at: Option<DateTime<Utc>>,
    /// New attempt limit, 1–1000, above the attempts made.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    #[oai(skip_serializing_if_is_none)]
    pub max_attempts: Option<i32>,
    /// New tags.
    #[oai(skip_serializing_if_is_none)]
    pub tags: Option<Vec<String>>,
    /// New metadata (a JSON object).
    #[oai(skip_serializing_if_is_none)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(ApiResponse)]
enum Created {
    /// Stored (or, for a duplicate of a unique job, found).
    #[oai(status = 201)]
    Created(Json<EnqueuedView>),
}

#[derive(ApiResponse)]
enum CancelResponse {
    /// The waiting job was cancelled.
    #[oai(status = 200)]
    Cancelled(Json<JobView>),
    /// The job is running: its worker was asked to stop it.
    #[oai(status = 202)]
    Requested(Json<JobView>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

pub struct JobsApi {
    pub state: ApiState,
}

fn job_id(id: &str) -> Result<JobId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no job has id {id:?}")))
}

/// `args.<path>=value` pairs of the query string.
fn args_filters(req: &Request) -> Result<Vec<ArgsMatch>, ApiError> {
    let mut matches = Vec::new();
    let query = req.uri().query().unwrap_or_default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if let Some(path) = name.strip_prefix("args.") {
            if matches.len() == 8 {
                return Err(ApiError::invalid(name.as_ref(), "at most 8 args filters"));
            }
            matches.push(
                ArgsMatch::parse(path, &value).map_err(|e| ApiError::invalid(name.as_ref(), e))?,
            );
        }
    }
    Ok(matches)
}

#[OpenApi(tag = "Tag::Jobs")]
impl JobsApi {
    /// Enqueue a job.
    ///
    /// With an `Idempotency-Key`, a retried request gets the first response again; the
    /// same key with a different body is refused (422), and while the first request is
    /// still running, 409.
    #[oai(path = "/jobs", method = "post", operation_id = "enqueue_job")]
    async fn enqueue(
        &self,
        auth: Auth,
        body: Json<EnqueueBody>,
        #[oai(name = "Idempotency-Key", validator(max_length = 200))] key: Header<Option<String>>,
    ) -> Result<Created, ApiError> {
        auth.0.require(Scope::Enqueue)?;
        let claim = match claim_key(&self.state, &auth.0, key.0, &body.0).await? {
            Keyed::Replay(view) => return Ok(Created::Created(Json(view))),
            Keyed::Run(claim) => claim,
        };
        let stored = async {
            let job = self.state.client.prepare(body.0.clone().into())?;
            let keyed = claim.as_ref().map(|claim| {
                claim.response(|stored| (201, EnqueuedView::from(&stored[0]).to_json_string()))
            });
            Ok::<_, ApiError>(self.state.store().insert_keyed(vec![job], keyed).await?)
        }
        .await;
        match stored {
            Ok(stored) => Ok(Created::Created(Json(EnqueuedView::from(&stored[0])))),
            Err(error) => {
                if let Some(claim) = claim {
                    claim.release(&self.state).await;
                }
                Err(error)
            }
        }
    }

    /// Enqueue up to 1,000 jobs in one transaction; each item gets its own result.
    #[oai(path = "/jobs/batch", method = "post", operation_id = "enqueue_jobs")]
    async fn enqueue_batch(
        &self,
        auth: Auth,
        body: Json<BatchBody>,
        #[oai(name = "Idempotency-Key", validator(max_length = 200))] key: Header<Option<String>>,
    ) -> Result<Json<BatchResult>, ApiError> {
        auth.0.require(Scope::Enqueue)?;
        if body.0.jobs.is_empty() || body.0.jobs.len() > MAX_BATCH {
            return Err(ApiError::invalid(
                "jobs",
                format!("give 1 to {MAX_BATCH} jobs"),
            ));
        }
        let claim = match claim_key(&self.state, &auth.0, key.0, &body.0).await? {
            Keyed::Replay(result) => return Ok(Json(result)),
            Keyed::Run(claim) => claim,
        };
        // Each item is checked on its own; the refused ones are in the answer, not the store.
        let mut refused: Vec<Option<Problem>> = Vec::with_capacity(body.0.jobs.len());
        let mut valid = Vec::new();
        for item in body.0.jobs.iter().cloned() {
            match self.state.client.prepare(item.into()) {
                Ok(job) => {
                    valid.push(job);
                    refused.push(None);
                }
                Err(error) => refused.push(Some(ApiError::from(error).problem().clone())),
            }
        }
        let refused = std::sync::Arc::new(refused);
        let keyed = claim.as_ref().map(|claim| {
            let refused = std::sync::Arc::clone(&refused);
            claim.response(move |stored| (200, batch_result(&refused, stored).to_json_string()))
        });
        match self.state.store().insert_keyed(valid, keyed).await {
            Ok(stored) => Ok(Json(batch_result(&refused, &stored))),
            Err(error) => {
                if let Some(claim) = claim {
                    claim.release(&self.state).await;
                }
                Err(error.into())
            }
        }
    }

    /// List jobs, newest first.
    ///
    /// Filters narrow the list: `state` (repeatable), `queue`, `kind`, `tag`, a creation time
    /// range, `id_prefix` (the start of the id, 4 to 32 hex digits, dashes optional: with
    /// `limit=2`, one item means the prefix names one job), `unique_key` (which job a stream
    /// entry `{stream}:{entry_id}` or a lifecycle event `lifecycle:{event_id}` became), and
    /// `args.<path>=value` (e.g. `args.user.id=42`) for a value inside the args. Pages
    /// continue with `cursor`.
    #[oai(path = "/jobs", method = "get", operation_id = "list_jobs")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: Auth,
        req: &Request,
        state: Query<Vec<State>>,
        queue: Query<Option<String>>,
        kind: Query<Option<String>>,
        tag: Query<Option<String>>,
        created_after: Query<Option<DateTime<Utc>>>,
        created_before: Query<Option<DateTime<Utc>>>,
        #[oai(validator(max_length = 36))] id_prefix: Query<Option<String>>,
        #[oai(validator(min_length = 1, max_length = 512))] unique_key: Query<Option<String>>,
        #[oai(validator(min_length = 1, max_length = 200))] error: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
        #[oai(validator(max_length = 200))] cursor: Query<Option<String>>,
    ) -> Result<Json<JobPage>, ApiError> {
        auth.0.require(Scope::Read)?;
        let filter = JobFilter {
            states: state.0.into_iter().map(Into::into).collect(),
            queue: queue.0,
            kind: kind.0,
            tag: tag.0,
            created_after: created_after.0,
            created_before: created_before.0,
            args: args_filters(req)?,
            ids: Vec::new(),
            id_prefix: id_prefix
                .0
                .as_deref()
                .map(IdPrefix::parse)
                .transpose()
                .map_err(|message| ApiError::invalid("id_prefix", message))?,
            unique_key: unique_key.0,
            error: error.0,
        };
        filter.validate()?;
        let limit = limit.0.unwrap_or(50).min(MAX_LIMIT);
        let before = match cursor.0.as_deref() {
            Some(c) => Some(JobId(cursor::decode(&self.state, "jobs", c).await?)),
            None => None,
        };
        let jobs = self
            .state
            .store()
            .list_jobs(&filter, before, limit + 1)
            .await?;
        let more = jobs.len() > limit as usize;
        let items: Vec<JobView> = jobs
            .into_iter()
            .take(limit as usize)
            .map(Into::into)
            .collect();
        let next_cursor = match (more, items.last()) {
            (true, Some(last)) => Some(cursor::encode(&self.state, "jobs", last.id).await?),
            _ => None,
        };
        Ok(Json(JobPage { items, next_cursor }))
    }

    /// A job.
    #[oai(path = "/jobs/:id", method = "get", operation_id = "get_job")]
    async fn get(&self, auth: Auth, id: Path<String>) -> Result<Json<JobView>, ApiError> {
        auth.0.require(Scope::Read)?;
        let id = job_id(&id.0)?;
        let job = self.state.store().job(id).await?;
        job.map(|j| Json(j.into()))
            .ok_or_else(|| ApiError::not_found(format!("no job has id {id}")))
    }

    /// A job's attempts, oldest first.
    #[oai(
        path = "/jobs/:id/attempts",
        method = "get",
        operation_id = "list_job_attempts"
    )]
    async fn attempts(
        &self,
        auth: Auth,
        id: Path<String>,
    ) -> Result<Json<Vec<AttemptView>>, ApiError> {
        auth.0.require(Scope::Read)?;
        let id = job_id(&id.0)?;
        if self.state.store().job(id).await?.is_none() {
            return Err(ApiError::not_found(format!("no job has id {id}")));
        }
        let attempts = self.state.store().attempts(id).await?;
        Ok(Json(attempts.into_iter().map(Into::into).collect()))
    }

    /// A job's events, oldest first.
    #[oai(
        path = "/jobs/:id/events",
        method = "get",
        operation_id = "list_job_events"
    )]
    async fn events(&self, auth: Auth, id: Path<String>) -> Result<Json<Vec<EventView>>, ApiError> {
        auth.0.require(Scope::Read)?;
        let id = job_id(&id.0)?;
        let events = self.state.store().job_events(id).await?;
        if events.is_empty() && self.state.store().job(id).await?.is_none() {
            return Err(ApiError::not_found(format!("no job has id {id}")));
        }
        Ok(Json(events.iter().map(Into::into).collect()))
    }

    /// Retry a job that is not running: it becomes available now, with one more attempt if
    /// its attempts were used up.
    #[oai(path = "/jobs/:id/retry", method = "post", operation_id = "retry_job")]
    async fn retry(&self, auth: Auth, id: Path<String>) -> Result<Json<JobView>, ApiError> {
        auth.0.require(Scope::Operate)?;
        let id = job_id(&id.0)?;
        let job = self.state.store().retry(id).await?;
        audit(
            &self.state,
            &auth.0,
            "jobs.retry",
            vec![id.to_string()],
            None,
        )
        .await?;
        Ok(Json(job.into()))
    }

    /// Cancel a job: a waiting one at once (200), a running one by asking its worker (202).
    #[oai(
        path = "/jobs/:id/cancel",
        method = "post",
        operation_id = "cancel_job"
    )]
    async fn cancel(&self, auth: Auth, id: Path<String>) -> Result<CancelResponse, ApiError> {
        auth.0.require(Scope::Operate)?;
        let id = job_id(&id.0)?;
        let outcome = self.state.store().cancel(id).await?;
        audit(
            &self.state,
            &auth.0,
            "jobs.cancel",
            vec![id.to_string()],
            None,
        )
        .await?;
        let job = self
            .state
            .store()
            .job(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no job has id {id}")))?;
        Ok(match outcome {
            CancelOutcome::Cancelled => CancelResponse::Cancelled(Json(job.into())),
            CancelOutcome::Requested => CancelResponse::Requested(Json(job.into())),
        })
    }

    /// Run a scheduled or retrying job now.
    #[oai(path = "/jobs/:id/run", method = "post", operation_id = "run_job_now")]
    async fn run_now(&self, auth: Auth, id: Path<String>) -> Result<Json<JobView>, ApiError> {
        auth.0.require(Scope::Operate)?;
        let id = job_id(&id.0)?;
        let job = self.state.store().promote_job(id).await?;
        audit(&self.state, &auth.0, "jobs.run", vec![id.to_string()], None).await?;
        Ok(Json(job.into()))
    }

    /// Edit a waiting job (scheduled, available or retryable).
    #[oai(path = "/jobs/:id", method = "patch", operation_id = "edit_job")]
    async fn edit(
        &self,
        auth: Auth,
        id: Path<String>,
        body: Json<EditBody>,
    ) -> Result<Json<JobView>, ApiError> {
        auth.0.require(Scope::Operate)?;
        let id = job_id(&id.0)?;
        let current = self
            .state
            .store()
            .job(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no job has id {id}")))?;
        let edit = body.0;
        let mut change = JobEdit {
            args: edit.args,
            priority: edit.priority,
            run_at: edit.run_at,
            max_attempts: edit.max_attempts,
            tags: edit.tags,
            metadata: edit.metadata,
        };
        change.validate(Utc::now())?;
        if let Some(args) = &change.args {
            let kind = self
                .state
                .client
                .registry()
                .get(&current.kind)
                .ok_or_else(|| {
                    ApiError::conflict(
                        "unknown_kind",
                        format!("kind {} is not registered here", current.kind),
                    )
                })?;
            kind.check_args(args).map_err(|e| {
                ApiError::invalid("args", format!("do not fit kind {}: {e}", current.kind))
            })?;
            // Stored as an enqueue stores them: with the kind's secrets sealed.
            let sealed = kind
                .seal_args(args.clone())
                .map_err(|e| ApiError::invalid("args", e))?;
            change.args = Some(sealed);
        }
        let job = self.state.store().edit_job(id, &change).await?;
        let detail = serde_json::to_value(&change).ok();
        audit(
            &self.state,
            &auth.0,
            "jobs.edit",
            vec![id.to_string()],
            detail,
        )
        .await?;
        Ok(Json(job.into()))
    }

    /// Delete a job that is not running.
    #[oai(path = "/jobs/:id", method = "delete", operation_id = "delete_job")]
    async fn delete(&self, auth: Auth, id: Path<String>) -> Result<Deleted, ApiError> {
        auth.0.require(Scope::Operate)?;
        let id = job_id(&id.0)?;
        self.state.store().delete_job(id).await?;
        audit(
            &self.state,
            &auth.0,
            "jobs.delete",
            vec![id.to_string()],
            None,
        )
        .await?;
        Ok(Deleted::Deleted)
    }
}
