//! What operators read and change: job filters, edits, queue statistics, workers, API tokens,
//! the audit log, idempotency records and bulk operations. The SQL lives in the backends.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::id::{IdPrefix, JobId};
use crate::state::JobState;

/// Most path segments an args filter may have.
pub const MAX_ARGS_PATH: usize = 8;

/// Which jobs a list, a count or a bulk operation concerns. Every field narrows the set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobFilter {
    /// Any of these states.
    pub states: Vec<JobState>,
    /// This queue.
    pub queue: Option<String>,
    /// This kind.
    pub kind: Option<String>,
    /// Jobs with this tag.
    pub tag: Option<String>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
    /// Values inside the args: each path's scalar, as text, equals the value.
    pub args: Vec<ArgsMatch>,
    /// Only these jobs.
    pub ids: Vec<JobId>,
    /// Only the jobs whose id starts with this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<IdPrefix>,
    /// Only the job enqueued with this unique key (which job a stream entry became).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Only the jobs whose last error contains this text (case as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `args.<path>=value`: the scalar at `path` inside a job's args, as text, equals `value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgsMatch {
    /// Object keys from the root, each of letters, digits, `_` or `-`.
    pub path: Vec<String>,
    /// The expected value: a string as is; numbers and booleans as written in JSON.
    pub value: String,
}

impl ArgsMatch {
    /// Parses `a.b.c`, refusing segments that are not plain keys.
    pub fn parse(path: &str, value: &str) -> Result<ArgsMatch, String> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.len() > MAX_ARGS_PATH {
            return Err(format!("at most {MAX_ARGS_PATH} path segments"));
        }
        for segment in &segments {
            let plain = !segment.is_empty()
                && segment.len() <= 64
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !plain {
                return Err(format!(
                    "path segment {segment:?} must be 1-64 letters, digits, '_' or '-'"
                ));
            }
        }
        if value.len() > 1024 {
            return Err("the value is longer than 1024 bytes".to_owned());
        }
        Ok(ArgsMatch {
            path: segments,
            value: value.to_owned(),
        })
    }

    /// The path as an SQLite JSON path, each segment quoted.
    pub(crate) fn json_path(&self) -> String {
        let mut path = String::from("$");
        for segment in &self.path {
            path.push_str(".\"");
            path.push_str(segment);
            path.push('"');
        }
        path
    }
}

impl JobFilter {
    /// Checks that every text of the filter can be compared in SQL (no NUL character), naming
    /// the parameter: `queue`, `kind`, `tag`, `unique_key` or `args.<path>`.
    pub fn validate(&self) -> Result<(), crate::error::EnqueueError> {
        use crate::limits::check_text;
        for (field, text) in [
            ("queue", &self.queue),
            ("kind", &self.kind),
            ("tag", &self.tag),
            ("unique_key", &self.unique_key),
            ("error", &self.error),
        ] {
            if let Some(text) = text {
                check_text(field, text)?;
            }
        }
        for m in &self.args {
            check_text(&format!("args.{}", m.path.join(".")), &m.value)?;
        }
        Ok(())
    }

    /// Whether the filter bounds the set by time or by ids, as a bulk operation requires.
    pub fn is_bounded(&self) -> bool {
        !self.ids.is_empty() || (self.created_after.is_some() && self.created_before.is_some())
    }
}

/// A change to a waiting job. Absent fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobEdit {
    /// New args (already checked against the kind).
    pub args: Option<serde_json::Value>,
    /// New priority, 0–9.
    pub priority: Option<i16>,
    /// New time to run.
    pub run_at: Option<DateTime<Utc>>,
    /// New attempt limit; not below the attempts already made.
    pub max_attempts: Option<i32>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// New metadata.
    pub metadata: Option<serde_json::Value>,
}

impl JobEdit {
    /// Checks the new values as an enqueue would (sizes, the time horizon, storable text).
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), crate::error::EnqueueError> {
        use crate::limits::{
            MAX_ARGS_BYTES, MAX_METADATA_BYTES, check_json, check_size, check_tags, check_time,
        };
        if let Some(args) = &self.args {
            check_size("args", args, MAX_ARGS_BYTES)?;
            check_json("args", args)?;
        }
        if let Some(at) = self.run_at {
            check_time("run_at", at, now)?;
        }
        if let Some(tags) = &self.tags {
            check_tags("tags", tags)?;
        }
        if let Some(metadata) = &self.metadata {
            if !metadata.is_object() {
                return Err(crate::error::EnqueueError::invalid(
                    "metadata",
                    "must be a JSON object",
                ));
            }
            check_size("metadata", metadata, MAX_METADATA_BYTES)?;
            check_json("metadata", metadata)?;
        }
        Ok(())
    }
}

/// A queue as operators see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// Its name.
    pub name: String,
    /// Whether workers skip it.
    pub paused: bool,
    /// Its global limit of running jobs across all workers, if any.
    pub concurrency: Option<i32>,
    /// Jobs by state.
    pub counts: std::collections::BTreeMap<JobState, i64>,
    /// Age in seconds of the longest-waiting available job.
    pub oldest_available_s: Option<f64>,
    /// Jobs completed in the last minute.
    pub completed_last_minute: i64,
    /// Live workers serving it.
    pub workers: i64,
}

