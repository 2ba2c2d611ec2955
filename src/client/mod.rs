//! The client commands: the HTTP API from the terminal. Errors are one readable line (the
//! server's problem detail and code), and `-o json` prints the API's JSON for scripts.
//!
//! A file per resource, as the API has a file per route (`api/src/routes/`): `jobs`,
//! `events`, `queues` (and stats), `schedules`, `sweeps`; tokens are in `crate::tokens`.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::cli::{ClientArgs, Output};

mod events;
mod jobs;
mod queues;
mod schedules;
mod sweeps;

pub use events::events;
pub use jobs::jobs;
pub use queues::{queues, stats};
pub use schedules::schedules;
pub use sweeps::sweeps;

/// The API, as a client sees it.
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    pub output: Output,
}

impl Api {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Api> {
        Api::with(&args.server, args.token.clone(), args.output)
    }

    pub fn with(server: &str, token: Option<String>, output: Output) -> anyhow::Result<Api> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server must be an http:// or https:// URL, got {server:?}");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Api {
            base,
            token,
            http,
            output,
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends a request and returns its JSON body (`null` for an empty one); a problem
    /// becomes an error with its detail and code.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.request(method, path).timeout(Duration::from_secs(60));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let text = response.text().await.context("reading the response")?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).context("the server's answer is not JSON");
        }
        Err(problem(status, &text))
    }

    fn unreachable(&self, error: reqwest::Error) -> anyhow::Error {
        if error.is_connect() || error.is_timeout() {
            anyhow::anyhow!(
                "cannot reach Longshore at {} (is `longshore serve` running? set --server or LONGSHORE_SERVER)",
                self.base
            )
        } else {
            anyhow::Error::new(error).context(format!("request to {} failed", self.base))
        }
    }

    pub fn print(&self, value: &Value, table: impl FnOnce(&Value)) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Table => table(value),
        }
    }
}

fn problem(status: StatusCode, text: &str) -> anyhow::Error {
    match serde_json::from_str::<Value>(text) {
        Ok(p) if p.get("detail").is_some() => {
            let detail = p["detail"].as_str().unwrap_or_default();
            let code = p["code"].as_str().unwrap_or("error");
            anyhow::anyhow!("{detail} ({code}, HTTP {})", status.as_u16())
        }
        _ => anyhow::anyhow!(
            "the server answered HTTP {}: {}",
            status.as_u16(),
            text.trim()
        ),
    }
}

/// Prints `value` as JSON, or as `table` draws it.
pub(crate) fn print(output: Output, value: &Value, table: impl FnOnce(&Value)) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Table => table(value),
    }
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_rows(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count().min(60));
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let c: String = c.chars().take(60).collect();
                format!("{c:<width$}", width = widths[i])
            })
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}
fn encode_query(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `s` as one URL path segment: unreserved characters as they are, every other byte
/// percent-encoded.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
