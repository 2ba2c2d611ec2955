//! `/webhook-endpoints`: who receives deliveries of pushes and events, their breakers, their
//! delivery logs, redelivery and replay. Secrets are shown once (on create and rotate) and
//! stored encrypted; no answer of these routes ever carries a stored secret.

use chrono::{DateTime, Utc};
use longshore_jobs::admin::Scope;
use longshore_jobs::job::{UniqueOptions, UniqueScope};
use longshore_jobs::webhook::{DeliveryAttempt, Endpoint, EndpointSpec, new_secret};
use longshore_jobs::{EnqueueRequest, JobId};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::{Tag, audit};
use crate::ApiState;
use crate::auth::Auth;
use crate::problem::ApiError;

/// The kind of a delivery job (as `longshore-workers` names it).
const DELIVER: &str = "longshore.webhook";

/// An endpoint to create.
#[derive(Clone, Debug, Object)]
pub struct EndpointBody {
    /// Where deliveries are POSTed (`http://` or `https://`).
    pub url: String,
    /// What it receives: push kinds and event types (e.g. `job.discarded`), a prefix ending
    /// in `.*`, or `*` for everything.
    pub kinds: Vec<String>,
    /// Whether deliveries are made. Defaults to true.
    pub enabled: Option<bool>,
    /// The most deliveries per second (per process). Defaults to none.
    pub rate_limit: Option<i32>,
    /// Deliver one key's messages (a push's user, an event's job) one after another.
    /// Defaults to false.
    pub ordered: Option<bool>,
}

/// What to change of an endpoint; `rate_limit: null` removes the limit. Enabling a
/// disabled endpoint also forgets its failures.
#[derive(Clone, Debug, Object)]
pub struct EndpointPatch {
    /// Where deliveries are POSTed.
    pub url: Option<String>,
    /// What it receives.
    pub kinds: Option<Vec<String>>,
    /// Whether deliveries are made.
    pub enabled: Option<bool>,
    /// The most deliveries per second; null for no limit.
    pub rate_limit: MaybeUndefined<i32>,
    /// Deliver one key's messages one after another.
    pub ordered: Option<bool>,
}

