//! `/lifecycle-events` (single and batch): user lifecycle events for deployments without
//! Redis, checked as an ingester checks a stream entry and keyed by the caller's `event_id`
//! (`lifecycle:{event_id}`), so a retried call makes no second job. `/ingesters`: the Redis
//! Streams this deployment reads, with their lag, pending and dead-lettered entries.

use chrono::{DateTime, Utc};
use longshore_jobs::admin::Scope;
use longshore_jobs::lifecycle::{self, IngesterReport, LifecycleEvent, Origin, Refusal};
use longshore_jobs::{Enqueued, NewJob};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::Tag;
use crate::ApiState;
use crate::auth::Auth;
use crate::model::State;
use crate::problem::{ApiError, FieldError, Problem};

/// A user lifecycle event.
#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct LifecycleEventBody {
    /// The caller's id of this event, 1 to 200 bytes: an event whose id was taken already
    /// makes no second job (the first is answered, `duplicate`).
    pub event_id: String,
    /// What happened, e.g. `user.deleted`: a type a cascade handles.
    pub event_type: String,
    /// The user, 1 to 200 bytes.
    pub user_id: String,
    /// When it happened, in milliseconds since the Unix epoch (positive).
    pub occurred_at_ms: i64,
    /// The service that says so.
    pub source: Option<String>,
    /// Who did it: `user`, `admin`, `system`, …
    pub actor_type: Option<String>,
    /// Their id.
    pub actor_id: Option<String>,
    /// Why, as a code.
    pub reason_code: Option<String>,
    /// The W3C trace id (32 lowercase hex digits) of the request that caused it.
    pub trace_id: Option<String>,
}

impl LifecycleEventBody {
    fn event(&self) -> LifecycleEvent {
        LifecycleEvent {
            event_type: self.event_type.clone(),
            user_id: self.user_id.clone(),
            occurred_at_ms: self.occurred_at_ms,
            source: self.source.clone(),
            actor_type: self.actor_type.clone(),
            actor_id: self.actor_id.clone(),
            reason_code: self.reason_code.clone(),
            trace_id: self.trace_id.clone(),
        }
    }
}

/// Up to 1,000 events, stored together or not at all.
#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct LifecycleBatchBody {
    /// The events.
    pub events: Vec<LifecycleEventBody>,
}

/// The job an event became.
#[derive(Clone, Debug, Object)]
pub struct LifecycleAccepted {
    /// The caller's id of the event.
    pub event_id: String,
    /// The `lifecycle` job.
    pub job_id: Uuid,
    /// Its state.
    pub state: State,
    /// Its unique key (`lifecycle:{event_id}`), for `GET /jobs?unique_key=`.
    pub unique_key: String,
    /// True when the event was taken already: no new job was made.
    pub duplicate: bool,
}

/// The jobs of a batch, in the order sent.
#[derive(Clone, Debug, Object)]
pub struct LifecycleBatchResult {
    /// One per event sent.
    pub items: Vec<LifecycleAccepted>,
}

#[derive(ApiResponse)]
enum Accepted {
    /// Stored, or found stored already (`duplicate`).
    #[oai(status = 201)]
    Created(Json<LifecycleAccepted>),
}

/// A consumer of an ingester's group.
#[derive(Clone, Debug, Object)]
pub struct ConsumerView {
    /// Its name (`{consumer}@{host}:{pid}:{nonce}`).
    pub name: String,
    /// Entries it holds unacknowledged.
    pub pending: u64,
    /// Milliseconds since it last read.
    pub idle_ms: u64,
}

/// A Redis Stream read into lifecycle jobs.
#[derive(Clone, Debug, Object)]
pub struct IngesterView {
    /// The stream's key.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// This process's consumer (empty in an API-only process, which reads nothing).
    pub consumer: String,
    /// The dead-letter stream.
    pub dead_letter: String,
    /// Whether Redis answers.
    pub connected: bool,
    /// The last error reaching Redis or storing jobs, while it lasts.
    pub error: Option<String>,
    /// The group's consumers.
    pub consumers: Vec<ConsumerView>,
    /// Entries not yet delivered to the group (absent when Redis cannot tell).
    pub lag: Option<u64>,
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    /// How long the oldest pending entry has waited since its delivery, in ms.
    pub oldest_pending_ms: Option<u64>,
    /// Entries in the dead-letter stream.
    pub dead_lettered: u64,
    /// The last entry delivered to the group.
    pub last_entry_id: Option<String>,
    /// When that entry was added to the stream.
    pub last_entry_at: Option<DateTime<Utc>>,
    /// Entries this process made into jobs since it started.
    pub ingested: u64,
}

impl From<IngesterReport> for IngesterView {
    fn from(r: IngesterReport) -> IngesterView {
        IngesterView {
            stream: r.stream,
            group: r.group,
            consumer: r.consumer,
            dead_letter: r.dead_letter,
            connected: r.connected,
            error: r.error,
            consumers: r
                .consumers
                .into_iter()
                .map(|c| ConsumerView {
                    name: c.name,
                    pending: c.pending,
                    idle_ms: c.idle_ms,
                })
                .collect(),
            lag: r.lag,
            pending: r.pending,
            oldest_pending_ms: r.oldest_pending_ms,
            dead_lettered: r.dead_lettered,
            last_entry_id: r.last_entry_id,
            last_entry_at: r.last_entry_at,
            ingested: r.ingested,
        }
    }
}

