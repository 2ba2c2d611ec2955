//! The routes, one file per resource, and what they share: idempotency and the audit log.

use std::future::Future;

use longshore_jobs::Enqueued;
use longshore_jobs::admin::{IdempotencyClaim, NewAudit};
use longshore_jobs::store::KeyedResponse;
use poem_openapi::Tags;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use sha2::{Digest, Sha256};

use futures::StreamExt;
use futures::stream::BoxStream;

use crate::ApiState;
use crate::auth::Principal;
use crate::events::{StreamItem, Subscription};
use crate::problem::ApiError;

pub mod activity;
pub mod admin;
pub mod events;
pub mod failures;
pub mod health;
pub mod jobs;
pub mod lifecycle;
pub mod operations;
pub mod push;
pub mod queues;
pub mod schedules;
pub mod sweeps;
pub mod webhooks;

#[derive(Tags)]
pub(crate) enum Tag {
    /// Enqueue and inspect jobs; act on one job.
    Jobs,
    /// Bulk retry, cancel and delete, with a dry run.
    Operations,
    /// Queues, workers and counts.
    Queues,
    /// Cron schedules.
    Schedules,
    /// Declared clean-up passes over other databases.
    Sweeps,
    /// The event outbox: JSON pages and the SSE stream.
    Events,
    /// Pushes to users: store them, and the gateway stream that delivers them.
    Push,
    /// Webhook endpoints, their breakers and delivery logs.
    Webhooks,
    /// User lifecycle events and the ingesters that read them from Redis Streams.
    Lifecycle,
    /// Tokens and the audit log.
    Admin,
}

/// Every API of `/api/v1`.
pub(crate) fn apis(
    state: ApiState,
) -> (
    jobs::JobsApi,
    failures::FailuresApi,
    activity::ActivityApi,
    operations::OperationsApi,
    queues::QueuesApi,
    events::EventsApi,
    schedules::SchedulesApi,
    sweeps::SweepsApi,
    push::PushApi,
    webhooks::WebhooksApi,
    lifecycle::LifecycleApi,
    admin::AdminApi,
) {
    (
        jobs::JobsApi {
            state: state.clone(),
        },
        failures::FailuresApi {
            state: state.clone(),
        },
        activity::ActivityApi {
            state: state.clone(),
        },
        operations::OperationsApi {
            state: state.clone(),
        },
        queues::QueuesApi {
            state: state.clone(),
        },
        events::EventsApi {
            state: state.clone(),
        },
        schedules::SchedulesApi {
            state: state.clone(),
        },
        sweeps::SweepsApi {
            state: state.clone(),
        },
        push::PushApi {
            state: state.clone(),
        },
        webhooks::WebhooksApi {
            state: state.clone(),
        },
        lifecycle::LifecycleApi {
            state: state.clone(),
        },
        admin::AdminApi { state },
    )
}

/// What a stream says besides its items: that items after the client's position were
/// deleted by retention (SSE event `reset`), or why the server ended it (`cutoff`).
#[derive(Clone, Debug, Default, poem_openapi::Object, serde::Serialize)]
pub struct StreamNotice {
    /// On a reset: the position the client asked to resume after.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<i64>,
    /// On a reset: the highest position deleted; the stream goes on after it.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned_through: Option<i64>,
    /// On a reset: the oldest position kept, where the stream goes on (absent when none is).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_kept: Option<i64>,
    /// On a cutoff, the last message: why the server ended the stream (the client read too
    /// slowly); reconnect with `Last-Event-ID` to resume.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutoff: Option<String>,
}

impl StreamNotice {
    /// The notice of a stream item that is not an item of the log.
    pub(crate) fn of<T>(item: &StreamItem<T>) -> Option<StreamNotice> {
        match item {
            StreamItem::Item(_) => None,
            StreamItem::Reset {
                requested,
                pruned_through,
                oldest_kept,
            } => Some(StreamNotice {
                requested: Some(*requested),
                pruned_through: Some(*pruned_through),
                oldest_kept: *oldest_kept,
                cutoff: None,
            }),
        }
    }

    /// A cutoff's notice.
    /// Whether the notice says nothing (the stream's opening).
    pub(crate) fn is_empty(&self) -> bool {
        self.requested.is_none() && self.pruned_through.is_none() && self.cutoff.is_none()
    }

    pub(crate) fn cutoff(reason: String) -> StreamNotice {
        StreamNotice {
            cutoff: Some(reason),
            ..StreamNotice::default()
        }
    }

    /// The notice as an SSE event carrying `message` (the whole message, as JSON): a reset
    /// has the highest deleted position as its id; a cutoff has none, so the client resumes
    /// from the last item it received.
    pub(crate) fn sse(&self, message: String) -> poem::web::sse::Event {
        let event = poem::web::sse::Event::message(message);
        match self.cutoff {
            Some(_) => event.event_type("cutoff"),
            None => event
                .id(self.pruned_through.unwrap_or(0).to_string())
                .event_type("reset"),
        }
    }
}

