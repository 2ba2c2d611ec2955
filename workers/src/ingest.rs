//! Ingesters: a Redis Stream's entries into durable `lifecycle` jobs, exactly one per entry.
//!
//! Each ingester is one consumer of a consumer group (`XREADGROUP`), named per process start,
//! so several processes share the group's work. A batch of entries becomes jobs in one
//! transaction, each unique by `{stream}:{entry_id}` for as long as it is kept: a redelivered
//! entry finds its job and makes no second one. Entries are acknowledged (`XACK`) only after
//! that transaction committed, so a crash in between redelivers them; entries a dead consumer
//! left pending are claimed after `min_idle` (`XAUTOCLAIM`). An entry that cannot be decoded,
//! whose type no cascade handles, or that was delivered more than `max_deliveries` times goes
//! to the dead-letter stream with the reason, its id and its fields, acknowledged in the same
//! `MULTI` as the dead letter: it never stalls the stream.
//!
//! Redis down at start or lost while running: the ingester reconnects with backoff, jobs keep
//! running, and the API's `/readyz` names the ingester as degraded. The database down: the
//! batch waits and is stored once it is back; nothing is acknowledged before.

use longshore_jobs::telemetry::{
    self, MESSAGING_BATCH_COUNT, MESSAGING_DESTINATION, MESSAGING_OPERATION,
    MESSAGING_OPERATION_NAME, MESSAGING_SYSTEM, OTEL_KIND, OTEL_NAME,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use chrono::{DateTime, Utc};
use longshore_jobs::Client;
use longshore_jobs::lifecycle::{
    ConsumerReport, IngesterReport, Ingesters, LifecycleEvent, Origin,
};
use redis::Value;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// `[[ingesters]]`: one Redis Stream read by a consumer group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngesterConfig {
    /// The Redis server. Defaults to `REDIS_URL`, else `redis://127.0.0.1:6379`.
    pub redis_url: Option<String>,
    /// The stream. Defaults to `user:lifecycle_events`.
    pub stream: String,
    /// The consumer group, created when missing. Defaults to `longshore`.
    pub group: String,
    /// The consumer's name; a process start adds its own suffix, so two never share one.
    /// Defaults to `longshore`.
    pub consumer: String,
    /// Where a new group starts: `0` (the whole stream) or `$` (new entries only).
    /// Defaults to `0`.
    pub start: String,
    /// Entries read (and stored in one transaction) at once. Defaults to 200.
    pub batch: u32,
    /// How long one read waits for entries. Defaults to 2 s.
    #[serde(with = "humantime_serde")]
    pub block: Duration,
    /// How long an entry stays pending with another consumer before it is claimed.
    /// Defaults to 60 s.
    #[serde(with = "humantime_serde")]
    pub min_idle: Duration,
    /// Deliveries after which an entry goes to the dead letters. Defaults to 5.
    pub max_deliveries: u32,
    /// The dead-letter stream. Defaults to `{stream}:dead`.
    pub dead_letter: Option<String>,
    /// How long a consumer holding nothing may stay silent before it is deleted from the
    /// group (each process start has its own; a live one reads every `block`). Defaults to
    /// 1 h.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        IngesterConfig {
            redis_url: None,
            stream: longshore_jobs::lifecycle::DEFAULT_STREAM.to_owned(),
            group: "longshore".to_owned(),
            consumer: "longshore".to_owned(),
            start: "0".to_owned(),
            batch: 200,
            block: Duration::from_secs(2),
            min_idle: Duration::from_secs(60),
            max_deliveries: 5,
            dead_letter: None,
            forget_after: Duration::from_secs(3600),
        }
    }
}

