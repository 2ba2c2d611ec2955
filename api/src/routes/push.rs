//! `/push` and `/push/batch` (store pushes) and `/push/stream` (the gateway stream, SSE).
//!
//! The contract a gateway relies on: every push has a stream position; the stream sends
//! pushes in position order, each SSE `id` being its position; a gateway that reconnects
//! with `Last-Event-ID` (or `?after=`) gets exactly the pushes after it that pass its
//! filter, then live ones, from any API process of one database; a position older than the
//! retention gets an SSE event `reset` first; a gateway that stops reading is cut off
//! (`cutoff`, or the connection closed) and resumes from its position.

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use longshore_jobs::EnqueueError;
use longshore_jobs::admin::Scope;
use longshore_jobs::push::{MAX_BATCH, NewPush, Partition, Push, Pushed};
use poem::web::sse::Event as SseEvent;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object, OpenApi};

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::{StreamNotice, Tag};
use crate::ApiState;
use crate::auth::Auth;
use crate::events::StreamItem;
use crate::problem::{ApiError, FieldError, Problem};

/// A push to store and deliver.
#[derive(Clone, Debug, Object)]
pub struct PushBody {
    /// The sender's id of this event, 1 to 200 bytes: a push with an `event_id` stored
    /// already is not stored again. A UUID is made when absent.
    pub event_id: Option<String>,
    /// The user it is for, 1 to 200 bytes.
    pub user_id: String,
    /// What happened, e.g. `friend.request`: 1 to 100 of letters, digits and `. _ : -`.
    pub kind: String,
    /// What the gateway forwards to the user: any JSON, at most 64 KiB (null when absent).
    pub payload: serde_json::Value,
}

impl From<PushBody> for NewPush {
    fn from(body: PushBody) -> NewPush {
        NewPush {
            event_id: body
                .event_id
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            user_id: body.user_id,
            kind: body.kind,
            payload: body.payload,
        }
    }
}

/// Up to 1,000 pushes, stored together or not at all.
#[derive(Clone, Debug, Object)]
pub struct PushBatchBody {
    /// The pushes.
    pub pushes: Vec<PushBody>,
}

/// A stored push's position.
#[derive(Clone, Debug, Object)]
pub struct PushedView {
    /// Its stream position.
    pub position: i64,
    /// The sender's id of the event.
    pub event_id: String,
    /// True when this `event_id` was stored already: nothing new was stored.
    pub duplicate: bool,
}

impl From<Pushed> for PushedView {
    fn from(p: Pushed) -> PushedView {
        PushedView {
            position: p.position,
            event_id: p.event_id,
            duplicate: p.duplicate,
        }
    }
}

/// The positions of a batch, in the order sent.
#[derive(Clone, Debug, Object)]
pub struct PushBatchResult {
    /// One per push sent.
    pub items: Vec<PushedView>,
}

/// A push as the gateway stream sends it.
#[derive(Clone, Debug, Object, serde::Serialize)]
pub struct PushView {
    /// Its stream position (also the SSE `id`).
    pub position: i64,
    /// The sender's id of the event.
    pub event_id: String,
    /// The user it is for.
    pub user_id: String,
    /// What happened.
    pub kind: String,
    /// What the gateway forwards.
    pub payload: serde_json::Value,
    /// When it was stored.
    pub at: DateTime<Utc>,
}

impl From<&Push> for PushView {
    fn from(p: &Push) -> PushView {
        PushView {
            position: p.position,
            event_id: p.event_id.clone(),
            user_id: p.user_id.clone(),
            kind: p.kind.clone(),
            payload: p.payload.clone(),
            at: p.at,
        }
    }
}

/// A gateway connected to this process's push stream.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct GatewayView {
    /// Who connected (`token:<name>`, or `local`).
    pub actor: String,
    /// Its share of the users, `index/count`, when it asked for one.
    #[oai(skip_serializing_if_is_none)]
    pub partition: Option<String>,
    /// The kinds it asked for (all when empty).
    pub kinds: Vec<String>,
    /// When it connected.
    pub connected_at: DateTime<Utc>,
    /// The position of the last push sent to it (where it would resume).
    pub position: i64,
}

/// The gateways connected to this process, each until its stream ends.
#[derive(Default)]
pub(crate) struct Gateways {
    next: AtomicI64,
    connected: Mutex<std::collections::BTreeMap<i64, (GatewayView, Arc<AtomicI64>)>>,
}

impl Gateways {
    fn connect(self: &Arc<Self>, view: GatewayView) -> Connected {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let position = Arc::new(AtomicI64::new(view.position));
        self.lock().insert(id, (view, Arc::clone(&position)));
        Connected {
            gateways: Arc::clone(self),
            id,
            position,
        }
    }

