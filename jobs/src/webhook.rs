//! Webhook endpoints: services that subscribed to kinds of pushes and of Longshore's own
//! events, each delivery to them a job (`longshore.webhook`, in `longshore-workers`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{EnqueueError, StoreError};
use crate::limits::check_text;
use crate::store::Store;

/// An endpoint as stored (its secrets sealed, see [`crate::secret`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries are POSTed: `http://` or `https://`.
    pub url: String,
    /// What it receives: push kinds and event types, exact, `prefix.*`, or `*` for all.
    pub kinds: Vec<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// The most deliveries per second, when limited.
    pub rate_limit: Option<i32>,
    /// Whether a delivery waits for the previous one of its key (a push's user, an event's
    /// job) to be delivered or given up.
    pub ordered: bool,
    /// The signing secret, sealed.
    pub secret: String,
    /// The secret it replaced, sealed, kept signing beside it until `previous_until`.
    pub previous_secret: Option<String>,
    /// When the previous secret stops signing.
    pub previous_until: Option<DateTime<Utc>>,
    /// Failed deliveries in a row.
    pub consecutive_failures: i32,
    /// Since when every delivery has failed, while they do.
    pub failing_since: Option<DateTime<Utc>>,
    /// While the breaker is open: until when no delivery is tried.
    pub breaker_until: Option<DateTime<Utc>>,
    /// Why it was disabled, if Longshore disabled it.
    pub disabled_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// Whether it receives deliveries of `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| kind_matches(k, kind))
    }

    /// The associated data its secrets are sealed with: a sealed secret opens only in the
    /// row it was sealed for.
    pub fn secret_aad(id: Uuid) -> String {
        format!("webhook_endpoints.secret:{id}")
    }
}

/// Whether the subscription `pattern` (exact, `prefix.*` or `*`) takes `kind`.
pub fn kind_matches(pattern: &str, kind: &str) -> bool {
    pattern == "*"
        || pattern == kind
        || pattern
            .strip_suffix('*')
            .is_some_and(|prefix| prefix.ends_with('.') && kind.starts_with(prefix))
}

/// What an operator gives to create or change an endpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointSpec {
    /// Where deliveries go.
    pub url: Option<String>,
    /// What it receives.
    pub kinds: Option<Vec<String>>,
    /// Whether deliveries are made.
    pub enabled: Option<bool>,
    /// The most deliveries per second; `Some(None)` removes the limit.
    pub rate_limit: Option<Option<i32>>,
    /// Whether deliveries wait for the previous one of their key.
    pub ordered: Option<bool>,
}

impl EndpointSpec {
    /// Checks what is given, naming the field.
    pub fn check(&self) -> Result<(), EnqueueError> {
        if let Some(url) = &self.url {
            check_url("url", url)?;
        }
        if let Some(kinds) = &self.kinds {
            if kinds.is_empty() || kinds.len() > 100 {
                return Err(EnqueueError::invalid("kinds", "give 1 to 100 kinds"));
            }
            for kind in kinds {
                let plain = kind.strip_suffix('*').unwrap_or(kind);
                if kind.len() > 100
                    || !plain
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
                    || (kind.ends_with('*') && !(plain.is_empty() || plain.ends_with('.')))
                    || kind.is_empty()
                {
                    return Err(EnqueueError::invalid(
                        "kinds",
                        format!(
                            "{kind:?}: a kind is a name (letters, digits, . _ : -), a prefix \
                             ending in .* (e.g. job.*), or *"
                        ),
                    ));
                }
            }
        }
        if let Some(Some(limit)) = self.rate_limit
            && !(1..=10_000).contains(&limit)
        {
            return Err(EnqueueError::invalid(
                "rate_limit",
                format!("must be 1 to 10000 deliveries a second, got {limit}"),
            ));
        }
        Ok(())
    }
}

/// Checks a delivery URL: `http(s)://host[:port]/path`, no credentials, at most 2,000 bytes.
/// Where it points is checked when it is dialled (see the egress guard).
pub fn check_url(field: &str, url: &str) -> Result<(), EnqueueError> {
    check_text(field, url)?;
    let bad = |why: &str| Err(EnqueueError::invalid(field, format!("{why}, got {url:?}")));
    if url.len() > 2000 {
        return bad("must be at most 2000 bytes");
    }
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return bad("must be an http:// or https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return bad("must name a host");
    }
    if authority.contains('@') {
        return bad("must not carry credentials");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces or control characters");
    }
    Ok(())
}

/// The setting holding the last push position the webhook relay has made deliveries for.
const PUSH_CURSOR: &str = "webhooks.push_cursor";
/// The setting holding the last event id the webhook relay has made deliveries for.
const EVENT_CURSOR: &str = "webhooks.event_cursor";

