//! Lifecycle events: what happened to a user (`user.deleted`, `user.blocked`, …), each
//! becoming exactly one durable `lifecycle` job that runs the cascade configured for its type.
//!
//! Events arrive from a Redis Stream (the ingesters of `longshore-workers`) or through the API;
//! both check them here, the same way, and both give the job a unique key that no redelivery
//! can take twice (`{stream}:{entry_id}`, or `lifecycle:{event_id}` from the API). The jobs of
//! one user share the sequence `user:{user_id}`, so a user's events run in the order they came.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::EnqueueRequest;
use crate::job::{UniqueOptions, UniqueScope};

/// The kind of the job an event becomes.
pub const KIND: &str = "lifecycle";
/// The stream ingesters read when the config names none.
pub const DEFAULT_STREAM: &str = "user:lifecycle_events";
/// The most events one API request may send.
pub const MAX_BATCH: usize = 1000;
/// The latest `occurred_at_ms` accepted: the last millisecond of the year 9999.
const MAX_OCCURRED_AT_MS: i64 = 253_402_300_799_999;

/// A user lifecycle event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleEvent {
    /// What happened, e.g. `user.deleted`: a type the cascades know.
    pub event_type: String,
    /// The user it happened to.
    pub user_id: String,
    /// When, in milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    /// The service that said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Who did it: `user`, `admin`, `system`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_type: Option<String>,
    /// Their id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// Why, as a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// The W3C trace id (32 hex digits) of the request that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Why an event cannot be taken: the field, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The field, e.g. `occurred_at_ms`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

fn refuse(field: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        field,
        reason: reason.into(),
    }
}

/// Where an event came from: what makes its job's unique key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Origin {
    /// An entry of a Redis Stream.
    Stream {
        /// The stream's key.
        stream: String,
        /// The entry's id.
        entry_id: String,
    },
    /// A call to the API, with the caller's id for the event.
    Api {
        /// The caller's id for the event.
        event_id: String,
    },
}

impl Origin {
    /// The unique key of the job the event becomes.
    pub fn unique_key(&self) -> String {
        match self {
            Origin::Stream { stream, entry_id } => format!("{stream}:{entry_id}"),
            Origin::Api { event_id } => format!("lifecycle:{event_id}"),
        }
    }
}

/// What a `lifecycle` job carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleArgs {
    /// The event.
    pub event: LifecycleEvent,
    /// Where it came from.
    #[serde(flatten)]
    pub origin: Origin,
}