/// An endpoint, without its secret.
#[derive(Clone, Debug, Object)]
pub struct EndpointView {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// What it receives.
    pub kinds: Vec<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// The most deliveries per second.
    pub rate_limit: Option<i32>,
    /// Whether one key's deliveries go one after another.
    pub ordered: bool,
    /// `closed` (deliveries flow), `open` (waiting until `breaker_until`) or `half_open`
    /// (the next delivery probes).
    pub breaker: String,
    /// Until when the breaker holds deliveries back.
    pub breaker_until: Option<DateTime<Utc>>,
    /// Failed deliveries in a row.
    pub consecutive_failures: i32,
    /// Since when every delivery has failed.
    pub failing_since: Option<DateTime<Utc>>,
    /// Why Longshore disabled it.
    pub disabled_reason: Option<String>,
    /// Until when the previous secret signs beside the current one.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&Endpoint> for EndpointView {
    fn from(e: &Endpoint) -> EndpointView {
        let breaker = match e.breaker_until {
            None => "closed",
            Some(until) if until > Utc::now() => "open",
            Some(_) => "half_open",
        };
        EndpointView {
            id: e.id,
            url: e.url.clone(),
            kinds: e.kinds.clone(),
            enabled: e.enabled,
            rate_limit: e.rate_limit,
            ordered: e.ordered,
            breaker: breaker.to_owned(),
            breaker_until: e.breaker_until,
            consecutive_failures: e.consecutive_failures,
            failing_since: e.failing_since,
            disabled_reason: e.disabled_reason.clone(),
            previous_secret_until: e.previous_until.filter(|u| *u > Utc::now()),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A created endpoint with its secret, shown this once.
#[derive(Clone, Debug, Object)]
pub struct CreatedEndpoint {
    /// The endpoint.
    pub endpoint: EndpointView,
    /// The signing secret (`whsec_…`): give it to the receiver to verify signatures. It is
    /// not shown again.
    pub secret: String,
}

/// Every endpoint.
#[derive(Clone, Debug, Object)]
pub struct EndpointList {
    /// Oldest first.
    pub items: Vec<EndpointView>,
}

/// One attempt of the delivery log.
#[derive(Clone, Debug, Object)]
pub struct DeliveryAttemptView {
    /// Its id; page with `before`.
    pub id: i64,
    /// The delivery job.
    pub job_id: Uuid,
    /// The message (`webhook-id`).
    pub message_id: String,
    /// What was delivered.
    pub event_type: String,
    /// Which attempt of the delivery.
    pub attempt: i32,
    /// When.
    pub at: DateTime<Utc>,
    /// The HTTP status, when an answer came.
    pub status: Option<i32>,
    /// How long it took.
    pub latency_ms: i32,
    /// Why it failed.
    pub error: Option<String>,
    /// The start of the answer.
    pub response: Option<String>,
}

impl From<DeliveryAttempt> for DeliveryAttemptView {
    fn from(a: DeliveryAttempt) -> DeliveryAttemptView {
        DeliveryAttemptView {
            id: a.id,
            job_id: a.job_id,
            message_id: a.message_id,
            event_type: a.event_type,
            attempt: a.attempt,
            at: a.at,
            status: a.status,
            latency_ms: a.latency_ms,
            error: a.error,
            response: a.response,
        }
    }
}

/// A page of the delivery log.
#[derive(Clone, Debug, Object)]
pub struct DeliveryAttemptPage {
    /// Newest first.
    pub items: Vec<DeliveryAttemptView>,
    /// Pass as `before` for the next page; absent on the last.
    pub next_before: Option<i64>,
}

/// A rotated secret.
#[derive(Clone, Debug, Object)]
pub struct RotatedSecret {
    /// The new secret, shown this once.
    pub secret: String,
    /// Until when the previous secret keeps signing beside it.
    pub previous_secret_until: DateTime<Utc>,
}

/// Which delivery to make again.
#[derive(Clone, Debug, Object)]
pub struct RedeliverBody {
    /// A delivery job of this endpoint (from its delivery log).
    pub job_id: String,
}

/// Which deliveries to make again.
#[derive(Clone, Debug, Object)]
pub struct ReplayBody {
    /// Deliveries first attempted at or after this time.
    pub since: DateTime<Utc>,
    /// And before this one. Defaults to now.
    pub until: Option<DateTime<Utc>>,
}

/// New delivery jobs.
#[derive(Clone, Debug, Object)]
pub struct Redelivered {
    /// The jobs made, one per message.
    pub job_ids: Vec<Uuid>,
}

#[derive(ApiResponse)]
enum Created {
    /// Created; the secret is shown this once.
    #[oai(status = 201)]
    Created(Json<CreatedEndpoint>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted, with its delivery log.
    #[oai(status = 204)]
    Deleted,
}

pub struct WebhooksApi {
    pub state: ApiState,
}

impl WebhooksApi {
    async fn endpoint(&self, id: Uuid) -> Result<Endpoint, ApiError> {
        self.state
            .store()
            .endpoint(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no webhook endpoint {id}")))
    }

    fn seal(&self, id: Uuid, secret: &str) -> Result<String, ApiError> {
        self.state
            .webhooks
            .keyring
            .seal(secret, &Endpoint::secret_aad(id))
            .map_err(|error| ApiError::bad_request("secrets_unconfigured", error.to_string()))
    }

    /// Makes one more delivery of a logged delivery job, under a key of its own.
    async fn redeliver_job(&self, endpoint: Uuid, job_id: JobId) -> Result<Uuid, ApiError> {
        let job = self
            .state
            .store()
            .job(job_id)
            .await?
            .filter(|job| {
                job.kind == DELIVER && job.args["endpoint_id"] == serde_json::json!(endpoint)
            })
            .ok_or_else(|| {
                ApiError::not_found(format!("no delivery job {job_id} of endpoint {endpoint}"))
            })?;
        let mut request = EnqueueRequest::new(DELIVER, job.args.clone());
        request.unique = Some(UniqueOptions {
            key: format!("webhook:{endpoint}:redeliver:{}", Uuid::now_v7()),
            scope: UniqueScope::Any,
            window: None,
        });
        Ok(self.state.client.enqueue(request).await?.id.0)
    }
}

#[OpenApi(tag = "Tag::Webhooks")]
impl WebhooksApi {
    /// Create an endpoint; its signing secret is in the answer, this once.
    #[oai(
        path = "/webhook-endpoints",
        method = "post",
        operation_id = "create_webhook_endpoint"
    )]
    async fn create(&self, auth: Auth, body: Json<EndpointBody>) -> Result<Created, ApiError> {
        auth.0.require(Scope::Admin)?;
        let body = body.0;
        let spec = EndpointSpec {
            url: Some(body.url.clone()),
            kinds: Some(body.kinds.clone()),
            enabled: body.enabled,
            rate_limit: Some(body.rate_limit),
            ordered: body.ordered,
        };
        spec.check().map_err(ApiError::from)?;
        let id = Uuid::now_v7();
        let secret = new_secret();
        let now = Utc::now();
        let endpoint = Endpoint {
            id,
            url: body.url,
            kinds: body.kinds,
            enabled: body.enabled.unwrap_or(true),
            rate_limit: body.rate_limit,
            ordered: body.ordered.unwrap_or(false),
            secret: self.seal(id, &secret)?,
            previous_secret: None,
            previous_until: None,
            consecutive_failures: 0,
            failing_since: None,
            breaker_until: None,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        // The relay's cursors before the endpoint: every message after it is ahead of them.
        longshore_jobs::webhook::relay_cursors(self.state.store()).await?;
        self.state.store().create_endpoint(&endpoint).await?;
        audit(
            &self.state,
            &auth.0,
            "webhooks.create",
            vec![id.to_string()],
            Some(serde_json::json!({ "url": endpoint.url, "kinds": endpoint.kinds })),
        )
        .await?;
        Ok(Created::Created(Json(CreatedEndpoint {
            endpoint: EndpointView::from(&endpoint),
            secret,
        })))
    }

    /// Every endpoint, oldest first, with its breaker's state.
    #[oai(
        path = "/webhook-endpoints",
        method = "get",
        operation_id = "list_webhook_endpoints"
    )]
    async fn list(&self, auth: Auth) -> Result<Json<EndpointList>, ApiError> {
        auth.0.require(Scope::Read)?;
        let endpoints = self.state.store().endpoints().await?;
        Ok(Json(EndpointList {
            items: endpoints.iter().map(EndpointView::from).collect(),
        }))
    }

    /// One endpoint.
    #[oai(
        path = "/webhook-endpoints/:id",
        method = "get",
        operation_id = "get_webhook_endpoint"
    )]
    async fn get(&self, auth: Auth, id: Path<Uuid>) -> Result<Json<EndpointView>, ApiError> {
        auth.0.require(Scope::Read)?;
        Ok(Json(EndpointView::from(&self.endpoint(id.0).await?)))
    }

