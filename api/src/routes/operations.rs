//! `/operations`: bulk retry, cancel and delete, by ids or by a time-bounded filter, with a
//! dry run that only counts. A started operation runs in the background in batches (see
//! [`crate::bulk`]) and records its progress, which `GET /operations/{id}` shows; the list
//! pages newest first with a signed `cursor`, as `GET /jobs` does.

use chrono::{DateTime, Utc};
use longshore_jobs::JobId;
use longshore_jobs::admin::{ArgsMatch, BulkAction, JobFilter, Operation, Scope};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::jobs::MAX_LIMIT;
use super::{Tag, audit, idempotent};
use crate::auth::{Auth, Principal};
use crate::model::{ActionView, OperationPage, OperationView, State};
use crate::problem::ApiError;
use crate::{ApiState, cursor};

/// Most ids in one operation.
const MAX_IDS: usize = 10_000;

/// Which jobs an operation concerns: `ids`, or a filter bounded by `created_after` and
/// `created_before`.
#[derive(Clone, Debug, Default, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct SelectorBody {
    /// These jobs.
    #[oai(default)]
    pub ids: Vec<Uuid>,
    /// Jobs in any of these states.
    #[oai(default)]
    pub states: Vec<State>,
    /// Of this queue.
    #[oai(skip_serializing_if_is_none)]
    pub queue: Option<String>,
    /// Of this kind.
    #[oai(skip_serializing_if_is_none)]
    pub kind: Option<String>,
    /// With this tag.
    #[oai(skip_serializing_if_is_none)]
    pub tag: Option<String>,
    /// Created at or after (required without `ids`).
    #[oai(skip_serializing_if_is_none)]
    pub created_after: Option<DateTime<Utc>>,
    /// Created before (required without `ids`).
    #[oai(skip_serializing_if_is_none)]
    pub created_before: Option<DateTime<Utc>>,
    /// Values inside the args: `{"user.id": "42"}`.
    #[oai(default)]
    pub args: std::collections::BTreeMap<String, String>,
    /// Only jobs whose last error contains this text.
    #[oai(
        skip_serializing_if_is_none,
        validator(min_length = 1, max_length = 200)
    )]
    pub error: Option<String>,
}

/// A bulk operation to run, or with `dry_run`, to count.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct OperationBody {
    /// What to do.
    pub action: ActionView,
    /// Which jobs.
    pub filter: SelectorBody,
    /// Only count the jobs it would touch.
    #[oai(default)]
    pub dry_run: bool,
}

/// What a dry run found.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct DryRun {
    /// Jobs the filter matches now.
    pub matched: i64,
}

#[derive(ApiResponse)]
pub(crate) enum Started {
    /// The dry run's count; nothing changed.
    #[oai(status = 200)]
    DryRun(Json<DryRun>),
    /// Started; follow its progress at `/operations/{id}`.
    #[oai(status = 202)]
    Started(Json<OperationView>),
}

pub struct OperationsApi {
    pub state: ApiState,
}

/// The store filter of a selector, refusing unbounded ones.
pub fn job_filter(body: &SelectorBody) -> Result<JobFilter, ApiError> {
    if body.ids.len() > MAX_IDS {
        return Err(ApiError::invalid(
            "filter.ids",
            format!("at most {MAX_IDS} ids"),
        ));
    }
    let mut args = Vec::new();
    for (path, value) in &body.args {
        args.push(
            ArgsMatch::parse(path, value)
                .map_err(|e| ApiError::invalid(format!("filter.args.{path}"), e))?,
        );
    }
    let filter = JobFilter {
        states: body.states.iter().copied().map(Into::into).collect(),
        queue: body.queue.clone(),
        kind: body.kind.clone(),
        tag: body.tag.clone(),
        created_after: body.created_after,
        created_before: body.created_before,
        args,
        ids: body.ids.iter().copied().map(JobId).collect(),
        error: body.error.clone(),
        ..JobFilter::default()
    };
    filter.validate().map_err(|e| match e {
        longshore_jobs::EnqueueError::Invalid { field, message } => {
            ApiError::invalid(format!("filter.{field}"), message)
        }
        other => other.into(),
    })?;
    if !filter.is_bounded() {
        return Err(ApiError::invalid(
            "filter",
            "give ids, or both created_after and created_before",
        ));
    }
    if let (Some(a), Some(b)) = (filter.created_after, filter.created_before)
        && a >= b
    {
        return Err(ApiError::invalid(
            "filter.created_before",
            "must be after created_after",
        ));
    }
    Ok(filter)
}