impl LifecycleEvent {
    /// Reads a stream entry's fields; unknown fields are ignored, as producers add some.
    pub fn from_fields(fields: &BTreeMap<String, String>) -> Result<LifecycleEvent, Refusal> {
        let required = |name: &'static str| {
            fields
                .get(name)
                .cloned()
                .ok_or_else(|| refuse(name, "is missing"))
        };
        let occurred = required("occurred_at_ms")?;
        let occurred_at_ms = occurred
            .parse::<i64>()
            .map_err(|_| refuse("occurred_at_ms", "must be an integer of milliseconds"))?;
        let optional = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        Ok(LifecycleEvent {
            event_type: required("event_type")?,
            user_id: required("user_id")?,
            occurred_at_ms,
            source: optional("source"),
            actor_type: optional("actor_type"),
            actor_id: optional("actor_id"),
            reason_code: optional("reason_code"),
            trace_id: optional("trace_id"),
        })
    }

    /// Checks every field; `known` says whether a cascade handles an event type.
    pub fn check(&self, known: impl Fn(&str) -> bool) -> Result<(), Refusal> {
        let event_type = &self.event_type;
        let type_ok = !event_type.is_empty()
            && event_type.len() <= 100
            && event_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
        if !type_ok {
            return Err(refuse(
                "event_type",
                "must be 1 to 100 of A-Z a-z 0-9 . _ - :",
            ));
        }
        if !known(event_type) {
            return Err(refuse(
                "event_type",
                format!("no cascade handles {event_type:?}"),
            ));
        }
        text("user_id", &self.user_id)?;
        if !(1..=MAX_OCCURRED_AT_MS).contains(&self.occurred_at_ms) {
            return Err(refuse(
                "occurred_at_ms",
                "must be a positive integer of milliseconds since the Unix epoch, before the year 10000",
            ));
        }
        for (field, value) in [
            ("source", &self.source),
            ("actor_type", &self.actor_type),
            ("actor_id", &self.actor_id),
            ("reason_code", &self.reason_code),
        ] {
            if let Some(value) = value {
                text(field, value)?;
            }
        }
        if let Some(trace) = &self.trace_id {
            let hex = trace.len() == 32
                && trace
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex || trace.bytes().all(|b| b == b'0') {
                return Err(refuse(
                    "trace_id",
                    "must be a W3C trace id: 32 lowercase hex digits, not all zero",
                ));
            }
        }
        Ok(())
    }

    /// When it happened.
    pub fn occurred_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.occurred_at_ms)
    }

    /// The value of a field by name, for templates and bound parameters; `None` for a field
    /// that is not set or does not exist.
    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "event_type" => Some(self.event_type.clone()),
            "user_id" => Some(self.user_id.clone()),
            "occurred_at_ms" => Some(self.occurred_at_ms.to_string()),
            "source" => self.source.clone(),
            "actor_type" => self.actor_type.clone(),
            "actor_id" => self.actor_id.clone(),
            "reason_code" => self.reason_code.clone(),
            "trace_id" => self.trace_id.clone(),
            _ => None,
        }
    }

    /// The names [`LifecycleEvent::field`] knows.
    pub const FIELDS: [&'static str; 8] = [
        "event_type",
        "user_id",
        "occurred_at_ms",
        "source",
        "actor_type",
        "actor_id",
        "reason_code",
        "trace_id",
    ];

    /// The job this event becomes (on the `lifecycle` kind's queue): unique by its origin for as long as the job is kept, in
    /// its user's sequence, in the trace of its `trace_id` when it has one.
    pub fn request(&self, origin: Origin) -> EnqueueRequest {
        let mut metadata = serde_json::Map::new();
        if let Some(trace) = &self.trace_id {
            // The event's trace, with a span id of the ingest's own.
            let span = uuid::Uuid::new_v4().simple().to_string();
            metadata.insert(
                "traceparent".into(),
                format!("00-{trace}-{}-01", &span[..16]).into(),
            );
        }
        if let Origin::Stream { stream, entry_id } = &origin {
            metadata.insert(
                "stream_entry".into(),
                serde_json::json!({ "stream": stream, "id": entry_id }),
            );
        }
        let args = LifecycleArgs {
            event: self.clone(),
            origin: origin.clone(),
        };
        EnqueueRequest {
            unique: Some(UniqueOptions {
                key: origin.unique_key(),
                scope: UniqueScope::Any,
                window: None,
            }),
            sequence: Some(format!("user:{}", self.user_id)),
            metadata: Some(metadata.into()),
            ..EnqueueRequest::new(KIND, serde_json::to_value(args).unwrap_or_default())
        }
    }
}

fn text(field: &'static str, value: &str) -> Result<(), Refusal> {
    if value.is_empty() || value.len() > 200 {
        return Err(refuse(field, "must be 1 to 200 bytes"));
    }
    if value.contains('\0') {
        return Err(refuse(field, "must not contain a NUL character"));
    }
    Ok(())
}