    /// How many are connected.
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }

    fn list(&self) -> Vec<GatewayView> {
        self.lock()
            .values()
            .map(|(view, position)| GatewayView {
                position: position.load(Ordering::Relaxed),
                ..view.clone()
            })
            .collect()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<i64, (GatewayView, Arc<AtomicI64>)>>
    {
        self.connected.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A gateway's place in [`Gateways`], removed when its stream is dropped.
struct Connected {
    gateways: Arc<Gateways>,
    id: i64,
    position: Arc<AtomicI64>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.gateways.lock().remove(&self.id);
    }
}

/// The gateways connected to this process.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct GatewayList {
    /// Oldest connection first.
    pub items: Vec<GatewayView>,
}

/// An item of the gateway stream: first `ready` (the position the stream starts after),
/// then pushes (SSE event `push`), notice that pushes after the requested position were
/// deleted by retention (`reset`), and why the server ended the stream (`cutoff`, the last
/// item).
#[derive(Clone, Debug, Default, Object, serde::Serialize)]
pub struct PushMessage {
    /// The push; absent on the other messages.
    #[oai(skip_serializing_if_is_none)]
    pub push: Option<PushView>,
    /// On `ready`, the stream's first message: the position it starts after (also its SSE
    /// id, so a gateway that reconnects before any push resumes from there).
    #[oai(skip_serializing_if_is_none)]
    pub ready: Option<i64>,
    /// A reset or a cutoff.
    #[oai(flatten)]
    #[serde(flatten)]
    pub notice: StreamNotice,
}

#[derive(ApiResponse)]
enum PushCreated {
    /// Stored, or found stored already (`duplicate`).
    #[oai(status = 201)]
    Created(Json<PushedView>),
}

pub struct PushApi {
    pub state: ApiState,
}

/// Checks every push, naming each bad field (`pushes[3].kind`).
fn check(pushes: &[NewPush], batch: bool) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for (i, push) in pushes.iter().enumerate() {
        let at = if batch {
            format!("pushes[{i}]")
        } else {
            String::new()
        };
        match push.check(&at) {
            Ok(()) => {}
            // Too large is its own answer (413), as for a job's args.
            Err(error @ EnqueueError::TooLarge { .. }) => return Err(error.into()),
            Err(EnqueueError::Invalid { field, message }) => {
                errors.push(FieldError { field, message })
            }
            Err(other) => return Err(other.into()),
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::from_problem(Problem::invalid_fields(errors)))
}

/// A position as a gateway sends it: an integer, or `latest` for none of the past.
fn position(field: &str, value: &str) -> Result<Option<i64>, ApiError> {
    if value == "latest" {
        return Ok(None);
    }
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("must be a position (a non-negative integer) or latest, got {value:?}"),
            )
        })
}

#[OpenApi(tag = "Tag::Push")]
impl PushApi {
    /// Store a push and deliver it to the gateway stream. Idempotent by `event_id`.
    #[oai(path = "/push", method = "post", operation_id = "push")]
    async fn push(&self, auth: Auth, body: Json<PushBody>) -> Result<PushCreated, ApiError> {
        auth.0.require(Scope::Enqueue)?;
        let push = NewPush::from(body.0);
        check(std::slice::from_ref(&push), false)?;
        let mut stored = self.state.store().insert_pushes(&[push]).await?;
        self.state.shared.pushes.poke();
        Ok(PushCreated::Created(Json(stored.remove(0).into())))
    }

    /// Store up to 1,000 pushes in one transaction, each idempotent by `event_id`. A batch
    /// with an invalid push stores nothing and names every bad field.
    #[oai(path = "/push/batch", method = "post", operation_id = "push_batch")]
    async fn push_batch(
        &self,
        auth: Auth,
        body: Json<PushBatchBody>,
    ) -> Result<Json<PushBatchResult>, ApiError> {
        auth.0.require(Scope::Enqueue)?;
        if body.0.pushes.is_empty() || body.0.pushes.len() > MAX_BATCH {
            return Err(ApiError::invalid(
                "pushes",
                format!("give 1 to {MAX_BATCH} pushes"),
            ));
        }
        let pushes: Vec<NewPush> = body.0.pushes.into_iter().map(NewPush::from).collect();
        check(&pushes, true)?;
        let stored = self.state.store().insert_pushes(&pushes).await?;
        self.state.shared.pushes.poke();
        Ok(Json(PushBatchResult {
            items: stored.into_iter().map(PushedView::from).collect(),
        }))
    }