/// Counts the jobs of `filter` (`dry_run`), or starts the operation that acts on them in the
/// background, audited, and idempotent by `key` over `body`.
pub(crate) async fn start<B: serde::Serialize>(
    state: &ApiState,
    who: &Principal,
    action: ActionView,
    filter: JobFilter,
    dry_run: bool,
    key: Option<String>,
    body: &B,
) -> Result<Started, ApiError> {
    if dry_run {
        let matched = state.store().count_jobs(&filter).await?;
        return Ok(Started::DryRun(Json(DryRun { matched })));
    }
    let action: BulkAction = action.into();
    let view = idempotent(state, who, key, body, || async {
        let op = Operation {
            id: Uuid::now_v7(),
            action,
            total: state.store().count_jobs(&filter).await?,
            filter: filter.clone(),
            state: "running".to_owned(),
            done: 0,
            skipped: 0,
            actor: who.actor.clone(),
            created_at: Utc::now(),
            finished_at: None,
            error: None,
            owner: Some(state.shared.bulk.owner().to_owned()),
            resume_before: None,
        };
        state.store().create_operation(&op).await?;
        let detail = serde_json::json!({ "operation": op.id, "filter": &op.filter });
        let action_name = format!("operations.{}", action.as_str());
        audit(
            state,
            who,
            &action_name,
            vec![op.id.to_string()],
            Some(detail),
        )
        .await?;
        state.shared.bulk.start(op.clone());
        Ok(OperationView::from(op))
    })
    .await?;
    Ok(Started::Started(Json(view)))
}

#[OpenApi(tag = "Tag::Operations")]
impl OperationsApi {
    /// Start a bulk retry, cancel or delete, or count what it would touch (`dry_run`).
    #[oai(
        path = "/operations",
        method = "post",
        operation_id = "start_operation"
    )]
    async fn start(
        &self,
        auth: Auth,
        body: Json<OperationBody>,
        #[oai(name = "Idempotency-Key", validator(max_length = 200))] key: Header<Option<String>>,
    ) -> Result<Started, ApiError> {
        auth.0.require(Scope::Operate)?;
        let filter = job_filter(&body.0.filter)?;
        start(
            &self.state,
            &auth.0,
            body.0.action,
            filter,
            body.0.dry_run,
            key.0,
            &body.0,
        )
        .await
    }

    /// List operations, newest first. Pages continue with `cursor`.
    #[oai(path = "/operations", method = "get", operation_id = "list_operations")]
    async fn list(
        &self,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
        #[oai(validator(max_length = 200))] cursor: Query<Option<String>>,
    ) -> Result<Json<OperationPage>, ApiError> {
        auth.0.require(Scope::Read)?;
        let limit = limit.0.unwrap_or(50).min(MAX_LIMIT);
        let before = match cursor.0.as_deref() {
            Some(c) => Some(cursor::decode(&self.state, "operations", c).await?),
            None => None,
        };
        let mut ops = self.state.store().operations(before, limit + 1).await?;
        let more = ops.len() > limit as usize;
        ops.truncate(limit as usize);
        let next_cursor = match (more, ops.last()) {
            (true, Some(last)) => Some(cursor::encode(&self.state, "operations", last.id).await?),
            _ => None,
        };
        let items = ops.into_iter().map(Into::into).collect();
        Ok(Json(OperationPage { items, next_cursor }))
    }

    /// One operation and its progress.
    #[oai(
        path = "/operations/:id",
        method = "get",
        operation_id = "get_operation"
    )]
    async fn get(&self, auth: Auth, id: Path<String>) -> Result<Json<OperationView>, ApiError> {
        auth.0.require(Scope::Read)?;
        let not_found = || ApiError::not_found(format!("no operation has id {:?}", id.0));
        let uuid: Uuid = id.0.parse().map_err(|_| not_found())?;
        let op = self
            .state
            .store()
            .operation(uuid)
            .await?
            .ok_or_else(not_found)?;
        Ok(Json(op.into()))
    }
}
