//! The client commands: the HTTP API from the terminal. Errors are one readable line (the
//! server's problem detail and code, each field at fault) with the exit code of
//! `crate::exit`; `-o json` and `-o jsonl` print the API's JSON for scripts.
//!
//! A file per resource, as the API has a file per route (`api/src/routes/`): `jobs`,
//! `events`, `push`, `webhooks`, `queues` (with workers, ingesters and stats), `schedules`, `sweeps`, `operations`
//! (with the audit log); tokens are in `crate::tokens`. `output` draws what they print.

use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::cli::{ClientArgs, Output, PageArgs};
use crate::exit::{Exit, fail};

mod events;
mod jobs;
mod operations;
pub mod output;
mod push;
mod queues;
mod schedules;
mod sweeps;
mod webhooks;

pub use events::events;
pub use jobs::jobs;
pub use operations::{audit, operations};
pub use push::push;
pub use queues::{ingesters, queues, stats, workers};
pub use schedules::schedules;
pub use sweeps::sweeps;
pub use webhooks::webhooks;

/// The API, as a client sees it.
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    pub output: Output,
}

impl Api {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Api> {
        output::relative_times(args.relative);
        Api::with(&args.server, args.token.clone(), args.output)
    }

    pub fn with(server: &str, token: Option<String>, output: Output) -> anyhow::Result<Api> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(fail(
                Exit::Usage,
                format!("--server must be an http:// or https:// URL, got {server:?}"),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("longshore/", env!("CARGO_PKG_VERSION")))
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
    /// becomes an error with its detail, code and exit code.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.send(self.request(method, path), body).await
    }

    /// [`Api::call`] for a request built by the caller (extra headers).
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = request.timeout(Duration::from_secs(60));
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
            fail(
                Exit::Unavailable,
                format!(
                    "cannot reach Longshore at {} (is `longshore serve` running? set --server or LONGSHORE_SERVER)",
                    self.base
                ),
            )
        } else {
            anyhow::Error::new(error).context(format!("request to {} failed", self.base))
        }
    }

    /// Prints one value as `-o` says, `draw` drawing the table.
    pub fn print(&self, value: &Value, draw: impl FnOnce(&Value)) {
        output::one(self.output, value, draw);
    }

    /// Prints a list as `-o` says, `draw` drawing the table of its items.
    pub fn print_list(&self, items: &[Value], draw: impl FnOnce(&[Value])) {
        output::list(self.output, items, draw);
    }

    /// Reads a paged list (`{items, next_cursor}`) at `path` (a path with its query): one
    /// page, the page after `--cursor`, or with `--all` every page, each printed as it
    /// arrives. In a table the next cursor, if any, is said on stderr.
    pub async fn pages(
        &self,
        path: &str,
        page: &PageArgs,
        draw: impl Fn(&[Value], bool),
    ) -> anyhow::Result<()> {
        self.pages_by(path, page, ("cursor", "next_cursor"), draw)
            .await
    }

    /// [`Api::pages`] for a list whose cursor has other names: `(param, next)`, e.g. the
    /// audit log's `before` and `next_before`.
    pub async fn pages_by(
        &self,
        path: &str,
        page: &PageArgs,
        (param, next): (&str, &str),
        draw: impl Fn(&[Value], bool),
    ) -> anyhow::Result<()> {
        let join = if path.contains('?') { '&' } else { '?' };
        let mut cursor = page.cursor.clone();
        let mut first = true;
        let mut all = Vec::new();
        loop {
            let mut query = vec![("limit".to_owned(), page.limit.to_string())];
            if let Some(cursor) = &cursor {
                query.push((param.to_owned(), cursor.clone()));
            }
            let url = format!("{path}{join}{}", encode_query(&query));
            let answer = self.call(Method::GET, &url, None).await?;
            let items = output::items(&answer);
            cursor = match &answer[next] {
                Value::Null => None,
                value => Some(output::s(value)),
            };
            match (self.output, page.all) {
                // One JSON document: the page as the API sent it, or every item.
                (Output::Json, false) => {
                    output::one(Output::Json, &answer, |_| {});
                    return Ok(());
                }
                (Output::Json, true) => all.extend_from_slice(items),
                (Output::Jsonl, _) => output::list(Output::Jsonl, items, |_| {}),
                (Output::Table, _) => {
                    if !items.is_empty() || first {
                        draw(items, first);
                    }
                }
            }
            first = false;
            match &cursor {
                Some(_) if page.all => continue,
                Some(next) if self.output == Output::Table => {
                    eprintln!("more: --cursor {next}  (or --all)");
                }
                _ => {}
            }
            break;
        }
        if page.all && self.output == Output::Json {
            output::list(Output::Json, &all, |_| {});
        }
        Ok(())
    }
}

