//! The client: validates enqueues against the registry, applies the kind's defaults, stores.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::error::{EnqueueError, StoreError};
use crate::id::JobId;
use crate::job::{Enqueued, NewJob, RunAt, UniqueOptions};
use crate::kind::KindOptions;
use crate::limits::{
    MAX_ARGS_BYTES, MAX_ATTEMPTS_LIMIT, MAX_METADATA_BYTES, check_delay_ms, check_json, check_size,
    check_tags, check_text, check_time,
};
use crate::registry::{RegisteredKind, Registry};
use crate::store::{InTransaction, Store};

/// A request to enqueue one job: the kind and args, and overrides of the kind's defaults.
/// Also the shape of a schedule's job (see [`crate::schedule::Schedule::template`]), stored
/// as JSON with its unset fields left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnqueueRequest {
    /// The kind's name.
    pub kind: String,
    /// The handler's input. Defaults to `{}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// The queue. Defaults to the kind's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// 0 (first) to 9 (last). Defaults to the kind's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// At least 1. Defaults to the kind's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
    /// Milliseconds to wait before the first attempt; not with `run_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<i64>,
    /// When to run first; not with `delay_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Uniqueness. Defaults to the kind's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique: Option<UniqueOptions>,
    /// Labels for filtering.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A JSON object of metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Per-attempt time limit in milliseconds. Defaults to the kind's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    /// Jobs that share a sequence key run one at a time, in enqueue order (`user:42`, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
}

impl EnqueueRequest {
    /// A request for `kind` with `args`, every other field from the kind's defaults.
    pub fn new(kind: impl Into<String>, args: serde_json::Value) -> Self {
        EnqueueRequest {
            kind: kind.into(),
            args: Some(args),
            ..Self::default()
        }
    }
}

/// Enqueues jobs. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    store: Store,
    registry: Arc<Registry>,
}

impl Client {
    /// A client over `store` that knows the kinds of `registry`.
    pub fn new(store: Store, registry: Arc<Registry>) -> Self {
        Client { store, registry }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The kinds.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Checks a request and turns it into a job ready to store, applying the kind's defaults.
    /// Each field is checked by a step of its own, which names the field when it refuses.
    pub fn prepare(&self, request: EnqueueRequest) -> Result<NewJob, EnqueueError> {
        let kind = self
            .registry
            .get(&request.kind)
            .ok_or_else(|| EnqueueError::UnknownKind(request.kind.clone()))?;
        let defaults = kind.options();
        let now = Utc::now();
        let queue = request.queue.unwrap_or_else(|| defaults.queue.clone());
        check_queue_name(&queue)?;
        check_tags("tags", &request.tags)?;
        let unique = match request.unique.or_else(|| defaults.unique.clone()) {
            Some(u) => check_unique(&u).map(|()| Some((u.key.clone(), u.slot(now), u.scope)))?,
            None => None,
        };
        Ok(NewJob {
            id: JobId::new(),
            queue,
            kind: kind.name().to_owned(),
            args: args(kind, request.args)?,
            priority: priority(request.priority, defaults)?,
            max_attempts: max_attempts(request.max_attempts, defaults)?,
            run_at: run_at(request.delay_ms, request.run_at, now)?,
            unique,
            tags: request.tags,
            metadata: metadata(request.metadata)?,
            timeout_ms: timeout_ms(request.timeout_ms, defaults)?,
            sequence: sequence(request.sequence)?,
        })
    }

    /// Validates and stores one job.
    pub async fn enqueue(&self, request: EnqueueRequest) -> Result<Enqueued, EnqueueError> {
        let job = self.prepare(request)?;
        let mut enqueued = self.store.insert(vec![job]).await?;
        enqueued.pop().ok_or_else(|| {
            EnqueueError::Store(StoreError::Corrupt {
                what: "insert result",
                detail: "no row came back".to_owned(),
            })
        })
    }

    /// Validates `request` and stores the job on `conn`, a connection inside a transaction of
    /// the caller's on the same database (`&mut *tx`): the job commits with that transaction
    /// or not at all. On Postgres the transaction also carries the wake-up (`NOTIFY` is sent
    /// when it commits), so the workers of every process see the job at once; on SQLite
    /// they see it at their next poll, or at once after [`Client::wake`] once committed.
    pub async fn enqueue_in(
        &self,
        conn: &mut impl InTransaction,
        request: EnqueueRequest,
    ) -> Result<Enqueued, EnqueueError> {
        let mut jobs = [self.prepare(request)?];
        let span = crate::telemetry::send_span(&mut jobs);
        let mut enqueued = conn.insert_jobs(&jobs).instrument(span).await?;
        enqueued.pop().ok_or_else(|| {
            EnqueueError::Store(StoreError::Corrupt {
                what: "insert result",
                detail: "no row came back".to_owned(),
            })
        })
    }

    /// Wakes the idle workers of `queue` (after a commit that made jobs available there).
    pub fn wake(&self, queue: &str) {
        self.store.wakeups().job_available(queue);
    }

    /// Validates every request and stores the valid ones in one batch. Each request gets its
    /// own result, in order; an invalid request does not stop the others.
    pub async fn enqueue_many(
        &self,
        requests: Vec<EnqueueRequest>,
    ) -> Result<Vec<Result<Enqueued, EnqueueError>>, StoreError> {
        let prepared: Vec<Result<NewJob, EnqueueError>> =
            requests.into_iter().map(|r| self.prepare(r)).collect();
        let valid: Vec<NewJob> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok().cloned())
            .collect();
        let mut stored = self.store.insert(valid).await?.into_iter();
        Ok(prepared
            .into_iter()
            .map(|p| p.map(|_| stored.next().expect("one result per valid job")))
            .collect())
    }
}

