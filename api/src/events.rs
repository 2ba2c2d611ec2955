//! The event stream. One tail per API process reads the outbox in id order (on Postgres it
//! only reads below the commit horizon, so it never skips an event that commits late) and
//! broadcasts to every connected client. A client first subscribes, then replays from the
//! database up to the present, then takes live events with a higher id than the last one
//! sent: no gap between replay and live, and no duplicate.

use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::{Event, EventId, JobId, Store};
use tokio::sync::{OnceCell, broadcast, mpsc};

/// How often the tail looks for new events.
const TAIL_INTERVAL: Duration = Duration::from_millis(100);
/// Events read per query.
const PAGE: u32 = 500;

/// What a client wants to see.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this job.
    pub job_id: Option<JobId>,
    /// Only these types; a type ending in `.*` matches its prefix.
    pub types: Vec<String>,
}

impl EventFilter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        if self
            .queue
            .as_ref()
            .is_some_and(|q| event.queue.as_ref() != Some(q))
        {
            return false;
        }
        if self
            .kind
            .as_ref()
            .is_some_and(|k| event.kind.as_ref() != Some(k))
        {
            return false;
        }
        if self.job_id.is_some() && event.job_id != self.job_id {
            return false;
        }
        self.types.is_empty()
            || self.types.iter().any(|t| match t.strip_suffix('*') {
                Some(prefix) => event.event_type.starts_with(prefix),
                None => event.event_type == *t,
            })
    }
}

/// One item of a client's stream.
#[derive(Clone, Debug)]
pub enum StreamItem {
    /// An event.
    Event(Arc<Event>),
    /// Events after the client's id were deleted by retention; the stream goes on from the
    /// oldest stored event.
    Reset {
        /// The client's id.
        requested: EventId,
        /// The highest deleted id.
        pruned_through: EventId,
    },
}

/// The process's tail of the outbox, started by the first client.
pub struct EventHub {
    store: Store,
    sender: OnceCell<broadcast::Sender<Arc<Event>>>,
}

impl EventHub {
    pub(crate) fn new(store: Store) -> EventHub {
        EventHub {
            store,
            sender: OnceCell::new(),
        }
    }

    async fn subscribe(
        &self,
    ) -> Result<broadcast::Receiver<Arc<Event>>, longshore_jobs::StoreError> {
        let sender = self
            .sender
            .get_or_try_init(|| async {
                let start = EventId(self.store.event_horizon().await?.0 - 1);
                let (sender, _) = broadcast::channel(4096);
                tokio::spawn(tail(self.store.clone(), sender.clone(), start));
                Ok::<_, longshore_jobs::StoreError>(sender)
            })
            .await?;
        Ok(sender.subscribe())
    }

    /// A stream of the events after `after` that pass `filter`, replayed then live. The
    /// stream ends when the receiver is dropped.
    pub async fn stream(
        &self,
        after: EventId,
        filter: EventFilter,
    ) -> Result<mpsc::Receiver<StreamItem>, longshore_jobs::StoreError> {
        let live = self.subscribe().await?;
        let (tx, rx) = mpsc::channel(256);
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = follow(store, live, after, filter, tx).await {
                tracing::warn!(%error, "event stream ended");
            }
        });
        Ok(rx)
    }
}

/// Reads new events and broadcasts them, for as long as the process runs.
async fn tail(store: Store, sender: broadcast::Sender<Arc<Event>>, mut last: EventId) {
    let mut ticker = tokio::time::interval(TAIL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = HoldbackWatch::default();
    loop {
        ticker.tick().await;
        let mut read = 0;
        loop {
            match store.events_after(last, PAGE).await {
                Ok(events) => {
                    let full = events.len() as u32 == PAGE;
                    read += events.len();
                    for event in events {
                        last = event.id;
                        let _ = sender.send(Arc::new(event));
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read events; retrying");
                    break;
                }
            }
        }
        watch.after_read(&store, read).await;
    }
}

/// How long the tail reads nothing before it asks whether a transaction holds events back.
const HOLDBACK_CHECK: Duration = Duration::from_secs(10);

/// Reports a transaction that holds the stream back: a long-running transaction anywhere on
/// the Postgres server hides every event committed after it began, so the stream stalls
/// until it ends. Said once when it starts (a warning naming the transaction) and once when
/// the stream moves again.
#[derive(Default)]
struct HoldbackWatch {
    quiet_since: Option<std::time::Instant>,
    checked_at: Option<std::time::Instant>,
    held_since: Option<std::time::Instant>,
}

impl HoldbackWatch {
    async fn after_read(&mut self, store: &Store, read: usize) {
        let now = std::time::Instant::now();
        if read > 0 {
            if let Some(since) = self.held_since.take() {
                tracing::info!(
                    held_s = since.elapsed().as_secs_f64(),
                    "the event stream moves again: the transaction holding it back ended"
                );
            }
            self.quiet_since = None;
            return;
        }
        let quiet_since = *self.quiet_since.get_or_insert(now);
        let due = self.checked_at.is_none_or(|at| now - at >= HOLDBACK_CHECK);
        if now - quiet_since < HOLDBACK_CHECK || !due {
            return;
        }
        self.checked_at = Some(now);
        match store.event_holdback().await {
            Ok(Some(holdback)) if self.held_since.is_none() => {
                self.held_since = Some(quiet_since);
                tracing::warn!(
                    pid = holdback.pid, open_s = holdback.age_s,
                    application = %holdback.application, hidden_events = holdback.hidden,
                    "the event stream is held back by a long-running transaction on the \
                     database: events committed since it began stay hidden until it ends"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "cannot check what holds events back"),
        }
    }
}

/// Replays from the database, then forwards live events, for one client.
async fn follow(
    store: Store,
    mut live: broadcast::Receiver<Arc<Event>>,
    after: EventId,
    filter: EventFilter,
    tx: mpsc::Sender<StreamItem>,
) -> Result<(), longshore_jobs::StoreError> {
    let mut last = after;
    let pruned_through = store.events_pruned_through().await?;
    if after.0 > 0 && after < pruned_through {
        let reset = StreamItem::Reset {
            requested: after,
            pruned_through,
        };
        if tx.send(reset).await.is_err() {
            return Ok(());
        }
        last = pruned_through;
    }
    loop {
        // Replay: everything committed after `last`.
        loop {
            let events = store.events_after(last, PAGE).await?;
            let full = events.len() as u32 == PAGE;
            for event in events {
                last = event.id;
                if filter.matches(&event)
                    && tx.send(StreamItem::Event(Arc::new(event))).await.is_err()
                {
                    return Ok(());
                }
            }
            if !full {
                break;
            }
        }
        // Live: what the tail broadcasts, past what was replayed.
        loop {
            let event = tokio::select! {
                received = live.recv() => received,
                () = tx.closed() => return Ok(()),
            };
            match event {
                Ok(event) if event.id > last => {
                    last = event.id;
                    if filter.matches(&event) && tx.send(StreamItem::Event(event)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                // Too slow for the broadcast: go back to the database from `last`.
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
}
