//! Webhook deliveries: each delivery of a push or an event to an endpoint is a job of kind
//! `longshore.webhook`, made by the [`relay::Relay`] and run here.
//!
//! An attempt signs the message (Standard Webhooks, [`sign`]) with the endpoint's secret, and
//! its previous one during a rotation's grace, and POSTs it through the egress guard. What
//! the endpoint answers decides: 2xx delivered; 5xx, 408, 429 and no answer retried on
//! [`longshore_jobs::webhook::RETRY_SCHEDULE`] (or after the `Retry-After` of a 429 or 503);
//! 410 disables the endpoint; any other answer (3xx included: redirects are not followed)
//! fails the delivery for good. Every attempt goes to the endpoint's delivery log.
//!
//! Each endpoint has a circuit breaker: after `breaker_failures` failures in a row it opens
//! for `breaker_cooldown` (`endpoint.failing`), during which its deliveries wait without
//! spending attempts; then one delivery probes it, and a success closes it
//! (`endpoint.recovered`). An endpoint failing for `disable_after` is disabled
//! (`endpoint.disabled`). An ordered endpoint gets a key's deliveries one after another.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use longshore_jobs::secret::Keyring;
use longshore_jobs::webhook::{DeliveryAttempt, Endpoint, RETRY_SCHEDULE};
use longshore_jobs::{JobContext, JobError, JobResult, Kind, KindOptions, Store, StoreError};
use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use longshore_jobs::telemetry::WEBHOOK_ENDPOINT;
use tracing::Instrument;

use super::http::{Verdict, read_answer};
use super::trace_context::{client_span, record_delivery, traceparent};
use crate::egress::{self, Egress};

pub mod relay;
pub mod sign;

/// The queue deliveries run on, worked by every worker process.
pub const QUEUE: &str = "webhooks";

/// How deliveries are made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Deliveries one process makes at once. Defaults to 16.
    pub concurrency: u32,
    /// How long one request may take. Defaults to 10 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The delays between attempts. Defaults to 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    #[serde(with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// Failures in a row that open an endpoint's breaker. Defaults to 5.
    pub breaker_failures: u32,
    /// How long an open breaker waits before a probe. Defaults to 30 s.
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// An endpoint failing for this long is disabled. Defaults to 5 days.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// How long a rotated secret keeps signing beside the new one. Defaults to 24 h.
    #[serde(with = "humantime_serde")]
    pub rotation_grace: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            concurrency: 16,
            timeout: Duration::from_secs(10),
            retry_schedule: RETRY_SCHEDULE.to_vec(),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            rotation_grace: Duration::from_secs(24 * 3600),
        }
    }
}

impl WebhooksConfig {
    /// Checks the config, naming the bad field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, message: &str| Err((field.to_owned(), message.to_owned()));
        if !(1..=1000).contains(&self.concurrency) {
            return bad("concurrency", "must be 1 to 1000");
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(300) {
            return bad("timeout", "must be 100ms to 5min");
        }
        if self.retry_schedule.is_empty() || self.retry_schedule.len() > 50 {
            return bad("retry_schedule", "give 1 to 50 delays");
        }
        if self
            .retry_schedule
            .iter()
            .any(|d| *d > Duration::from_secs(7 * 24 * 3600))
        {
            return bad("retry_schedule", "each delay must be at most 7 days");
        }
        if !(1..=1000).contains(&self.breaker_failures) {
            return bad("breaker_failures", "must be 1 to 1000");
        }
        Ok(())
    }
}

/// A list of durations written as humantime strings (`["5s", "5m"]`).
mod durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            value
                .iter()
                .map(|d| humantime_serde::re::humantime::format_duration(*d).to_string()),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let value: Vec<humantime_serde::Serde<Duration>> = Deserialize::deserialize(d)?;
        Ok(value.into_iter().map(|v| v.into_inner()).collect())
    }
}

/// What a delivery job carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverArgs {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// The message's id, sent as `webhook-id`: the same on every attempt and redelivery, so
    /// the receiver can drop a duplicate.
    pub message_id: String,
    /// What is delivered: a push kind or an event type (the body's `type`).
    pub event_type: String,
    /// The body's `data`.
    pub data: serde_json::Value,
    /// When the message happened (the body's `timestamp`).
    pub occurred_at: chrono::DateTime<Utc>,
    /// On an ordered endpoint, deliveries of one key go one after another.
    pub order_key: String,
    /// The message's position in its log, ordering deliveries of one key.
    pub seq: i64,
}

/// `longshore.webhook`: one delivery.
pub struct Deliver {
    config: WebhooksConfig,
    keyring: Keyring,
    egress: Egress,
    http: reqwest::Client,
    limits: Mutex<HashMap<Uuid, Instant>>,
}