impl IngesterConfig {
    /// Checks the config, naming the bad field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let named = |v: &str| !v.is_empty() && v.len() <= 200 && !v.contains(char::is_whitespace);
        for (field, value) in [
            ("stream", &self.stream),
            ("group", &self.group),
            ("consumer", &self.consumer),
        ] {
            if !named(value) {
                return Err((
                    field,
                    "must be 1 to 200 characters without spaces".to_owned(),
                ));
            }
        }
        if self.start != "0" && self.start != "$" {
            return Err(("start", "must be \"0\" or \"$\"".to_owned()));
        }
        if !(1..=10_000).contains(&self.batch) {
            return Err(("batch", "must be 1 to 10000".to_owned()));
        }
        if self.block < Duration::from_millis(10) || self.block > Duration::from_secs(60) {
            return Err(("block", "must be 10ms to 60s".to_owned()));
        }
        if self.min_idle < Duration::from_millis(10) {
            return Err(("min_idle", "must be at least 10ms".to_owned()));
        }
        if self.forget_after < self.block * 10 {
            return Err((
                "forget_after",
                "must be at least ten times block".to_owned(),
            ));
        }
        if self.max_deliveries == 0 {
            return Err(("max_deliveries", "must be at least 1".to_owned()));
        }
        if let Some(url) = &self.redis_url {
            redis::Client::open(url.as_str()).map_err(|e| ("redis_url", e.to_string()))?;
        }
        Ok(())
    }

    /// The Redis URL in use.
    pub fn url(&self) -> String {
        self.redis_url
            .clone()
            .or_else(|| std::env::var("REDIS_URL").ok())
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
    }

    /// The dead-letter stream.
    pub fn dead_letter(&self) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| format!("{}:dead", self.stream))
    }
}

/// What an ingester knows of itself, shared with the API's reports.
#[derive(Debug, Default)]
struct Status {
    connected: bool,
    error: Option<String>,
    ingested: u64,
}

/// One stream's ingester.
pub struct Ingester {
    config: IngesterConfig,
    consumer: String,
    client: Client,
    known: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    status: Arc<Mutex<Status>>,
}

/// An entry as read: its id and its fields, as bytes (a field need not be text).
#[derive(Clone, Debug)]
struct Entry {
    id: String,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a connection's reading ended: Redis failed (the ingester reconnects), or shutdown.
#[derive(Debug)]
enum Failure {
    Redis(redis::RedisError),
    Stopped,
}

impl From<redis::RedisError> for Failure {
    fn from(error: redis::RedisError) -> Self {
        Failure::Redis(error)
    }
}

impl Ingester {
    /// An ingester of `config` turning entries into `lifecycle` jobs, taking only
    /// the event types `known` says a cascade handles. `process` makes the consumer's name
    /// unique to this process start.
    pub fn new(
        config: IngesterConfig,
        process: &str,
        client: Client,
        known: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> Ingester {
        Ingester {
            consumer: format!("{}@{process}", config.consumer),
            config,
            client,
            known,
            status: Arc::default(),
        }
    }

    /// Reads until `shutdown`, reconnecting with backoff whenever Redis is lost.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let failure = match self.connect().await {
                Ok(mut conn) => {
                    self.set_status(true, None);
                    backoff = Duration::from_millis(100);
                    self.serve(&mut conn, &shutdown).await
                }
                Err(error) => Failure::Redis(error),
            };
            match failure {
                Failure::Stopped => break,
                Failure::Redis(error) => {
                    tracing::warn!(stream = %self.config.stream, %error, retry_in = ?backoff,
                        "ingester lost Redis; reconnecting");
                    self.set_status(false, Some(format!("redis: {error}")));
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn set_status(&self, connected: bool, error: Option<String>) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.connected = connected;
        status.error = error;
    }

    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        connect(
            &self.config.url(),
            self.config.block + Duration::from_secs(5),
        )
        .await
    }