/// A stream subscription as the messages of an SSE response: its items, then, when the
/// server cut the client off, one last message saying why.
pub(crate) fn stream_messages<T: Send + Sync + 'static, M: Send + 'static>(
    subscription: Subscription<T>,
    item: impl Fn(StreamItem<T>) -> M + Send + 'static,
    cutoff: impl Fn(String) -> M + Send + 'static,
) -> BoxStream<'static, M> {
    let Subscription { items, cut } = subscription;
    // Counted as a connected client (`longshore.sse.clients`) until the stream is dropped.
    let client = SseClient::connect();
    let items = futures::stream::unfold((items, client), |(mut rx, client)| async move {
        rx.recv().await.map(|received| (received, (rx, client)))
    })
    .map(item);
    let last = futures::stream::once(async move { cut.get().cloned() })
        .filter_map(move |reason| std::future::ready(reason.map(&cutoff)));
    items.chain(last).boxed()
}

/// One client of an SSE stream, in the `longshore.sse.clients` gauge while it lives.
struct SseClient;

impl SseClient {
    fn connect() -> SseClient {
        longshore_jobs::telemetry::metrics::get()
            .sse_clients
            .add(1, &[]);
        SseClient
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        longshore_jobs::telemetry::metrics::get()
            .sse_clients
            .add(-1, &[]);
    }
}

/// Writes an audit record of a mutation.
pub(crate) async fn audit(
    state: &ApiState,
    who: &Principal,
    action: &str,
    targets: Vec<String>,
    detail: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    state
        .store()
        .write_audit(&NewAudit {
            actor: who.actor.clone(),
            action: action.to_owned(),
            targets,
            detail,
            request_id: who.request_id.clone(),
        })
        .await?;
    Ok(())
}

/// What a request's `Idempotency-Key` allows.
pub(crate) enum Keyed<T> {
    /// The same request finished before: answer this again.
    Replay(T),
    /// Run the request; with a key, under this claim.
    Run(Option<KeyClaim>),
}

/// A claimed idempotency key, in flight until the request's answer is recorded.
pub(crate) struct KeyClaim {
    actor: String,
    key: String,
    hash: String,
}

impl KeyClaim {
    /// The answer to record with the request's jobs, in their transaction.
    pub(crate) fn response(
        &self,
        render: impl Fn(&[Enqueued]) -> (u16, String) + Send + Sync + 'static,
    ) -> KeyedResponse {
        KeyedResponse {
            actor: self.actor.clone(),
            key: self.key.clone(),
            request_hash: self.hash.clone(),
            render: Box::new(render),
        }
    }

    /// Frees the key of a request that failed. Only a key without a recorded answer is
    /// freed, so this is safe even when the failure left the outcome unknown.
    pub(crate) async fn release(&self, state: &ApiState) {
        if let Err(error) = state
            .store()
            .release_idempotency(&self.actor, &self.key)
            .await
        {
            tracing::debug!(%error, "cannot free an idempotency key; it is taken over after a minute");
        }
    }
}

/// Looks up a request's `Idempotency-Key`: the same key with the same body replays the
/// stored answer; with another body, 422; while the first is running, 409. A new key is
/// claimed (in flight) for this request.
pub(crate) async fn claim_key<B, T>(
    state: &ApiState,
    who: &Principal,
    key: Option<String>,
    body: &B,
) -> Result<Keyed<T>, ApiError>
where
    B: serde::Serialize,
    T: ParseFromJSON,
{
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Ok(Keyed::Run(None));
    };
    longshore_jobs::limits::check_text("Idempotency-Key", &key)?;
    let hash = {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    match state
        .store()
        .claim_idempotency(&who.actor, &key, &hash)
        .await?
    {
        IdempotencyClaim::Fresh => Ok(Keyed::Run(Some(KeyClaim {
            actor: who.actor.clone(),
            key,
            hash,
        }))),
        IdempotencyClaim::Replay { body, .. } => {
            let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            T::parse_from_json(Some(value))
                .map(Keyed::Replay)
                .map_err(|e| {
                    ApiError::conflict(
                        "idempotency_replay",
                        format!("cannot replay: {}", e.message()),
                    )
                })
        }
        IdempotencyClaim::InFlight => Err(ApiError::conflict(
            "idempotency_in_flight",
            "a request with this Idempotency-Key is still being processed",
        )),
        IdempotencyClaim::Mismatch => Err(ApiError::invalid(
            "Idempotency-Key",
            "this key was used with a different request body",
        )),
    }
}

/// Runs `act` once per idempotency key (see [`claim_key`]), recording its answer after it
/// succeeded; a failed request frees its key. For requests that store no jobs: enqueues
/// record their answer in the jobs' own transaction instead.
pub(crate) async fn idempotent<B, T, F, Fut>(
    state: &ApiState,
    who: &Principal,
    key: Option<String>,
    body: &B,
    act: F,
) -> Result<T, ApiError>
where
    B: serde::Serialize,
    T: ToJSON + ParseFromJSON,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let claim = match claim_key(state, who, key, body).await? {
        Keyed::Replay(value) => return Ok(value),
        Keyed::Run(claim) => claim,
    };
    let result = act().await;
    if let Some(claim) = claim {
        match &result {
            Ok(value) => {
                let json = value.to_json_string();
                state
                    .store()
                    .finish_idempotency(&claim.actor, &claim.key, 200, &json)
                    .await?;
            }
            Err(_) => claim.release(state).await,
        }
    }
    result
}