impl Deliver {
    /// The kind, sealing and opening secrets with `keyring`, dialling through `egress`.
    pub fn new(config: WebhooksConfig, keyring: Keyring, egress: Egress) -> Deliver {
        let http = egress.client(config.timeout);
        Deliver {
            config,
            keyring,
            egress,
            http,
            limits: Mutex::new(HashMap::new()),
        }
    }

    /// The delay before attempt `attempt + 1`, spread by ±10 %.
    fn backoff(&self, attempt: u32) -> Duration {
        let schedule = &self.config.retry_schedule;
        let base = schedule[(attempt as usize).saturating_sub(1).min(schedule.len() - 1)];
        base.mul_f64(rand::rng().random_range(0.9..=1.1))
    }

    /// How long this delivery must wait for the endpoint's rate limit; reserves its slot
    /// when it need not wait.
    fn rate_wait(&self, endpoint: &Endpoint) -> Option<Duration> {
        let per_second = u32::try_from(endpoint.rate_limit?)
            .ok()
            .filter(|r| *r > 0)?;
        let gap = Duration::from_secs(1) / per_second;
        let mut next = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let slot = next.get(&endpoint.id).copied().unwrap_or(now).max(now);
        if slot > now + Duration::from_millis(5) {
            return Some(slot - now);
        }
        next.insert(endpoint.id, slot + gap);
        None
    }

    /// The secrets that sign: the current one, and the previous one during its grace.
    fn secrets(&self, endpoint: &Endpoint) -> Result<Vec<String>, JobError> {
        let aad = Endpoint::secret_aad(endpoint.id);
        let mut secrets = vec![
            self.keyring
                .open(&endpoint.secret, &aad)
                .map_err(JobError::fatal)?,
        ];
        if let (Some(previous), Some(until)) = (&endpoint.previous_secret, endpoint.previous_until)
            && until > Utc::now()
        {
            secrets.push(self.keyring.open(previous, &aad).map_err(JobError::fatal)?);
        }
        Ok(secrets)
    }

    /// Writes an event about the endpoint.
    async fn endpoint_event(store: &Store, event_type: &str, endpoint: &Endpoint, detail: &str) {
        let data = serde_json::json!({
            "endpoint_id": endpoint.id, "url": endpoint.url, "detail": detail,
        });
        if let Err(error) = store.write_event(event_type, Some(QUEUE), None, data).await {
            tracing::warn!(%error, event_type, "cannot write an endpoint event");
        }
    }

    /// A failed attempt: counts toward the breaker, and disables an endpoint failing too long.
    async fn failed(
        &self,
        store: &Store,
        endpoint: &Endpoint,
        why: &str,
    ) -> Result<bool, StoreError> {
        let open_until = Utc::now()
            + chrono::Duration::from_std(self.config.breaker_cooldown).unwrap_or_default();
        let threshold = i32::try_from(self.config.breaker_failures).unwrap_or(i32::MAX);
        let Some(now) = store
            .endpoint_failed(endpoint.id, threshold, open_until)
            .await?
        else {
            return Ok(false);
        };
        if now.consecutive_failures == threshold {
            Self::endpoint_event(store, "endpoint.failing", &now, why).await;
        }
        let failing_for = now
            .failing_since
            .and_then(|since| (Utc::now() - since).to_std().ok())
            .unwrap_or_default();
        if failing_for >= self.config.disable_after {
            let reason = format!(
                "failing for {}: {why}",
                humantime_serde::re::humantime::format_duration(failing_for)
            );
            if store.disable_endpoint(endpoint.id, &reason).await? {
                Self::endpoint_event(store, "endpoint.disabled", &now, &reason).await;
            }
            return Ok(true);
        }
        Ok(false)
    }
}