    /// Reads, stores and acknowledges on one connection until it fails or `shutdown`.
    async fn serve(
        &self,
        conn: &mut MultiplexedConnection,
        shutdown: &CancellationToken,
    ) -> Failure {
        if let Err(error) = self.ensure_group(conn).await {
            return Failure::Redis(error);
        }
        tracing::info!(stream = %self.config.stream, group = %self.config.group,
            consumer = %self.consumer, "ingester reading");
        let reclaim_every = self.config.min_idle.min(Duration::from_secs(5));
        let mut last_reclaim: Option<tokio::time::Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                return Failure::Stopped;
            }
            if last_reclaim.is_none_or(|at| at.elapsed() >= reclaim_every) {
                last_reclaim = Some(tokio::time::Instant::now());
                if let Err(failure) = self.reclaim(conn, shutdown).await {
                    return failure;
                }
            }
            let read = tokio::select! {
                () = shutdown.cancelled() => return Failure::Stopped,
                read = self.read_new(conn) => read,
            };
            let entries = match read {
                Ok(entries) => entries,
                // A group that vanished (Redis restarted empty) is made again on reconnect.
                Err(error) => return Failure::Redis(error),
            };
            if entries.is_empty() {
                continue;
            }
            let counts = vec![1; entries.len()];
            if let Err(failure) = self.handle(conn, entries, counts, shutdown).await {
                return failure;
            }
        }
    }

    async fn ensure_group(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&self.config.start)
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map(drop),
        }
    }

    async fn read_new(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<Vec<Entry>> {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(self.config.batch)
            .arg("BLOCK")
            .arg(self.config.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.config.stream)
            .arg(">")
            .query_async(conn)
            .await?;
        Ok(read_reply(reply))
    }

    /// Claims the entries other consumers left pending past `min_idle`, a batch at a time.
    async fn reclaim(
        &self,
        conn: &mut MultiplexedConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), Failure> {
        let mut cursor = "0-0".to_owned();
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.config.stream)
                .arg(&self.config.group)
                .arg(&self.consumer)
                .arg(self.config.min_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(self.config.batch)
                .query_async(conn)
                .await?;
            let (next, entries, deleted) = autoclaim_reply(reply);
            if !deleted.is_empty() {
                // Trimmed from the stream while pending: nothing is left to store.
                let _: Value = redis::cmd("XACK")
                    .arg(&self.config.stream)
                    .arg(&self.config.group)
                    .arg(&deleted)
                    .query_async(conn)
                    .await?;
            }
            if !entries.is_empty() {
                let counts = self.delivery_counts(conn, &entries).await?;
                tracing::info!(stream = %self.config.stream, entries = entries.len(),
                    "claimed entries a stopped consumer left pending");
                self.handle(conn, entries, counts, shutdown).await?;
            }
            if next == "0-0" || next.is_empty() {
                break;
            }
            cursor = next;
        }
        self.forget_gone_consumers(conn).await?;
        Ok(())
    }

    /// Deletes the consumers of stopped processes (each start has its own) once they hold
    /// nothing and have not read for `forget_after`: a live consumer reads every `block`.
    async fn forget_gone_consumers(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        let consumers: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .query_async(conn)
            .await?;
        for consumer in fields_of(&consumers) {
            let name = consumer.get("name").and_then(text).unwrap_or_default();
            let pending = consumer.get("pending").and_then(int).unwrap_or(1);
            let idle = consumer.get("idle").and_then(int).unwrap_or(0);
            let silent = Duration::from_millis(idle) > self.config.forget_after;
            if name != self.consumer && pending == 0 && silent {
                let _: Value = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&self.config.stream)
                    .arg(&self.config.group)
                    .arg(&name)
                    .query_async(conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// How often each entry was delivered, from the group's pending list.
    async fn delivery_counts(
        &self,
        conn: &mut MultiplexedConnection,
        entries: &[Entry],
    ) -> redis::RedisResult<Vec<u64>> {
        let (first, last) = (&entries[0].id, &entries[entries.len() - 1].id);
        let reply: Value = redis::cmd("XPENDING")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(first)
            .arg(last)
            .arg(entries.len() * 2 + 10)
            .arg(&self.consumer)
            .query_async(conn)
            .await?;
        let mut counts = BTreeMap::new();
        if let Value::Array(items) = reply {
            for item in items {
                if let Value::Array(parts) = item
                    && let (Some(id), Some(count)) = (parts.first(), parts.get(3))
                {
                    counts.insert(text(id).unwrap_or_default(), int(count).unwrap_or(1));
                }
            }
        }
        Ok(entries
            .iter()
            .map(|e| counts.get(&e.id).copied().unwrap_or(1))
            .collect())
    }

    /// Stores a batch as jobs, then dead-letters and acknowledges in one `MULTI`.
    async fn handle(
        &self,
        conn: &mut MultiplexedConnection,
        entries: Vec<Entry>,
        counts: Vec<u64>,
        shutdown: &CancellationToken,
    ) -> Result<(), Failure> {
        let mut dead: Vec<(&Entry, String)> = Vec::new();
        let mut taken: Vec<&Entry> = Vec::new();
        let mut requests = Vec::new();
        for (entry, count) in entries.iter().zip(counts) {
            if count > u64::from(self.config.max_deliveries) {
                dead.push((
                    entry,
                    format!("delivered {count} times, more than max_deliveries"),
                ));
                continue;
            }
            match self.decode(entry) {
                Ok(event) => {
                    let origin = Origin::Stream {
                        stream: self.config.stream.clone(),
                        entry_id: entry.id.clone(),
                    };
                    requests.push(event.request(origin));
                    taken.push(entry);
                }
                Err(reason) => dead.push((entry, reason)),
            }
        }
        let span = self.receive_span(&entries, &requests);
        let mut backoff = Duration::from_millis(100);
        let results = loop {
            if requests.is_empty() {
                break Vec::new();
            }
            let stored = self.client.enqueue_many(requests.clone());
            match stored.instrument(span.clone()).await {
                Ok(results) => break results,
                Err(error) => {
                    // Nothing was stored (or the commit is unconfirmed: a retry finds the
                    // jobs by their keys). The entries stay pending until it works.
                    tracing::warn!(stream = %self.config.stream, %error, "cannot store entries; retrying");
                    self.set_status(true, Some(format!("database: {error}")));
                    tokio::select! {
                        () = shutdown.cancelled() => return Err(Failure::Stopped),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let mut stored = 0;
        for (entry, result) in taken.iter().zip(results) {
            match result {
                Ok(_) => stored += 1,
                Err(error) => dead.push((entry, error.to_string())),
            }
        }
        pause_before_ack().await;
        self.acknowledge(conn, &entries, &dead).await?;
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.ingested += stored;
        status.error = None;
        if !dead.is_empty() {
            tracing::warn!(stream = %self.config.stream, dead = dead.len(), "entries dead-lettered");
        }
        Ok(())
    }

    /// The span of storing one read's entries (`receive {stream}`, a consumer), linked to
    /// the trace each entry names (its `trace_id`): their jobs stay in those traces.
    fn receive_span(
        &self,
        entries: &[Entry],
        requests: &[longshore_jobs::EnqueueRequest],
    ) -> tracing::Span {
        let span = tracing::info_span!(
            "receive",
            { OTEL_NAME } = %format_args!("receive {}", self.config.stream),
            { OTEL_KIND } = "consumer",
            { MESSAGING_SYSTEM } = "redis",
            { MESSAGING_OPERATION } = "receive",
            { MESSAGING_OPERATION_NAME } = "ingest",
            { MESSAGING_DESTINATION } = %self.config.stream,
            { MESSAGING_BATCH_COUNT } = entries.len(),
        );
        let carried = requests
            .iter()
            .filter_map(|r| r.metadata.as_ref().and_then(telemetry::carried));
        for context in carried {
            span.add_link(context);
        }
        span
    }

    /// The event of an entry, or why it cannot be one.
    fn decode(&self, entry: &Entry) -> Result<LifecycleEvent, String> {
        let mut fields = BTreeMap::new();
        for (name, value) in &entry.fields {
            let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value))
            else {
                return Err("a field name or value is not UTF-8".to_owned());
            };
            fields.insert(name.to_owned(), value.to_owned());
        }
        let event = LifecycleEvent::from_fields(&fields).map_err(|r| r.to_string())?;
        event
            .check(|t| (self.known)(t))
            .map_err(|r| r.to_string())?;
        Ok(event)
    }

    async fn acknowledge(
        &self,
        conn: &mut MultiplexedConnection,
        entries: &[Entry],
        dead: &[(&Entry, String)],
    ) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (entry, reason) in dead {
            let cmd = pipe
                .cmd("XADD")
                .arg(self.config.dead_letter())
                .arg("*")
                .arg("reason")
                .arg(reason.as_str())
                .arg("original_id")
                .arg(&entry.id)
                .arg("stream")
                .arg(&self.config.stream);
            for (name, value) in &entry.fields {
                cmd.arg(name.as_slice()).arg(value.as_slice());
            }
            cmd.ignore();
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        pipe.cmd("XACK")
            .arg(&self.config.stream)
            .arg(&self.config.group)
            .arg(&ids)
            .ignore();
        pipe.query_async::<()>(conn).await
    }

    /// The report the API shows of this ingester; `runs` says whether this process runs it
    /// (an API-only process reports on the stream without consuming it).
    pub fn reporter(&self, runs: bool) -> Reporter {
        Reporter {
            config: self.config.clone(),
            consumer: self.consumer.clone(),
            status: Arc::clone(&self.status),
            runs,
        }
    }
}

/// In debug builds, `LONGSHORE_TEST_INGEST_ACK_DELAY_MS` holds each batch between its commit
/// and its `XACK`, so that the fault tests' `kill -9` lands in that window. Never in a
/// release binary.
#[cfg(debug_assertions)]
async fn pause_before_ack() {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("LONGSHORE_TEST_INGEST_ACK_DELAY_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis)
    });
    if let Some(delay) = delay {
        tokio::time::sleep(*delay).await;
    }
}

#[cfg(not(debug_assertions))]
async fn pause_before_ack() {}

async fn connect(url: &str, response: Duration) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::BulkString(bytes) => bytes.clone(),
        other => text(other).unwrap_or_default().into_bytes(),
    }
}

fn int(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// Entries of an `[id, [field, value, …]]` list; an entry deleted while pending (its fields
/// nil) has no fields.
fn entries(value: &Value) -> Vec<Entry> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(parts) = item else {
                return None;
            };
            let id = text(parts.first()?)?;
            let fields = match parts.get(1) {
                Some(Value::Array(flat)) => flat
                    .chunks(2)
                    .filter(|pair| pair.len() == 2)
                    .map(|pair| (bytes(&pair[0]), bytes(&pair[1])))
                    .collect(),
                Some(Value::Map(pairs)) => {
                    pairs.iter().map(|(k, v)| (bytes(k), bytes(v))).collect()
                }
                _ => Vec::new(),
            };
            Some(Entry { id, fields })
        })
        .collect()
}

