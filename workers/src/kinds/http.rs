//! `http`: call a URL with a method, headers and a body, so that a handler can be a service
//! in any language. The answer is taken as a webhook delivery's is: 2xx completes the job;
//! 5xx, 408, 429 and no answer retry (after the `Retry-After` of a 429 or 503); any other
//! answer fails for good. Requests go through the egress guard, in the trace of the job's
//! `traceparent` (a new one when it has none).
//!
//! Headers that carry credentials (`authorization`, `proxy-authorization`, `cookie`,
//! `x-api-key`, and any named in `sensitive_headers`) are sealed when the job is stored
//! (see [`longshore_jobs::secret`]) and opened only to send them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use longshore_jobs::secret::Keyring;
use longshore_jobs::{JobContext, JobError, JobResult, Kind, KindOptions};
use serde::{Deserialize, Serialize};

use super::trace_context::{client_span, record_delivery, traceparent};
use crate::egress::{self, Egress};
use tracing::Instrument;

/// Headers sealed whatever the job says.
const SENSITIVE: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];
/// What a sealed header value starts with.
const SEALED: &str = "sealed:";
/// The purpose sealed header values are bound to.
const AAD: &str = "longshore.http.header";

/// What an `http` job carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpArgs {
    /// The URL, `http://` or `https://`.
    pub url: String,
    /// The method. Defaults to `POST`.
    #[serde(default = "post")]
    pub method: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// More headers to seal at rest besides the ones that always are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_headers: Vec<String>,
    /// A JSON body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// A text body (not with `json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn post() -> String {
    "POST".to_owned()
}

/// How an answer is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Done,
    /// Worth another attempt, after this delay when the endpoint asked for one.
    Retry(Option<Duration>),
    /// The endpoint is gone for good (410).
    Gone,
    /// Retrying cannot help.
    Fail,
}

/// The verdict on an answer: its status and its `Retry-After` (seconds or an HTTP date),
/// honoured on 429 and 503 up to a day.
pub fn verdict(status: u16, retry_after: Option<&str>) -> Verdict {
    match status {
        200..=299 => Verdict::Done,
        410 => Verdict::Gone,
        429 | 503 => Verdict::Retry(retry_after.and_then(parse_retry_after)),
        408 | 500..=599 => Verdict::Retry(None),
        _ => Verdict::Fail,
    }
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(delay.min(Duration::from_secs(24 * 3600)))
}

/// An answer's status, its verdict, and the first 1,024 characters of its body.
pub async fn read_answer(answer: reqwest::Response) -> (u16, Verdict, String) {
    let status = answer.status().as_u16();
    let retry_after = answer
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text: String = answer
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(1024)
        .collect();
    (status, verdict(status, retry_after.as_deref()), text)
}

/// `http`: one request.
pub struct Http {
    keyring: Keyring,
    egress: Egress,
    http: reqwest::Client,
}

impl Http {
    /// The kind, sealing headers with `keyring`, dialling through `egress`, each request
    /// within `timeout`.
    pub fn new(keyring: Keyring, egress: Egress, timeout: Duration) -> Http {
        Http {
            http: egress.client(timeout),
            keyring,
            egress,
        }
    }

    fn sensitive(args: &HttpArgs, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        SENSITIVE.contains(&name.as_str())
            || args
                .sensitive_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&name))
    }
}

