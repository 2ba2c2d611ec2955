//! `/events` (JSON pages) and `/events/stream` (SSE): the outbox, resumable by event id.

use futures::StreamExt;
use futures::stream::BoxStream;
use longshore_jobs::admin::Scope;
use longshore_jobs::{EventId, JobId};
use poem::web::sse::Event as SseEvent;
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{Object, OpenApi};

use super::{StreamNotice, Tag};
use crate::ApiState;
use crate::auth::Auth;
use crate::events::{EventFilter, StreamItem};
use crate::model::{EventPage, EventView};
use crate::problem::ApiError;

/// An item of the SSE stream: an event, or (with SSE event name `reset`) notice that
/// events after the requested id were deleted by retention, or (named `cutoff`, the last
/// item) why the server ended the stream.
#[derive(Clone, Debug, Default, Object, serde::Serialize)]
pub struct StreamMessage {
    /// The event; absent on a reset or a cutoff.
    #[oai(skip_serializing_if_is_none)]
    pub event: Option<EventView>,
    /// A reset or a cutoff.
    #[oai(flatten)]
    #[serde(flatten)]
    pub notice: StreamNotice,
}

pub struct EventsApi {
    pub state: ApiState,
}

fn filter(
    queue: Option<String>,
    kind: Option<String>,
    job_id: Option<String>,
    types: Vec<String>,
) -> Result<EventFilter, ApiError> {
    let job_id = match job_id {
        Some(id) => Some(
            id.parse::<JobId>()
                .map_err(|_| ApiError::invalid("job_id", "must be a job id (a UUID)"))?,
        ),
        None => None,
    };
    if types.len() > 20 {
        return Err(ApiError::invalid("type", "at most 20 types"));
    }
    Ok(EventFilter {
        queue,
        kind,
        job_id,
        types,
    })
}

/// An event id as a client sends it (empty for 0, the oldest kept), if it sent one.
fn event_id(field: &str, value: Option<&str>) -> Result<Option<EventId>, ApiError> {
    match value {
        None => Ok(None),
        Some("") => Ok(Some(EventId(0))),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| Some(EventId(n)))
            .ok_or_else(|| {
                ApiError::invalid(
                    field,
                    format!("must be an event id (a non-negative integer) or latest, got {v:?}"),
                )
            }),
    }
}

impl EventsApi {
    /// Where a reader starts, from `after` (an event id, or `latest`: after the newest event
    /// stored now) or `since` (an RFC 3339 time: the first event written at or after it);
    /// neither is the oldest kept.
    async fn start(&self, after: Option<&str>, since: Option<&str>) -> Result<EventId, ApiError> {
        let since = match since {
            Some(text) => Some(
                chrono::DateTime::parse_from_rfc3339(text)
                    .map_err(|_| {
                        ApiError::invalid(
                            "since",
                            format!(
                                "must be an RFC 3339 time, e.g. 2026-11-24T10:00:00Z, got {text:?}"
                            ),
                        )
                    })?
                    .with_timezone(&chrono::Utc),
            ),
            None => None,
        };
        let store = self.state.store();
        match (after.filter(|a| !a.is_empty()), since) {
            (Some(_), Some(_)) => Err(ApiError::invalid("since", "give after or since, not both")),
            // Below the horizon: an event that commits late is still ahead of the reader.
            (Some("latest"), None) => Ok(EventId(store.event_horizon().await?.0 - 1)),
            (after, None) => Ok(event_id("after", after)?.unwrap_or(EventId(0))),
            (None, Some(since)) => Ok(store.last_event_before(since).await?),
        }
    }
}