    /// Change an endpoint.
    #[oai(
        path = "/webhook-endpoints/:id",
        method = "patch",
        operation_id = "update_webhook_endpoint"
    )]
    async fn update(
        &self,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<EndpointPatch>,
    ) -> Result<Json<EndpointView>, ApiError> {
        auth.0.require(Scope::Admin)?;
        let patch = body.0;
        let spec = EndpointSpec {
            url: patch.url,
            kinds: patch.kinds,
            enabled: patch.enabled,
            rate_limit: match patch.rate_limit {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(limit) => Some(Some(limit)),
            },
            ordered: patch.ordered,
        };
        spec.check().map_err(ApiError::from)?;
        let endpoint = self
            .state
            .store()
            .update_endpoint(id.0, &spec)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no webhook endpoint {}", id.0)))?;
        audit(
            &self.state,
            &auth.0,
            "webhooks.update",
            vec![id.0.to_string()],
            None,
        )
        .await?;
        Ok(Json(EndpointView::from(&endpoint)))
    }

    /// Delete an endpoint and its delivery log; its pending deliveries fail.
    #[oai(
        path = "/webhook-endpoints/:id",
        method = "delete",
        operation_id = "delete_webhook_endpoint"
    )]
    async fn delete(&self, auth: Auth, id: Path<Uuid>) -> Result<Deleted, ApiError> {
        auth.0.require(Scope::Admin)?;
        if !self.state.store().delete_endpoint(id.0).await? {
            return Err(ApiError::not_found(format!("no webhook endpoint {}", id.0)));
        }
        audit(
            &self.state,
            &auth.0,
            "webhooks.delete",
            vec![id.0.to_string()],
            None,
        )
        .await?;
        Ok(Deleted::Deleted)
    }

    /// A new signing secret; the previous one keeps signing beside it (two signatures) for
    /// `webhooks.rotation_grace`, so the receiver can switch without losing a delivery.
    #[oai(
        path = "/webhook-endpoints/:id/rotate-secret",
        method = "post",
        operation_id = "rotate_webhook_secret"
    )]
    async fn rotate(&self, auth: Auth, id: Path<Uuid>) -> Result<Json<RotatedSecret>, ApiError> {
        auth.0.require(Scope::Admin)?;
        let endpoint = self.endpoint(id.0).await?;
        let secret = new_secret();
        let grace =
            chrono::Duration::from_std(self.state.webhooks.rotation_grace).unwrap_or_default();
        let until = Utc::now() + grace;
        self.state
            .store()
            .rotate_endpoint_secret(id.0, &self.seal(id.0, &secret)?, &endpoint.secret, until)
            .await?;
        audit(
            &self.state,
            &auth.0,
            "webhooks.rotate_secret",
            vec![id.0.to_string()],
            None,
        )
        .await?;
        Ok(Json(RotatedSecret {
            secret,
            previous_secret_until: until,
        }))
    }

    /// The delivery log: every attempt with its status, latency and the start of the
    /// answer, newest first.
    #[oai(
        path = "/webhook-endpoints/:id/attempts",
        method = "get",
        operation_id = "list_webhook_attempts"
    )]
    async fn attempts(
        &self,
        auth: Auth,
        id: Path<Uuid>,
        /// Attempts before this id (the previous page's `next_before`).
        #[oai(validator(minimum(value = "1")))]
        before: Query<Option<i64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
    ) -> Result<Json<DeliveryAttemptPage>, ApiError> {
        auth.0.require(Scope::Read)?;
        self.endpoint(id.0).await?;
        let limit = limit.0.unwrap_or(50);
        let items = self
            .state
            .store()
            .delivery_attempts(id.0, before.0, limit)
            .await?;
        let next_before = (items.len() == limit as usize)
            .then(|| items.last().map(|a| a.id))
            .flatten();
        Ok(Json(DeliveryAttemptPage {
            items: items.into_iter().map(DeliveryAttemptView::from).collect(),
            next_before,
        }))
    }

    /// Make a delivery again (a new job, the same message id).
    #[oai(
        path = "/webhook-endpoints/:id/redeliver",
        method = "post",
        operation_id = "redeliver_webhook"
    )]
    async fn redeliver(
        &self,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<RedeliverBody>,
    ) -> Result<Json<Redelivered>, ApiError> {
        auth.0.require(Scope::Operate)?;
        let job_id: JobId = body
            .0
            .job_id
            .parse()
            .map_err(|_| ApiError::invalid("job_id", "must be a job id (a UUID)"))?;
        let made = self.redeliver_job(id.0, job_id).await?;
        audit(
            &self.state,
            &auth.0,
            "webhooks.redeliver",
            vec![id.0.to_string()],
            None,
        )
        .await?;
        Ok(Json(Redelivered {
            job_ids: vec![made],
        }))
    }

    /// Make again every delivery of the endpoint first attempted in a time range (at most
    /// 1,000 messages).
    #[oai(
        path = "/webhook-endpoints/:id/replay",
        method = "post",
        operation_id = "replay_webhooks"
    )]
    async fn replay(
        &self,
        auth: Auth,
        id: Path<Uuid>,
        body: Json<ReplayBody>,
    ) -> Result<Json<Redelivered>, ApiError> {
        auth.0.require(Scope::Operate)?;
        self.endpoint(id.0).await?;
        let until = body.0.until.unwrap_or_else(Utc::now);
        if until <= body.0.since {
            return Err(ApiError::invalid("until", "must be after since"));
        }
        let mut jobs: Vec<Uuid> = Vec::new();
        let mut before = None;
        'pages: loop {
            let page = self
                .state
                .store()
                .delivery_attempts(id.0, before, 500)
                .await?;
            for attempt in &page {
                if attempt.at < body.0.since {
                    break 'pages;
                }
                if attempt.at < until && attempt.attempt == 1 && !jobs.contains(&attempt.job_id) {
                    jobs.push(attempt.job_id);
                    if jobs.len() > 1000 {
                        return Err(ApiError::invalid(
                            "since",
                            "more than 1000 deliveries in the range: narrow it",
                        ));
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() == 500 => before = Some(last.id),
                _ => break,
            }
        }
        let mut made = Vec::with_capacity(jobs.len());
        for job in jobs.iter().rev() {
            made.push(self.redeliver_job(id.0, JobId(*job)).await?);
        }
        audit(
            &self.state,
            &auth.0,
            "webhooks.replay",
            vec![id.0.to_string()],
            Some(serde_json::json!({ "deliveries": made.len() })),
        )
        .await?;
        Ok(Json(Redelivered { job_ids: made }))
    }
}