/// The ingesters.
#[derive(Clone, Debug, Object)]
pub struct IngesterList {
    /// One per `[[ingesters]]` of the config.
    pub items: Vec<IngesterView>,
}

pub struct LifecycleApi {
    pub state: ApiState,
}

impl LifecycleApi {
    /// Checks each event and makes its job, naming every bad field (`events[3].user_id`).
    fn prepare(&self, events: &[LifecycleEventBody], batch: bool) -> Result<Vec<NewJob>, ApiError> {
        let known = |t: &str| self.state.lifecycle.event_types.iter().any(|k| k == t);
        let mut errors = Vec::new();
        let mut jobs = Vec::with_capacity(events.len());
        for (i, body) in events.iter().enumerate() {
            let field = |name: &str| match batch {
                true => format!("events[{i}].{name}"),
                false => name.to_owned(),
            };
            let event_id_ok = !body.event_id.is_empty()
                && body.event_id.len() <= 200
                && !body.event_id.contains('\0');
            if !event_id_ok {
                errors.push(FieldError {
                    field: field("event_id"),
                    message: "must be 1 to 200 bytes, without NUL".to_owned(),
                });
                continue;
            }
            let event = body.event();
            if let Err(Refusal {
                field: name,
                reason,
            }) = event.check(known)
            {
                errors.push(FieldError {
                    field: field(name),
                    message: reason,
                });
                continue;
            }
            let origin = Origin::Api {
                event_id: body.event_id.clone(),
            };
            match self.state.client.prepare(event.request(origin)) {
                Ok(job) => jobs.push(job),
                Err(error) => {
                    let problem = ApiError::from(error).problem().clone();
                    errors.push(FieldError {
                        field: field("event"),
                        message: problem.detail,
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(jobs)
        } else {
            Err(ApiError::from_problem(Problem::invalid_fields(errors)))
        }
    }

    async fn store(
        &self,
        events: &[LifecycleEventBody],
        batch: bool,
    ) -> Result<Vec<LifecycleAccepted>, ApiError> {
        let jobs = self.prepare(events, batch)?;
        let stored: Vec<Enqueued> = self.state.store().insert(jobs).await?;
        Ok(events
            .iter()
            .zip(stored)
            .map(|(body, enqueued)| LifecycleAccepted {
                event_id: body.event_id.clone(),
                job_id: enqueued.id.0,
                state: enqueued.state.into(),
                unique_key: Origin::Api {
                    event_id: body.event_id.clone(),
                }
                .unique_key(),
                duplicate: enqueued.duplicate,
            })
            .collect())
    }
}

#[OpenApi(tag = "Tag::Lifecycle")]
impl LifecycleApi {
    /// Take a user lifecycle event: it becomes one `lifecycle` job running its type's
    /// cascade, after the user's earlier events. Idempotent by `event_id`.
    #[oai(
        path = "/lifecycle-events",
        method = "post",
        operation_id = "lifecycle_event"
    )]
    async fn event(
        &self,
        auth: Auth,
        body: Json<LifecycleEventBody>,
    ) -> Result<Accepted, ApiError> {
        auth.0.require(Scope::Enqueue)?;
        let mut stored = self.store(std::slice::from_ref(&body.0), false).await?;
        Ok(Accepted::Created(Json(stored.remove(0))))
    }

    /// Take up to 1,000 lifecycle events in one transaction, each idempotent by `event_id`.
    /// A batch with an invalid event stores nothing and names every bad field.
    #[oai(
        path = "/lifecycle-events/batch",
        method = "post",
        operation_id = "lifecycle_events"
    )]
    async fn batch(
        &self,
        auth: Auth,
        body: Json<LifecycleBatchBody>,
    ) -> Result<Json<LifecycleBatchResult>, ApiError> {
        auth.0.require(Scope::Enqueue)?;
        if body.0.events.is_empty() || body.0.events.len() > lifecycle::MAX_BATCH {
            return Err(ApiError::invalid(
                "events",
                format!("give 1 to {} events", lifecycle::MAX_BATCH),
            ));
        }
        let items = self.store(&body.0.events, true).await?;
        Ok(Json(LifecycleBatchResult { items }))
    }

    /// The Redis Streams read into lifecycle jobs: per ingester its group and consumers, the
    /// entries not yet delivered (`lag`), pending and dead-lettered, and the last entry.
    #[oai(path = "/ingesters", method = "get", operation_id = "list_ingesters")]
    async fn ingesters(&self, auth: Auth) -> Result<Json<IngesterList>, ApiError> {
        auth.0.require(Scope::Read)?;
        let reports = self.state.lifecycle.ingesters.reports().await;
        Ok(Json(IngesterList {
            items: reports.into_iter().map(IngesterView::from).collect(),
        }))
    }
}