#[OpenApi(tag = "Tag::Events")]
impl EventsApi {
    /// Events after `after` (0 for the oldest kept, `latest` for none of the past) or from
    /// `since`, oldest first, filtered. Continue with `next_after`. `reset` is true when
    /// events after `after` were deleted by retention.
    #[oai(path = "/events", method = "get", operation_id = "list_events")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: Auth,
        /// Start after this event id; `latest` starts after the newest event stored now.
        #[oai(validator(max_length = 30))]
        after: Query<Option<String>>,
        /// Start with the first event written at or after this RFC 3339 time; not with `after`.
        #[oai(validator(max_length = 40))]
        since: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u32>>,
        queue: Query<Option<String>>,
        kind: Query<Option<String>>,
        job_id: Query<Option<String>>,
        #[oai(name = "type")] types: Query<Vec<String>>,
    ) -> Result<Json<EventPage>, ApiError> {
        auth.0.require(Scope::Read)?;
        let filter = filter(queue.0, kind.0, job_id.0, types.0)?;
        let mut last = self.start(after.0.as_deref(), since.0.as_deref()).await?;
        let limit = limit.0.unwrap_or(100).min(1000) as usize;
        let store = self.state.store();
        let pruned = store.events_pruned_through().await?;
        let reset = last.0 > 0 && last < pruned;
        if reset {
            last = pruned;
        }
        let mut items = Vec::new();
        // Filtered pages read on until they fill, within a bound of rows scanned.
        for _ in 0..20 {
            let events = store.events_after(last, 500).await?;
            let full = events.len() == 500;
            for event in &events {
                last = event.id;
                if filter.matches(event) {
                    items.push(EventView::from(event));
                    if items.len() == limit {
                        break;
                    }
                }
            }
            if !full || items.len() == limit {
                break;
            }
        }
        Ok(Json(EventPage {
            items,
            next_after: last.0,
            reset,
        }))
    }

    /// The events as Server-Sent Events, replayed after `Last-Event-ID` (or `after`, or from
    /// `since`; `after=latest` replays nothing) and then live, with heartbeats. Each SSE id is the event id, so a reconnecting client
    /// resumes with no gap and no duplicate; each SSE event name is the event's type (e.g.
    /// `job.failed`). An SSE event named `reset` says events after the requested id were
    /// deleted by retention.
    #[oai(
        path = "/events/stream",
        method = "get",
        operation_id = "stream_events"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        auth: Auth,
        #[oai(name = "Last-Event-ID", validator(max_length = 30))] last_event_id: Header<
            Option<String>,
        >,
        /// Start after this event id; `latest` starts after the newest event stored now.
        #[oai(validator(max_length = 30))]
        after: Query<Option<String>>,
        /// Start with the first event written at or after this RFC 3339 time; not with `after`.
        #[oai(validator(max_length = 40))]
        since: Query<Option<String>>,
        queue: Query<Option<String>>,
        kind: Query<Option<String>>,
        job_id: Query<Option<String>>,
        #[oai(name = "type")] types: Query<Vec<String>>,
    ) -> Result<EventStream<BoxStream<'static, StreamMessage>>, ApiError> {
        auth.0.require(Scope::Read)?;
        let filter = filter(queue.0, kind.0, job_id.0, types.0)?;
        // A reconnecting client resumes where it was, whatever its URL asked at first.
        let after = match last_event_id.0.as_deref() {
            Some(id) if !id.is_empty() => {
                event_id("Last-Event-ID", Some(id))?.unwrap_or(EventId(0))
            }
            _ => self.start(after.0.as_deref(), since.0.as_deref()).await?,
        };
        let subscription = self
            .state
            .shared
            .events
            .stream(after.0, move |event| filter.matches(event))
            .await?;
        // The stream opens with `retry: 1000` (the reconnection delay an `EventSource` uses,
        // and no event), so the response starts at once: a client knows it is connected
        // before the first event.
        let opening = StreamMessage {
            event: None,
            notice: StreamNotice::default(),
        };
        let messages = super::stream_messages(
            subscription,
            |item| StreamMessage {
                notice: StreamNotice::of(&item).unwrap_or_default(),
                event: match item {
                    StreamItem::Item(event) => Some(EventView::from(event.as_ref())),
                    StreamItem::Reset { .. } => None,
                },
            },
            |reason| StreamMessage {
                event: None,
                notice: StreamNotice::cutoff(reason),
            },
        );
        let messages = futures::stream::once(std::future::ready(opening)).chain(messages);
        Ok(EventStream::new(messages.boxed())
            .keep_alive(self.state.shared.config.sse_heartbeat)
            .to_event(|message| {
                use poem_openapi::types::ToJSON;
                match &message.event {
                    // Named by type, so a browser's `EventSource` can listen for
                    // `job.failed` alone.
                    Some(event) => SseEvent::message(event.to_json_string())
                        .id(event.id.to_string())
                        .event_type(event.event_type.clone()),
                    None if message.notice.is_empty() => SseEvent::retry(1000),
                    None => message.notice.sse(message.to_json_string()),
                }
            }))
    }
}
