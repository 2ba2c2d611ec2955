//! The streams: the event outbox and the push log, each followed the same way. One tail per
//! API process reads a log in position order (on Postgres only below the commit horizon, so
//! it never skips an item that commits late) and broadcasts to every connected client. A
//! client first subscribes, then replays from the database up to the present, then takes
//! live items with a higher position than the last one sent: no gap between replay and
//! live, and no duplicate. A client that stops reading is cut off after a stall, holding at
//! most [`CLIENT_BUFFER`] items of the server's memory meanwhile.

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::sync::OnceLock;

use longshore_jobs::push::Push;
use longshore_jobs::{Event, EventId, JobId, Store, StoreError};
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

/// A log read by position, followed by every client of a stream: the event outbox, the
/// push log. Positions only grow, and a read never returns an item that another item below
/// it could still join (each backend reads below its commit horizon).
pub trait Log: Send + Sync + 'static {
    /// What it holds.
    type Item: Send + Sync + 'static;
    /// Whether a quiet tail asks what holds the events back (the outbox only: the same
    /// transaction holds every log back, and one warning is enough).
    const WATCH_HOLDBACK: bool;
    /// How many of the newest items the process keeps for its clients: a client further
    /// behind reads from the database. The memory it costs is this times an item's size.
    const RING: usize;
    /// An item's position.
    fn position(item: &Self::Item) -> i64;
    /// Items after `after`, in position order.
    fn after(
        store: &Store,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Self::Item>, StoreError>> + Send;
    /// Every item below this position is final.
    fn horizon(store: &Store) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// The highest position deleted by retention.
    fn pruned_through(store: &Store) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

/// The event outbox.
pub struct Events;

impl Log for Events {
    type Item = Event;
    const WATCH_HOLDBACK: bool = true;
    const RING: usize = 4096;
    fn position(event: &Event) -> i64 {
        event.id.0
    }
    async fn after(store: &Store, after: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        store.events_after(EventId(after), limit).await
    }
    async fn horizon(store: &Store) -> Result<i64, StoreError> {
        Ok(store.event_horizon().await?.0)
    }
    async fn pruned_through(store: &Store) -> Result<i64, StoreError> {
        Ok(store.events_pruned_through().await?.0)
    }
}

/// The push log.
pub struct Pushes;

impl Log for Pushes {
    type Item = Push;
    const WATCH_HOLDBACK: bool = false;
    // Payloads run to 64 KiB.
    const RING: usize = 1024;
    fn position(push: &Push) -> i64 {
        push.position
    }
    async fn after(store: &Store, after: i64, limit: u32) -> Result<Vec<Push>, StoreError> {
        store.pushes_after(after, limit).await
    }
    async fn horizon(store: &Store) -> Result<i64, StoreError> {
        store.push_horizon().await
    }
    async fn pruned_through(store: &Store) -> Result<i64, StoreError> {
        store.pushes_pruned_through().await
    }
}

/// One item of a client's stream.
#[derive(Clone, Debug)]
pub enum StreamItem<T> {
    /// An item of the log.
    Item(Arc<T>),
    /// Items after the client's position were deleted by retention; the stream goes on
    /// after `pruned_through`.
    Reset {
        /// The client's position.
        requested: i64,
        /// The highest deleted position.
        pruned_through: i64,
        /// The oldest position kept, if any is.
        oldest_kept: Option<i64>,
    },
}

/// A client's stream: its items, then, when the server cut it off, why.
pub struct Subscription<T> {
    /// Replayed, then live.
    pub items: mpsc::Receiver<StreamItem<T>>,
    /// Set when the server ended the stream: the client read too slowly.
    pub cut: Arc<OnceLock<String>>,
}

/// The process's tail of one log, started by the first client.
pub struct Hub<L: Log> {
    store: Store,
    sender: OnceCell<broadcast::Sender<Arc<L::Item>>>,
    stall: Duration,
    poke: Arc<tokio::sync::Notify>,
}

/// The hub of the event outbox.
pub type EventHub = Hub<Events>;
/// The hub of the push log.
pub type PushHub = Hub<Pushes>;

impl<L: Log> Hub<L> {
    /// A hub that cuts off a client whose stream has not moved for `stall`: it holds at most
    /// [`CLIENT_BUFFER`] items for it, and resumes from its position when it reconnects.
    pub(crate) fn new(store: Store, stall: Duration) -> Hub<L> {
        Hub {
            store,
            sender: OnceCell::new(),
            stall,
            poke: Arc::default(),
        }
    }

    async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<L::Item>>, StoreError> {
        let sender = self
            .sender
            .get_or_try_init(|| async {
                let start = L::horizon(&self.store).await? - 1;
                let (sender, _) = broadcast::channel(L::RING);
                let poke = Arc::clone(&self.poke);
                tokio::spawn(tail::<L>(self.store.clone(), sender.clone(), start, poke));
                Ok::<_, StoreError>(sender)
            })
            .await?;
        Ok(sender.subscribe())
    }

    /// Tells the tail that this process just stored items, so it reads them now rather than
    /// at its next interval (items stored by other processes wait for the interval).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Where a client that asks for nothing of the past starts: below the horizon, so an
    /// item that commits late is still ahead of it.
    pub async fn latest(&self) -> Result<i64, StoreError> {
        Ok(L::horizon(&self.store).await? - 1)
    }

    /// A stream of the items after `after` that pass `filter`, replayed then live. The
    /// stream ends when the receiver is dropped, or when the client stalls.
    pub async fn stream(
        &self,
        after: i64,
        filter: impl Fn(&L::Item) -> bool + Send + 'static,
    ) -> Result<Subscription<L::Item>, StoreError> {
        let live = self.subscribe().await?;
        let (tx, items) = mpsc::channel(CLIENT_BUFFER);
        let cut = Arc::new(OnceLock::new());
        let client = Client {
            tx,
            stall: self.stall,
            cut: Arc::clone(&cut),
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = follow::<L>(store, live, after, filter, client).await {
                tracing::warn!(%error, "stream ended");
            }
        });
        Ok(Subscription { items, cut })
    }
}