/// The args, `{}` by default: bounded, free of NUL, and of the shape the kind accepts.
fn args(kind: &RegisteredKind, args: Option<Value>) -> Result<Value, EnqueueError> {
    let args = args.unwrap_or_else(|| serde_json::json!({}));
    check_size("args", &args, MAX_ARGS_BYTES)?;
    check_json("args", &args)?;
    kind.check_args(&args).map_err(|e| {
        EnqueueError::invalid("args", format!("do not fit kind {}: {e}", kind.name()))
    })?;
    kind.seal_args(args)
        .map_err(|e| EnqueueError::invalid("args", e))
}

fn priority(priority: Option<i64>, defaults: &KindOptions) -> Result<i16, EnqueueError> {
    match priority {
        None => Ok(defaults.priority),
        Some(p @ 0..=9) => Ok(p as i16),
        Some(p) => Err(EnqueueError::invalid(
            "priority",
            format!("must be 0 to 9, got {p}"),
        )),
    }
}

fn max_attempts(attempts: Option<i64>, defaults: &KindOptions) -> Result<i32, EnqueueError> {
    match attempts {
        None => Ok(defaults.max_attempts as i32),
        Some(n @ 1..=MAX_ATTEMPTS_LIMIT) => Ok(n as i32),
        Some(n) => Err(EnqueueError::invalid(
            "max_attempts",
            format!("must be 1 to {MAX_ATTEMPTS_LIMIT}, got {n}"),
        )),
    }
}

/// When the first attempt may start: after a delay, at a time (within the horizon), or now.
fn run_at(
    delay_ms: Option<i64>,
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<RunAt, EnqueueError> {
    match (delay_ms, at) {
        (Some(_), Some(_)) => Err(EnqueueError::invalid(
            "delay_ms",
            "give delay_ms or run_at, not both",
        )),
        (Some(ms), None) => Ok(RunAt::After(check_delay_ms("delay_ms", ms)?)),
        (None, Some(at)) => check_time("run_at", at, now).map(|()| RunAt::At(at)),
        (None, None) => Ok(RunAt::Now),
    }
}

/// A bounded JSON object without NUL, `{}` by default.
fn metadata(metadata: Option<Value>) -> Result<Value, EnqueueError> {
    let metadata = match metadata {
        None => serde_json::json!({}),
        Some(m @ Value::Object(_)) => m,
        Some(_) => return Err(EnqueueError::invalid("metadata", "must be a JSON object")),
    };
    check_size("metadata", &metadata, MAX_METADATA_BYTES)?;
    check_json("metadata", &metadata)?;
    Ok(metadata)
}

fn timeout_ms(timeout: Option<i64>, defaults: &KindOptions) -> Result<Option<i64>, EnqueueError> {
    match timeout {
        None => Ok(defaults.timeout.map(|t| t.as_millis() as i64)),
        Some(ms) if ms > 0 => Ok(Some(ms)),
        Some(ms) => Err(EnqueueError::invalid(
            "timeout_ms",
            format!("must be positive, got {ms}"),
        )),
    }
}

/// A sequence key: 1 to 512 bytes of text.
fn sequence(sequence: Option<String>) -> Result<Option<String>, EnqueueError> {
    let Some(key) = sequence else {
        return Ok(None);
    };
    if key.is_empty() || key.len() > 512 {
        return Err(EnqueueError::invalid("sequence", "must be 1 to 512 bytes"));
    }
    check_text("sequence", &key)?;
    Ok(Some(key))
}

/// Queue names: 1 to 100 of `A-Z a-z 0-9 _ - . :`.
pub fn check_queue_name(queue: &str) -> Result<(), EnqueueError> {
    let ok = !queue.is_empty()
        && queue.len() <= 100
        && queue
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(EnqueueError::invalid(
            "queue",
            "must be 1 to 100 of the characters A-Z a-z 0-9 _ - . :",
        ))
    }
}

fn check_unique(unique: &UniqueOptions) -> Result<(), EnqueueError> {
    if unique.key.is_empty() || unique.key.len() > 512 {
        return Err(EnqueueError::invalid(
            "unique.key",
            "must be 1 to 512 bytes",
        ));
    }
    check_text("unique.key", &unique.key)?;
    if unique.window.is_some_and(|w| w.as_secs() == 0) {
        return Err(EnqueueError::invalid(
            "unique.window",
            "must be at least one second",
        ));
    }
    Ok(())
}