impl Kind for Deliver {
    const NAME: &'static str = "longshore.webhook";
    type Args = DeliverArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            queue: QUEUE.to_owned(),
            max_attempts: self.config.retry_schedule.len() as u32 + 1,
            timeout: Some(self.config.timeout + Duration::from_secs(5)),
            ..KindOptions::default()
        }
    }

    async fn run(&self, job: JobContext, args: DeliverArgs) -> JobResult {
        let store = job.client.store();
        let Some(endpoint) = store
            .endpoint(args.endpoint_id)
            .await
            .map_err(JobError::retry)?
        else {
            return Err(JobError::fatal("the endpoint was deleted"));
        };
        if !endpoint.enabled {
            return Err(JobError::fatal(format!(
                "the endpoint is disabled{}",
                endpoint
                    .disabled_reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )));
        }
        if endpoint.ordered
            && store
                .earlier_delivery_pending(endpoint.id, &args.order_key, args.seq)
                .await
                .map_err(JobError::retry)?
        {
            return Err(JobError::snooze(Duration::from_millis(500)));
        }
        if let Some(until) = endpoint.breaker_until {
            let wait = (until - Utc::now()).to_std().unwrap_or_default();
            if !wait.is_zero() {
                return Err(JobError::snooze(wait));
            }
            // Half-open: one delivery probes, the others wait for its answer.
            let open_until = Utc::now()
                + chrono::Duration::from_std(self.config.breaker_cooldown).unwrap_or_default();
            if !store
                .take_probe(endpoint.id, open_until)
                .await
                .map_err(JobError::retry)?
            {
                return Err(JobError::snooze(Duration::from_millis(500)));
            }
        }
        if let Some(wait) = self.rate_wait(&endpoint) {
            return Err(JobError::snooze(wait));
        }
        let secrets = self.secrets(&endpoint)?;
        let body = serde_json::to_vec(&serde_json::json!({
            "type": args.event_type,
            "timestamp": args.occurred_at.to_rfc3339(),
            "data": args.data,
        }))
        .map_err(JobError::fatal)?;
        let timestamp = Utc::now().timestamp();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let signature = sign::header(&refs, &args.message_id, timestamp, &body);
        let url: reqwest::Url = endpoint.url.parse().map_err(JobError::fatal)?;

        let span = client_span("POST", &url);
        span.record(WEBHOOK_ENDPOINT, endpoint.id.to_string());
        let started = Instant::now();
        let sent = match self.egress.check_url(&url) {
            Err(refused) => Err(refused.to_string()),
            Ok(()) => Ok(self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header("webhook-id", &args.message_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .header("traceparent", span.in_scope(|| traceparent(&job.metadata)))
                .body(body)
                .send()
                .instrument(span.clone())
                .await),
        };
        let latency_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let (status, verdict, error, response) = match sent {
            Err(refused) => (None, Verdict::Fail, Some(refused), None),
            Ok(Ok(answer)) => {
                let (status, verdict, text) = read_answer(answer).await;
                let error = (verdict != Verdict::Done).then(|| format!("HTTP {status}"));
                (Some(i32::from(status)), verdict, error, Some(text))
            }
            Ok(Err(error)) if egress::refused(&error) => {
                (None, Verdict::Fail, Some(egress::refusal(&error)), None)
            }
            Ok(Err(error)) => (
                None,
                Verdict::Retry(None),
                Some(format!("no answer: {}", error.without_url())),
                None,
            ),
        };
        let outcome = match verdict {
            Verdict::Done => "delivered",
            Verdict::Retry(_) => "retryable",
            Verdict::Gone | Verdict::Fail => "refused",
        };
        record_delivery(&span, Self::NAME, status.map(|s| s as u16), outcome);
        let attempt = DeliveryAttempt {
            id: 0,
            endpoint_id: endpoint.id,
            job_id: job.id.0,
            message_id: args.message_id.clone(),
            event_type: args.event_type.clone(),
            attempt: i32::try_from(job.attempt).unwrap_or(i32::MAX),
            at: Utc::now(),
            status,
            latency_ms,
            error: error.clone(),
            response,
        };
        if let Err(e) = store.record_delivery_attempt(&attempt).await {
            tracing::warn!(error = %e, "cannot write the delivery log");
        }
        let why = error.unwrap_or_default();
        match verdict {
            Verdict::Done => {
                if store
                    .endpoint_succeeded(endpoint.id)
                    .await
                    .map_err(JobError::retry)?
                {
                    Self::endpoint_event(
                        store,
                        "endpoint.recovered",
                        &endpoint,
                        "a delivery succeeded",
                    )
                    .await;
                }
                Ok(serde_json::json!({ "status": status, "latency_ms": latency_ms }))
            }
            Verdict::Gone => {
                let reason = "the endpoint answered 410 Gone";
                if store
                    .disable_endpoint(endpoint.id, reason)
                    .await
                    .map_err(JobError::retry)?
                {
                    Self::endpoint_event(store, "endpoint.disabled", &endpoint, reason).await;
                }
                Err(JobError::fatal(reason))
            }
            Verdict::Fail => {
                self.failed(store, &endpoint, &why)
                    .await
                    .map_err(JobError::retry)?;
                Err(JobError::fatal(why))
            }
            Verdict::Retry(after) => {
                if self
                    .failed(store, &endpoint, &why)
                    .await
                    .map_err(JobError::retry)?
                {
                    return Err(JobError::fatal(format!(
                        "{why}; the endpoint is now disabled"
                    )));
                }
                let delay = after.unwrap_or_else(|| self.backoff(job.attempt));
                Err(JobError::retry_after(why, delay))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_spans_about_a_day() {
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert!(total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(30 * 3600));
        WebhooksConfig::default().validate().unwrap();
    }
}