/// The relay's cursors (push position, event id), started at the present the first time they
/// are asked for. Creating an endpoint asks first, so every push and event stored after an
/// endpoint exists is ahead of the cursors, however late the relay first runs.
pub async fn relay_cursors(store: &Store) -> Result<(i64, i64), StoreError> {
    let read = |value: String| value.parse::<i64>().unwrap_or(0);
    // Read first: the horizons are worked out only the once a cursor is missing.
    let pushes = match store.setting(PUSH_CURSOR).await? {
        Some(value) => value,
        None => {
            let start = (store.push_horizon().await? - 1).to_string();
            store.setting_or_insert(PUSH_CURSOR, &start).await?
        }
    };
    let events = match store.setting(EVENT_CURSOR).await? {
        Some(value) => value,
        None => {
            let start = (store.event_horizon().await?.0 - 1).to_string();
            store.setting_or_insert(EVENT_CURSOR, &start).await?
        }
    };
    Ok((read(pushes), read(events)))
}

/// Moves the relay's cursors to the present unless an endpoint is enabled: the relay reads
/// nothing while none is, so an endpoint enabled then must not be handed what happened
/// before. Called before the endpoint is stored enabled, so that no relay pass in between
/// can hand it the past either.
pub async fn relay_from_now_unless_enabled(store: &Store) -> Result<(), StoreError> {
    if store.endpoints().await?.iter().any(|e| e.enabled) {
        return Ok(());
    }
    store
        .raise_setting(PUSH_CURSOR, store.push_horizon().await? - 1)
        .await?;
    store
        .raise_setting(EVENT_CURSOR, store.event_horizon().await?.0 - 1)
        .await
}

/// Moves the relay's cursors past what it made deliveries for.
pub async fn advance_relay_cursors(
    store: &Store,
    pushes: Option<i64>,
    events: Option<i64>,
) -> Result<(), StoreError> {
    if let Some(position) = pushes {
        store.raise_setting(PUSH_CURSOR, position).await?;
    }
    if let Some(id) = events {
        store.raise_setting(EVENT_CURSOR, id).await?;
    }
    Ok(())
}

/// The prefix of a signing secret (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and 24 random bytes in base64.
pub fn new_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut key = [0u8; 24];
    rand::rng().fill_bytes(&mut key);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// One delivery attempt, as the endpoint's delivery log keeps it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeliveryAttempt {
    /// Its id, in the order attempts were made.
    pub id: i64,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// The delivery job.
    pub job_id: Uuid,
    /// The message's id (`webhook-id`): the same on every attempt of one delivery.
    pub message_id: String,
    /// What was delivered: a push kind or an event type.
    pub event_type: String,
    /// Which attempt, from 1.
    pub attempt: i32,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The HTTP status, when an answer came.
    pub status: Option<i32>,
    /// How long it took.
    pub latency_ms: i32,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The start of the answer's body.
    pub response: Option<String>,
}

/// The delays between the attempts of a delivery: seconds, then minutes, then hours, for
/// about a day (as Svix's); eight attempts in all. Each is spread by ±10 %, and a
/// `Retry-After` from the endpoint (at most a day) replaces it.
pub const RETRY_SCHEDULE: [std::time::Duration; 7] = [
    std::time::Duration::from_secs(5),
    std::time::Duration::from_secs(5 * 60),
    std::time::Duration::from_secs(30 * 60),
    std::time::Duration::from_secs(2 * 3600),
    std::time::Duration::from_secs(5 * 3600),
    std::time::Duration::from_secs(10 * 3600),
    std::time::Duration::from_secs(10 * 3600),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_exactly_by_prefix_or_all() {
        assert!(kind_matches("*", "job.discarded"));
        assert!(kind_matches("job.*", "job.discarded"));
        assert!(!kind_matches("job.*", "jobs.x"));
        assert!(kind_matches("friend.request", "friend.request"));
        assert!(!kind_matches("friend", "friend.request"));
    }

    #[test]
    fn checks_urls_and_kinds_by_field() {
        for good in ["https://hooks.example.com/in", "http://10.0.0.1:8080/x?y=1"] {
            check_url("url", good).unwrap();
        }
        for bad in [
            "ftp://x",
            "https://",
            "https://user:pw@host/",
            "http://a b/",
            "https://x/\0",
            "javascript:alert(1)",
        ] {
            assert!(check_url("url", bad).is_err(), "{bad}");
        }
        let spec = |kinds: &[&str]| EndpointSpec {
            kinds: Some(kinds.iter().map(|k| k.to_string()).collect()),
            ..EndpointSpec::default()
        };
        spec(&["job.*", "*", "friend.request"]).check().unwrap();
        for bad in [&[][..], &["jo*"], &["a b"], &[""]] {
            assert!(spec(bad).check().is_err(), "{bad:?}");
        }
    }
}