/// What an ingester reports of itself and its stream, for `GET /ingesters`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IngesterReport {
    /// The stream's key.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// This process's consumer in the group.
    pub consumer: String,
    /// Where the dead letters go.
    pub dead_letter: String,
    /// Whether this process reaches Redis now.
    pub connected: bool,
    /// The last error talking to Redis or storing jobs, while it lasts.
    pub error: Option<String>,
    /// The group's consumers, with their pending entries and idle time.
    pub consumers: Vec<ConsumerReport>,
    /// Entries of the stream not yet delivered to the group (`None`: Redis cannot tell).
    pub lag: Option<u64>,
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    /// How long the oldest pending entry has waited since its last delivery, in ms.
    pub oldest_pending_ms: Option<u64>,
    /// Entries in the dead-letter stream.
    pub dead_lettered: u64,
    /// The last entry delivered to the group, and when it was added to the stream.
    pub last_entry_id: Option<String>,
    /// When the last delivered entry was added (from its id).
    pub last_entry_at: Option<DateTime<Utc>>,
    /// Entries this process turned into jobs since it started.
    pub ingested: u64,
}

/// A consumer of a group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ConsumerReport {
    /// Its name.
    pub name: String,
    /// Entries it holds unacknowledged.
    pub pending: u64,
    /// Milliseconds since it last read.
    pub idle_ms: u64,
}

/// The running ingesters of a process, as the API reads them.
pub trait Ingesters: Send + Sync {
    /// A report per ingester.
    fn reports(&self) -> Pin<Box<dyn Future<Output = Vec<IngesterReport>> + Send + '_>>;
    /// What is degraded now (an ingester that cannot reach Redis), one line each.
    fn degraded(&self) -> Vec<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_and_checks_an_entry_naming_the_bad_field() {
        let known = |t: &str| t == "user.deleted";
        let good = fields(&[
            ("event_type", "user.deleted"),
            ("user_id", "42"),
            ("occurred_at_ms", "1764590000000"),
            ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("extra", "ignored"),
        ]);
        let event = LifecycleEvent::from_fields(&good).unwrap();
        event.check(known).unwrap();
        assert_eq!(event.field("user_id").as_deref(), Some("42"));
        for (pairs, field) in [
            (
                vec![("user_id", "1"), ("occurred_at_ms", "1")],
                "event_type",
            ),
            (
                vec![
                    ("event_type", "user.deleted"),
                    ("user_id", "1"),
                    ("occurred_at_ms", "1.5"),
                ],
                "occurred_at_ms",
            ),
            (
                vec![
                    ("event_type", "user.deleted"),
                    ("user_id", "1"),
                    ("occurred_at_ms", "-3"),
                ],
                "occurred_at_ms",
            ),
            (
                vec![
                    ("event_type", "user.nope"),
                    ("user_id", "1"),
                    ("occurred_at_ms", "5"),
                ],
                "event_type",
            ),
            (
                vec![
                    ("event_type", "user.deleted"),
                    ("user_id", ""),
                    ("occurred_at_ms", "5"),
                ],
                "user_id",
            ),
            (
                vec![
                    ("event_type", "user.deleted"),
                    ("user_id", "1"),
                    ("occurred_at_ms", "5"),
                    ("trace_id", "xyz"),
                ],
                "trace_id",
            ),
        ] {
            let refused = LifecycleEvent::from_fields(&fields(&pairs))
                .and_then(|e| e.check(known).map(|()| e))
                .unwrap_err();
            assert_eq!(refused.field, field, "{pairs:?}: {refused}");
        }
    }

    #[test]
    fn an_event_becomes_a_job_unique_by_its_origin_in_its_users_sequence() {
        let event = LifecycleEvent {
            event_type: "user.blocked".into(),
            user_id: "7".into(),
            occurred_at_ms: 1,
            source: None,
            actor_type: None,
            actor_id: None,
            reason_code: None,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        };
        let origin = Origin::Stream {
            stream: "s".into(),
            entry_id: "1-0".into(),
        };
        let request = event.request(origin);
        let unique = request.unique.unwrap();
        assert_eq!(
            (unique.key.as_str(), unique.scope),
            ("s:1-0", UniqueScope::Any)
        );
        assert_eq!(request.sequence.as_deref(), Some("user:7"));
        let parent = request.metadata.unwrap()["traceparent"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{parent}"
        );
        let args: LifecycleArgs = serde_json::from_value(request.args.unwrap()).unwrap();
        assert_eq!(args.event, event);
    }
}