/// A worker row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    /// Unique per process start.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its host.
    pub host: String,
    /// Its process id.
    pub pid: i32,
    /// Jobs it runs at once.
    pub concurrency: i32,
    /// Kinds it can run.
    pub kinds: Vec<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_seen_at: DateTime<Utc>,
    /// When it stopped cleanly.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Jobs it is running now.
    pub running: i64,
}

/// What an API token may do. Each scope includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read everything.
    Read,
    /// Read, and enqueue jobs.
    Enqueue,
    /// Enqueue, and act on jobs and queues (retry, cancel, delete, pause).
    Operate,
    /// Everything, including tokens.
    Admin,
}

impl Scope {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Enqueue => "enqueue",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "enqueue" => Ok(Scope::Enqueue),
            "operate" => Ok(Scope::Operate),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?}: expected read, enqueue, operate or admin"
            )),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored API token (never the token itself).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenRow {
    /// Its id.
    pub id: Uuid,
    /// A name for people.
    pub name: String,
    /// The first characters of the token.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenRow {
    /// Whether the token grants `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.revoked_at.is_none() && self.scopes.iter().any(|s| *s >= scope)
    }
}

/// One audited mutation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Monotonic id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `token:<name>` or `local` when auth is off.
    pub actor: String,
    /// What, e.g. `jobs.retry`.
    pub action: String,
    /// Which ids.
    pub targets: Vec<String>,
    /// Details, e.g. the filter of a bulk operation.
    pub detail: Option<serde_json::Value>,
    /// The request it came from.
    pub request_id: Option<String>,
}

/// An audit record about to be written.
#[derive(Clone, Debug, Default)]
pub struct NewAudit {
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Which ids.
    pub targets: Vec<String>,
    /// Details.
    pub detail: Option<serde_json::Value>,
    /// The request id.
    pub request_id: Option<String>,
}

/// What the first use of an idempotency key found.
#[derive(Clone, Debug, PartialEq)]
pub enum IdempotencyClaim {
    /// The key is new: run the request, then record its response.
    Fresh,
    /// The same request finished before: answer this again.
    Replay {
        /// Its status code.
        status: u16,
        /// Its body.
        body: String,
    },
    /// The same key is being processed right now.
    InFlight,
    /// The key was used with a different request.
    Mismatch,
}

/// A bulk action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Make failed, cancelled or finished jobs available again.
    Retry,
    /// Cancel waiting jobs; ask running ones to stop.
    Cancel,
    /// Delete jobs that are not running.
    Delete,
}

impl BulkAction {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Cancel => "cancel",
            BulkAction::Delete => "delete",
        }
    }
}

/// A bulk operation and its progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Its id.
    pub id: Uuid,
    /// What it does.
    pub action: BulkAction,
    /// Which jobs.
    pub filter: JobFilter,
    /// `running`, `completed` or `failed`.
    pub state: String,
    /// Jobs matched when it started.
    pub total: i64,
    /// Jobs acted on so far.
    pub done: i64,
    /// Jobs whose state did not allow the action.
    pub skipped: i64,
    /// Who started it.
    pub actor: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub error: Option<String>,
    /// The process running it (its lease: another process takes it over once it stops
    /// renewing it).
    pub owner: Option<String>,
    /// Where the run goes on: jobs older than this id (it walks the matching jobs newest
    /// first). `None`: from the newest.
    pub resume_before: Option<JobId>,
}

/// Whether `edit` may apply to a job in `state` that has made `attempt` attempts.
pub(crate) fn check_editable(
    id: JobId,
    state: JobState,
    attempt: i32,
    edit: &JobEdit,
) -> Result<(), StoreError> {
    if !state.is_pending() {
        return Err(StoreError::Conflict {
            id,
            state: state.to_string(),
            reason: "only a waiting job (scheduled, available or retryable) can be edited",
        });
    }
    if let Some(max) = edit.max_attempts
        && max <= attempt
    {
        return Err(StoreError::Conflict {
            id,
            state: state.to_string(),
            reason: "max_attempts must exceed the attempts already made",
        });
    }
    Ok(())
}

/// What a second use of an idempotency key gets. A key still in flight is 409 whatever the
/// body: the first request has not answered yet.
pub(crate) fn idempotency_answer(
    stored_hash: &str,
    request_hash: &str,
    status: Option<i32>,
    body: Option<String>,
) -> IdempotencyClaim {
    let (Some(status), Some(body)) = (status, body) else {
        return IdempotencyClaim::InFlight;
    };
    if stored_hash != request_hash {
        return IdempotencyClaim::Mismatch;
    }
    IdempotencyClaim::Replay {
        status: u16::try_from(status).unwrap_or(200),
        body,
    }
}

/// The prefix of every API token, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "lsh_";

/// A new random API token (shown once) and the SHA-256 hex digest stored in its place.
pub fn generate_token() -> (String, String) {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let secret: String = (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let token = format!("{TOKEN_PREFIX}{secret}");
    let hash = hash_token(&token);
    (token, hash)
}

/// The digest a token is stored and looked up by. Tokens are 238 random bits, so a plain
/// SHA-256 is enough: there is nothing to brute-force.
pub fn hash_token(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token row for a new token, with the plain token and its hash.
pub fn new_token(name: &str, scopes: Vec<Scope>) -> (TokenRow, String, String) {
    let (token, hash) = generate_token();
    let row = TokenRow {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        prefix: token[..TOKEN_PREFIX.len() + 6].to_owned(),
        scopes,
        created_at: Utc::now(),
        last_used_at: None,
        revoked_at: None,
    };
    (row, token, hash)
}