    /// The gateways connected to this process's push stream (each API replica answers for
    /// its own), with the position each would resume from.
    #[oai(
        path = "/push/gateways",
        method = "get",
        operation_id = "list_gateways"
    )]
    async fn gateways(&self, auth: Auth) -> Result<Json<GatewayList>, ApiError> {
        auth.0.require(Scope::Read)?;
        Ok(Json(GatewayList {
            items: self.state.shared.gateways.list(),
        }))
    }

    /// The gateway stream (SSE): pushes in position order, each SSE `id` its position.
    ///
    /// Without `Last-Event-ID` or `after` it starts with live pushes; `after=0` replays every
    /// push kept. Filter by `kind` and `user_id` (repeatable) and by `partition=i/n` (the
    /// users whose `partition_of(user_id, n)` is `i`: the first 8 bytes of the SHA-256 of the
    /// user id, big-endian, modulo `n`), so `n` gateways split the users. A position older
    /// than the retention gets a `reset` first; heartbeats keep an idle stream open; a
    /// gateway that stops reading is cut off (`cutoff`) and resumes from its position.
    #[oai(path = "/push/stream", method = "get", operation_id = "push_stream")]
    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        auth: Auth,
        #[oai(name = "Last-Event-ID", validator(max_length = 30))] last_event_id: Header<
            Option<String>,
        >,
        /// Start after this position; `latest` (the default) starts with live pushes.
        #[oai(validator(max_length = 30))]
        after: Query<Option<String>>,
        /// Only pushes of these kinds (at most 100).
        #[oai(name = "kind")]
        kinds: Query<Vec<String>>,
        /// Only pushes for these users (at most 1,000).
        #[oai(name = "user_id")]
        users: Query<Vec<String>>,
        /// Only the users of this share, `index/count`, e.g. `3/8`.
        #[oai(validator(max_length = 20))]
        partition: Query<Option<String>>,
    ) -> Result<EventStream<BoxStream<'static, PushMessage>>, ApiError> {
        auth.0.require(Scope::Read)?;
        if kinds.0.len() > 100 {
            return Err(ApiError::invalid("kind", "at most 100 kinds"));
        }
        if users.0.len() > 1000 {
            return Err(ApiError::invalid("user_id", "at most 1000 user ids"));
        }
        let partition: Option<Partition> = match partition.0.as_deref() {
            Some(text) => Some(
                text.parse()
                    .map_err(|message: String| ApiError::invalid("partition", message))?,
            ),
            None => None,
        };
        let hub = &self.state.shared.pushes;
        // A reconnecting gateway resumes where it was, whatever its URL asked at first.
        let start = match (last_event_id.0.as_deref(), after.0.as_deref()) {
            (Some(id), _) if !id.is_empty() => position("Last-Event-ID", id)?,
            (_, Some(after)) if !after.is_empty() => position("after", after)?,
            _ => None,
        };
        let start = match start {
            Some(start) => start,
            None => hub.latest().await?,
        };
        let partition_text = partition.map(|p| format!("{}/{}", p.index, p.count));
        let mut kinds_list: Vec<String> = kinds.0.clone();
        kinds_list.sort();
        kinds_list.dedup();
        let kinds: std::collections::HashSet<String> = kinds.0.into_iter().collect();
        let users: std::collections::HashSet<String> = users.0.into_iter().collect();
        let filter = move |push: &Push| {
            (kinds.is_empty() || kinds.contains(&push.kind))
                && (users.is_empty() || users.contains(&push.user_id))
                && partition.is_none_or(|p| p.contains(&push.user_id))
        };
        let connected = self.state.shared.gateways.connect(GatewayView {
            actor: auth.0.actor.clone(),
            partition: partition_text,
            kinds: kinds_list,
            connected_at: Utc::now(),
            position: start,
        });
        let subscription = hub.stream(start, filter).await?;
        let ready = PushMessage {
            ready: Some(start),
            ..PushMessage::default()
        };
        let messages = super::stream_messages(
            subscription,
            move |item| PushMessage {
                notice: StreamNotice::of(&item).unwrap_or_default(),
                push: match item {
                    StreamItem::Item(push) => {
                        // The closure owns the gateway's place: it leaves with the stream.
                        connected.position.store(push.position, Ordering::Relaxed);
                        Some(PushView::from(push.as_ref()))
                    }
                    StreamItem::Reset { .. } => None,
                },
                ready: None,
            },
            |reason| PushMessage {
                notice: StreamNotice::cutoff(reason),
                ..PushMessage::default()
            },
        );
        let messages = futures::StreamExt::boxed(futures::StreamExt::chain(
            futures::stream::once(std::future::ready(ready)),
            messages,
        ));
        Ok(EventStream::new(messages)
            .keep_alive(self.state.shared.config.sse_heartbeat)
            .to_event(|message| match (&message.push, message.ready) {
                (Some(push), _) => SseEvent::message(push.to_json_string())
                    .id(push.position.to_string())
                    .event_type("push"),
                (None, Some(ready)) => SseEvent::message(message.to_json_string())
                    .id(ready.to_string())
                    .event_type("ready"),
                (None, None) => message.notice.sse(message.to_json_string()),
            }))
    }
}