/// The entries of an `XREADGROUP` reply for one stream (RESP2 arrays or RESP3 maps).
fn read_reply(reply: Value) -> Vec<Entry> {
    match reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) => pair.get(1).map(entries),
                _ => None,
            })
            .flatten()
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, v)| entries(v)).collect(),
        _ => Vec::new(),
    }
}

/// The next cursor, the claimed entries and the ids deleted while pending.
fn autoclaim_reply(reply: Value) -> (String, Vec<Entry>, Vec<String>) {
    let Value::Array(parts) = reply else {
        return (String::new(), Vec::new(), Vec::new());
    };
    let next = parts.first().and_then(text).unwrap_or_default();
    let claimed = parts.get(1).map(entries).unwrap_or_default();
    let deleted = match parts.get(2) {
        Some(Value::Array(ids)) => ids.iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    // Entries deleted while pending come back without fields on some versions.
    let (claimed, gone): (Vec<Entry>, Vec<Entry>) =
        claimed.into_iter().partition(|e| !e.fields.is_empty());
    let deleted = deleted
        .into_iter()
        .chain(gone.into_iter().map(|e| e.id))
        .collect();
    (next, claimed, deleted)
}

/// Reads an ingester's figures from Redis for the API.
#[derive(Clone)]
pub struct Reporter {
    config: IngesterConfig,
    consumer: String,
    status: Arc<Mutex<Status>>,
    runs: bool,
}

impl Reporter {
    async fn report(&self) -> IngesterReport {
        let (connected, error, ingested) = {
            let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
            (status.connected, status.error.clone(), status.ingested)
        };
        let mut report = IngesterReport {
            stream: self.config.stream.clone(),
            group: self.config.group.clone(),
            consumer: self.consumer.clone(),
            dead_letter: self.config.dead_letter(),
            connected,
            error,
            ingested,
            ..IngesterReport::default()
        };
        match self.read_figures(&mut report).await {
            Err(error) => {
                report.connected = false;
                report.error = Some(format!("redis: {error}"));
            }
            Ok(()) if !self.runs => {
                report.connected = true;
                report.consumer = String::new();
            }
            Ok(()) => {}
        }
        report
    }

    async fn read_figures(&self, report: &mut IngesterReport) -> redis::RedisResult<()> {
        let mut conn = connect(&self.config.url(), Duration::from_secs(2)).await?;
        let stream = &self.config.stream;
        let groups: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut conn)
            .await?;
        let group = fields_of(&groups)
            .into_iter()
            .find(|g| g.get("name").and_then(text).as_deref() == Some(&self.config.group));
        if let Some(group) = group {
            report.pending = group.get("pending").and_then(int).unwrap_or(0);
            report.lag = group.get("lag").and_then(int);
            let last = group.get("last-delivered-id").and_then(text);
            report.last_entry_at = last.as_deref().and_then(entry_time);
            report.last_entry_id = last.filter(|id| id != "0-0");
            let consumers: Value = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(stream)
                .arg(&self.config.group)
                .query_async(&mut conn)
                .await?;
            report.consumers = fields_of(&consumers)
                .into_iter()
                .map(|c| ConsumerReport {
                    name: c.get("name").and_then(text).unwrap_or_default(),
                    pending: c.get("pending").and_then(int).unwrap_or(0),
                    idle_ms: c.get("idle").and_then(int).unwrap_or(0),
                })
                .collect();
            let oldest: Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(&self.config.group)
                .arg("-")
                .arg("+")
                .arg(1)
                .query_async(&mut conn)
                .await?;
            if let Value::Array(items) = oldest
                && let Some(Value::Array(first)) = items.first()
            {
                report.oldest_pending_ms = first.get(2).and_then(int);
            }
        }
        let dead: u64 = redis::cmd("XLEN")
            .arg(self.config.dead_letter())
            .query_async(&mut conn)
            .await?;
        report.dead_lettered = dead;
        Ok(())
    }
}