/// Items held for one client that has not read them yet.
pub const CLIENT_BUFFER: usize = 256;

/// The sending side of one client's stream.
struct Client<T> {
    tx: mpsc::Sender<StreamItem<T>>,
    stall: Duration,
    cut: Arc<OnceLock<String>>,
}

impl<T> Client<T> {
    /// Sends an item; false when the stream is over (the client left, or was cut off for
    /// taking more than `stall` to make room).
    async fn send(&self, item: StreamItem<T>) -> bool {
        match self.tx.send_timeout(item, self.stall).await {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                let reason = format!(
                    "slow_consumer: {CLIENT_BUFFER} items waited {:?} for the client to read \
                     them; reconnect with Last-Event-ID to resume",
                    self.stall
                );
                tracing::info!(%reason, "cutting off a stream client");
                let _ = self.cut.set(reason);
                false
            }
        }
    }
}

/// Reads new items and broadcasts them, for as long as the process runs.
async fn tail<L: Log>(
    store: Store,
    sender: broadcast::Sender<Arc<L::Item>>,
    mut last: i64,
    poke: Arc<tokio::sync::Notify>,
) {
    let mut ticker = tokio::time::interval(TAIL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = HoldbackWatch::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = poke.notified() => {}
        }
        let mut read = 0;
        loop {
            match L::after(&store, last, PAGE).await {
                Ok(items) => {
                    let full = items.len() as u32 == PAGE;
                    read += items.len();
                    for item in items {
                        last = L::position(&item);
                        let _ = sender.send(Arc::new(item));
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the log; retrying");
                    break;
                }
            }
        }
        if L::WATCH_HOLDBACK {
            watch.after_read(&store, read).await;
        }
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

/// Replays from the database, then forwards live items, for one client.
async fn follow<L: Log>(
    store: Store,
    mut live: broadcast::Receiver<Arc<L::Item>>,
    after: i64,
    filter: impl Fn(&L::Item) -> bool,
    client: Client<L::Item>,
) -> Result<(), StoreError> {
    let mut last = after;
    let pruned_through = L::pruned_through(&store).await?;
    if after > 0 && after < pruned_through {
        let oldest_kept = L::after(&store, pruned_through, 1)
            .await?
            .first()
            .map(L::position);
        let reset = StreamItem::Reset {
            requested: after,
            pruned_through,
            oldest_kept,
        };
        if !client.send(reset).await {
            return Ok(());
        }
        last = pruned_through;
    }
    loop {
        // Replay: everything committed after `last`.
        loop {
            let items = L::after(&store, last, PAGE).await?;
            let full = items.len() as u32 == PAGE;
            for item in items {
                last = L::position(&item);
                if filter(&item) && !client.send(StreamItem::Item(Arc::new(item))).await {
                    return Ok(());
                }
            }
            if !full {
                break;
            }
        }
        // Live: what the tail broadcasts, past what was replayed.
        loop {
            let item = tokio::select! {
                received = live.recv() => received,
                () = client.tx.closed() => return Ok(()),
            };
            match item {
                Ok(item) if L::position(&item) > last => {
                    last = L::position(&item);
                    if filter(&item) && !client.send(StreamItem::Item(item)).await {
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
