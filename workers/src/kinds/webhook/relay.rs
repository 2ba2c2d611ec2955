//! The relay: follows the push log and the event outbox, each from a cursor kept in the
//! database, and makes one delivery job per message and endpoint that wants it.
//!
//! The jobs are made before the cursor moves past their message, each under the unique key
//! `webhook:{endpoint}:{message}`: a relay that dies between the two, or two processes
//! relaying at once, make no delivery twice. The cursors start at the present when the
//! first endpoint is created (or the relay first runs, if earlier): an endpoint gets what
//! happens after it was created, never the log's past.

use std::time::Duration;

use longshore_jobs::job::{UniqueOptions, UniqueScope};
use longshore_jobs::push::Push;
use longshore_jobs::webhook::{self, Endpoint};
use longshore_jobs::{Client, EnqueueRequest, Event, EventId, StoreError};
use tokio_util::sync::CancellationToken;

use super::{Deliver, DeliverArgs};
use longshore_jobs::Kind;

/// Messages read per pass from each log.
const PAGE: u32 = 500;
/// The longest the relay sleeps while no endpoint is enabled: a change wakes it in every
/// process, so this bounds only a change it missed.
const IDLE: Duration = Duration::from_secs(60);

/// What one pass made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// Pushes read.
    pub pushes: usize,
    /// Events read.
    pub events: usize,
    /// Delivery jobs made (duplicates of earlier passes not counted).
    pub deliveries: usize,
}

/// Relays pushes and events to the endpoints that want them.
pub struct Relay {
    client: Client,
    interval: Duration,
}

/// A message ready to deliver.
struct Message {
    id: String,
    event_type: String,
    data: serde_json::Value,
    occurred_at: chrono::DateTime<chrono::Utc>,
    order_key: String,
    seq: i64,
}

impl Message {
    fn of_push(push: &Push) -> Message {
        Message {
            id: format!("push_{}", push.event_id),
            event_type: push.kind.clone(),
            data: serde_json::json!({
                "event_id": push.event_id, "user_id": push.user_id, "kind": push.kind,
                "payload": push.payload, "position": push.position,
            }),
            occurred_at: push.at,
            order_key: format!("user:{}", push.user_id),
            seq: push.position,
        }
    }

    /// `None` for events of deliveries themselves: a delivery's own failure delivered to a
    /// failing endpoint would feed itself.
    fn of_event(event: &Event) -> Option<Message> {
        if event.kind.as_deref() == Some(Deliver::NAME) {
            return None;
        }
        let order_key = match event.job_id {
            Some(job) => format!("job:{job}"),
            None => format!("type:{}", event.event_type),
        };
        Some(Message {
            id: format!("evt_{}", event.id.0),
            event_type: event.event_type.clone(),
            data: serde_json::to_value(event).unwrap_or_default(),
            occurred_at: event.at,
            order_key,
            seq: event.id.0,
        })
    }
}

impl Relay {
    /// A relay enqueueing with `client`, a pass every `interval`.
    pub fn new(client: Client, interval: Duration) -> Relay {
        Relay { client, interval }
    }

    /// One pass over both logs; `None`, having read nothing else, when no endpoint is
    /// enabled.
    pub async fn run_once(&self) -> Result<Option<RelayReport>, StoreError> {
        let store = self.client.store();
        if !store.endpoints().await?.iter().any(|e| e.enabled) {
            return Ok(None);
        }
        let (after_push, after_event) = webhook::relay_cursors(store).await?;
        let pushes = store.pushes_after(after_push, PAGE).await?;
        let events = store.events_after(EventId(after_event), PAGE).await?;
        if pushes.is_empty() && events.is_empty() {
            return Ok(Some(RelayReport::default()));
        }
        // The endpoints after the messages: an endpoint created before a message was stored
        // is then in the list. Read first, they could miss one created in between.
        let endpoints: Vec<Endpoint> = store
            .endpoints()
            .await?
            .into_iter()
            .filter(|e| e.enabled)
            .collect();
        let mut report = RelayReport {
            pushes: pushes.len(),
            events: events.len(),
            deliveries: 0,
        };
        let messages: Vec<Message> = pushes.iter().map(Message::of_push).collect();
        report.deliveries += self.deliver(&endpoints, &messages).await?;
        let messages: Vec<Message> = events.iter().filter_map(Message::of_event).collect();
        report.deliveries += self.deliver(&endpoints, &messages).await?;
        webhook::advance_relay_cursors(
            store,
            pushes.last().map(|p| p.position),
            events.last().map(|e| e.id.0),
        )
        .await?;
        Ok(Some(report))
    }

    /// Makes the delivery jobs of `messages`; the number made.
    async fn deliver(
        &self,
        endpoints: &[Endpoint],
        messages: &[Message],
    ) -> Result<usize, StoreError> {
        let mut requests = Vec::new();
        for message in messages {
            for endpoint in endpoints.iter().filter(|e| e.wants(&message.event_type)) {
                let args = DeliverArgs {
                    endpoint_id: endpoint.id,
                    message_id: message.id.clone(),
                    event_type: message.event_type.clone(),
                    data: message.data.clone(),
                    occurred_at: message.occurred_at,
                    order_key: message.order_key.clone(),
                    seq: message.seq,
                };
                let mut request = EnqueueRequest::new(
                    Deliver::NAME,
                    serde_json::to_value(&args).unwrap_or_default(),
                );
                request.unique = Some(UniqueOptions {
                    key: format!("webhook:{}:{}", endpoint.id, message.id),
                    scope: UniqueScope::Any,
                    window: None,
                });
                requests.push(request);
            }
        }
        if requests.is_empty() {
            return Ok(0);
        }
        let mut made = 0;
        for result in self.client.enqueue_many(requests).await? {
            match result {
                Ok(enqueued) if !enqueued.duplicate => made += 1,
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "cannot make a webhook delivery"),
            }
        }
        Ok(made)
    }

    /// Passes until `stop`: at once after a full page, every `interval` while an endpoint
    /// is enabled, and while none is, when an endpoint changes (or every [`IDLE`]).
    pub async fn run(self, stop: CancellationToken) {
        let changed = self.client.store().wakeups().endpoints();
        loop {
            let wait = match self.run_once().await {
                Ok(Some(report))
                    if report.pushes == PAGE as usize || report.events == PAGE as usize =>
                {
                    continue;
                }
                Ok(Some(_)) => self.interval,
                Ok(None) => IDLE,
                Err(error) => {
                    tracing::warn!(%error, "webhook relay pass failed; retrying");
                    self.interval
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = changed.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