/// The field maps of an `XINFO` reply (flat arrays in RESP2, maps in RESP3).
fn fields_of(value: &Value) -> Vec<BTreeMap<String, Value>> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            Value::Array(flat) => flat
                .chunks(2)
                .filter(|pair| pair.len() == 2)
                .filter_map(|pair| Some((text(&pair[0])?, pair[1].clone())))
                .collect(),
            Value::Map(pairs) => pairs
                .iter()
                .filter_map(|(k, v)| Some((text(k)?, v.clone())))
                .collect(),
            _ => BTreeMap::new(),
        })
        .collect()
}

/// When an entry was added, from the milliseconds of its id.
fn entry_time(id: &str) -> Option<DateTime<Utc>> {
    let ms = id.split('-').next()?.parse::<i64>().ok()?;
    DateTime::from_timestamp_millis(ms).filter(|_| ms > 0)
}

/// The ingesters of a process, for the API.
#[derive(Clone, Default)]
pub struct IngesterSet {
    reporters: Vec<Reporter>,
}

impl IngesterSet {
    /// A set reporting on `reporters`.
    pub fn new(reporters: Vec<Reporter>) -> IngesterSet {
        IngesterSet { reporters }
    }
}

impl Ingesters for IngesterSet {
    fn reports(&self) -> Pin<Box<dyn Future<Output = Vec<IngesterReport>> + Send + '_>> {
        Box::pin(futures::future::join_all(
            self.reporters.iter().map(Reporter::report),
        ))
    }

    fn degraded(&self) -> Vec<String> {
        self.reporters
            .iter()
            .filter(|r| r.runs)
            .filter_map(|r| {
                let status = r.status.lock().unwrap_or_else(|e| e.into_inner());
                (!status.connected).then(|| {
                    let why = status
                        .error
                        .clone()
                        .unwrap_or_else(|| "not connected yet".to_owned());
                    format!("ingester {}: {why}", r.config.stream)
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_replies_without_trusting_their_bytes() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("user_id"), Value::BulkString(vec![0xff, 0xfe])]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let read = read_reply(reply);
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].fields[0].1, vec![0xff, 0xfe]);
        assert!(read[1].fields.is_empty());
        assert_eq!(
            entry_time("1764590000000-3").map(|t| t.timestamp_millis()),
            Some(1_764_590_000_000)
        );
    }
}