/// The error of a problem answer: its detail, each field at fault, its code; the exit code
/// by its status.
fn problem(status: StatusCode, text: &str) -> anyhow::Error {
    let exit = match status.as_u16() {
        400 | 413 | 415 | 422 => Exit::Usage,
        401 | 403 => Exit::Denied,
        404 => Exit::NotFound,
        409 => Exit::Conflict,
        502..=504 => Exit::Unavailable,
        _ => Exit::Failure,
    };
    let message = match serde_json::from_str::<Value>(text) {
        Ok(p) if p.get("detail").is_some() => {
            let mut line = p["detail"].as_str().unwrap_or_default().to_owned();
            let fields = p["errors"].as_array().map_or(&[][..], Vec::as_slice);
            if fields.len() > 1 {
                for field in fields {
                    line.push_str(&format!(
                        "\n  {}: {}",
                        output::s(&field["field"]),
                        output::s(&field["message"])
                    ));
                }
                line.push('\n');
            }
            let code = p["code"].as_str().unwrap_or("error");
            line.push_str(&format!(" ({code}, HTTP {})", status.as_u16()));
            if status == StatusCode::UNAUTHORIZED {
                line.push_str("; pass --token or set LONGSHORE_TOKEN");
            }
            line
        }
        _ => format!(
            "the server answered HTTP {}: {}",
            status.as_u16(),
            output::cut(text.trim(), 200)
        ),
    };
    fail(exit, message)
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

/// A JSON value given on the command line: inline, `@file.json`, or `-` for stdin.
pub fn json_arg(flag: &str, text: &str) -> anyhow::Result<Value> {
    let (source, body) = match text {
        "-" => {
            let mut body = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut body)
                .with_context(|| format!("{flag} -: reading stdin"))?;
            ("stdin".to_owned(), body)
        }
        _ if text.starts_with('@') => {
            let path = &text[1..];
            let body = std::fs::read_to_string(path).map_err(|e| {
                fail(
                    Exit::Usage,
                    format!("{flag} {text}: cannot read {path}: {e}"),
                )
            })?;
            (path.to_owned(), body)
        }
        _ => ("the flag".to_owned(), text.to_owned()),
    };
    serde_json::from_str(&body).map_err(|e| {
        fail(
            Exit::Usage,
            format!("{flag}: {source} is not valid JSON: {e}"),
        )
    })
}

/// A time given on the command line (RFC 3339), for the API.
pub fn time_arg(flag: &str, text: &str) -> anyhow::Result<String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc).to_rfc3339())
        .map_err(|e| {
            fail(
                Exit::Usage,
                format!("{flag} {text:?}: not an RFC 3339 time ({e}), e.g. 2026-12-24T18:00:00Z"),
            )
        })
}

/// `longshore health`: 0 when `/readyz` answers ready, 6 otherwise.
pub async fn health(server: &str, timeout: Duration) -> anyhow::Result<()> {
    let api = Api::with(server, None, Output::Table)?;
    let url = format!("{}/readyz", api.base);
    let answer = api.http.get(&url).timeout(timeout).send().await;
    match answer {
        Ok(response) if response.status().is_success() => {
            output::line("ready");
            Ok(())
        }
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            Err(fail(
                Exit::Unavailable,
                format!(
                    "not ready (HTTP {}): {}",
                    status.as_u16(),
                    output::cut(body.trim(), 200)
                ),
            ))
        }
        Err(error) => Err(api.unreachable(error)),
    }
}

/// `longshore completions <shell>`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    let mut command = crate::cli::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "longshore", &mut script);
    output::line(String::from_utf8_lossy(&script).trim_end());
}