impl Kind for Http {
    const NAME: &'static str = "http";
    type Args = HttpArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            max_attempts: 10,
            ..KindOptions::default()
        }
    }

    fn seal_args(&self, args: serde_json::Value) -> Result<serde_json::Value, String> {
        let mut parsed: HttpArgs = serde_json::from_value(args).map_err(|e| e.to_string())?;
        longshore_jobs::webhook::check_url("args.url", &parsed.url).map_err(|e| e.to_string())?;
        reqwest::Method::from_bytes(parsed.method.as_bytes())
            .map_err(|_| format!("args.method: {:?} is not an HTTP method", parsed.method))?;
        if parsed.json.is_some() && parsed.body.is_some() {
            return Err("args: give json or body, not both".to_owned());
        }
        let names: Vec<String> = parsed.headers.keys().cloned().collect();
        for name in names {
            if !Self::sensitive(&parsed, &name) {
                continue;
            }
            let value = parsed.headers[&name].clone();
            if value.starts_with(SEALED) {
                continue;
            }
            let sealed = self
                .keyring
                .seal(&value, AAD)
                .map_err(|e| format!("args.headers.{name}: {e}"))?;
            parsed.headers.insert(name, format!("{SEALED}{sealed}"));
        }
        serde_json::to_value(parsed).map_err(|e| e.to_string())
    }

    async fn run(&self, job: JobContext, args: HttpArgs) -> JobResult {
        let url: reqwest::Url = args.url.parse().map_err(JobError::fatal)?;
        self.egress.check_url(&url).map_err(JobError::fatal)?;
        let method =
            reqwest::Method::from_bytes(args.method.as_bytes()).map_err(JobError::fatal)?;
        let span = client_span(method.as_str(), &url);
        let mut request = self.http.request(method, url);
        for (name, value) in &args.headers {
            let value = match value.strip_prefix(SEALED) {
                Some(sealed) => self.keyring.open(sealed, AAD).map_err(JobError::fatal)?,
                None => value.clone(),
            };
            request = request.header(name.as_str(), value);
        }
        // In the trace the job carries (a lifecycle event's, say), unless the job sets one.
        if !args
            .headers
            .keys()
            .any(|h| h.eq_ignore_ascii_case("traceparent"))
        {
            request = request.header("traceparent", span.in_scope(|| traceparent(&job.metadata)));
        }
        if let Some(json) = &args.json {
            request = request.json(json);
        } else if let Some(body) = &args.body {
            request = request.body(body.clone());
        }
        let answer = match request.send().instrument(span.clone()).await {
            Ok(answer) => answer,
            Err(error) if egress::refused(&error) => {
                record_delivery(&span, Self::NAME, None, "refused");
                return Err(JobError::fatal(egress::refusal(&error)));
            }
            Err(error) => {
                record_delivery(&span, Self::NAME, None, "retryable");
                return Err(JobError::retry(format!(
                    "no answer: {}",
                    error.without_url()
                )));
            }
        };
        let (status, verdict, text) = read_answer(answer).await;
        let outcome = match verdict {
            Verdict::Done => "delivered",
            Verdict::Retry(_) => "retryable",
            Verdict::Gone | Verdict::Fail => "refused",
        };
        record_delivery(&span, Self::NAME, Some(status), outcome);
        let failed = || format!("HTTP {status}: {}", text.trim());
        match verdict {
            Verdict::Done => Ok(serde_json::json!({ "status": status, "body": text })),
            Verdict::Retry(Some(after)) => Err(JobError::retry_after(failed(), after)),
            Verdict::Retry(None) => Err(JobError::retry(failed())),
            Verdict::Gone | Verdict::Fail => Err(JobError::fatal(failed())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_the_contract_says() {
        assert_eq!(verdict(200, None), Verdict::Done);
        assert_eq!(verdict(204, None), Verdict::Done);
        assert_eq!(verdict(410, None), Verdict::Gone);
        assert_eq!(verdict(500, None), Verdict::Retry(None));
        assert_eq!(verdict(408, None), Verdict::Retry(None));
        assert_eq!(
            verdict(429, Some("7")),
            Verdict::Retry(Some(Duration::from_secs(7)))
        );
        assert_eq!(
            verdict(503, Some("999999999")),
            Verdict::Retry(Some(Duration::from_secs(24 * 3600)))
        );
        assert_eq!(verdict(429, Some("soon")), Verdict::Retry(None));
        for status in [301, 302, 400, 401, 404, 422] {
            assert_eq!(verdict(status, None), Verdict::Fail, "{status}");
        }
    }

    #[test]
    fn credentials_are_sealed_at_rest_and_nothing_else() {
        let keyring = Keyring::parse(&["k:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="]).unwrap();
        let kind = Http::new(keyring.clone(), Egress::default(), Duration::from_secs(1));
        let args = serde_json::json!({
            "url": "https://api.example.com/x",
            "headers": {"Authorization": "Bearer CANARY", "X-Trace": "t1", "X-Secret": "SECOND-CANARY"},
            "sensitive_headers": ["x-secret"],
        });
        let sealed = kind.seal_args(args).unwrap();
        let text = sealed.to_string();
        // Canaries long enough that no ciphertext spells them by chance ("s2" once did).
        assert!(!text.contains("CANARY"), "{text}");
        assert_eq!(sealed["headers"]["X-Trace"], "t1");
        let auth = sealed["headers"]["Authorization"].as_str().unwrap();
        let opened = keyring
            .open(auth.strip_prefix(SEALED).unwrap(), AAD)
            .unwrap();
        assert_eq!(opened, "Bearer CANARY");
        // Sealing what is sealed changes nothing (an edit that keeps the header).
        assert_eq!(kind.seal_args(sealed.clone()).unwrap(), sealed);
        let without_key = Http::new(
            Keyring::default(),
            Egress::default(),
            Duration::from_secs(1),
        );
        let refused = without_key
            .seal_args(serde_json::json!({"url": "https://x/", "headers": {"cookie": "c"}}))
            .unwrap_err();
        assert!(refused.contains("args.headers.cookie"), "{refused}");
        assert!(
            kind.seal_args(serde_json::json!({"url": "ftp://x"}))
                .is_err()
        );
    }
}
