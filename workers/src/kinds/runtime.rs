//! `runtime.remove`: removes one game's stopped container through the runtime manager's HTTP
//! API, and writes the outcome to the game's operation log on a target database. The child
//! kind of the container sweep (`examples/sweeps`).
//!
//! `DELETE <url with {game_id}>`:
//! - 2xx: `removed`;
//! - 404 or 410: `already_removed`, a success (someone else removed it);
//! - 409: `conflict`, a success (another operation is on it; a later pass looks again);
//! - anything else, or no answer: `failed`, and the attempt is retried with backoff until the
//!   job is discarded.
//!
//! Each request says who sends it (`User-Agent: longshore/<version>`), carries an
//! `Idempotency-Key` that is the same on every attempt of the job for its game (a retry after
//! a lost answer is the same removal), and a W3C `traceparent`: in the trace the job carries
//! (the `traceparent` of its metadata, as its enqueuer stored it), else in a new trace.
//!
//! Before the request, the optional `check` statement (`$1` the game id) must return a row:
//! a child may run long after its pass chose it (retries, backoff), and a record that is no
//! longer eligible is left alone (`skipped`). Every outcome, failures included, runs the
//! configured `log` statement with `$1` the game id, `$2` the outcome, `$3` a detail, `$4` the
//! attempt and `$5` whether the removal is given up (see [`RuntimeConfig::log`]).
//!
//! The URL comes from the config file and redirects are not followed; a game id is 1 to 200
//! of `A-Z a-z 0-9 _ -`, so args cannot move the request to another path or host.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use longshore_jobs::Backoff;

use super::trace_context::traceparent;
use longshore_jobs::target::{TargetError, Targets};
use longshore_jobs::{JobContext, JobError, JobResult, Kind, KindOptions};

/// `[runtime]` in the config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The removal endpoint, with `{game_id}` where the id goes, e.g.
    /// `http://runtime-manager:8700/games/{game_id}/container`.
    pub url: String,
    /// The target database holding the operation log.
    pub target: String,
    /// The statement that writes an outcome, with text parameters (cast them as needed,
    /// e.g. `$4::int`), of which it uses those it needs:
    /// - `$1` `game_id`: the game id;
    /// - `$2` `outcome`: `removed`, `already_removed`, `conflict`, `skipped` or `failed`;
    /// - `$3` `detail`: the runtime manager's status and the start of its answer, or why
    ///   there was none;
    /// - `$4` `attempt`: this attempt's number, from 1;
    /// - `$5` `given_up`: `true` when this was the last attempt and it failed (the job is
    ///   discarded: no attempt follows), else `false`.
    pub log: String,
    /// A query that returns a row while the game's record is still eligible (`$1` the game
    /// id), checked before each request. Defaults to none (always eligible).
    #[serde(default)]
    pub check: Option<String>,
    /// How long one request may take. Defaults to 10 s.
    #[serde(default = "ten_seconds", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts before a removal is discarded. Defaults to 5.
    #[serde(default = "five")]
    pub max_attempts: u32,
    /// The delay after the first failed attempt, doubling up to an hour. Defaults to 30 s.
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    pub retry_base: Duration,
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
fn five() -> u32 {
    5
}

impl RuntimeConfig {
    /// Checks the URL and the target, naming the bad field.
    pub fn validate(
        &self,
        targets: &std::collections::BTreeMap<String, longshore_jobs::target::TargetDef>,
    ) -> Result<(), (String, String)> {
        let bad = |field: &str, message: &str| Err((field.to_owned(), message.to_owned()));
        let http = self.url.starts_with("http://") || self.url.starts_with("https://");
        // `{game_id}` must be in the path, after the host.
        let path_start = self.url.find("://").and_then(|scheme| {
            let rest = &self.url[scheme + 3..];
            rest.find('/').map(|slash| scheme + 3 + slash)
        });
        let placeholder = self.url.find("{game_id}");
        let in_path = matches!((path_start, placeholder), (Some(p), Some(g)) if g > p);
        if !http || !in_path {
            return bad(
                "url",
                "an http(s) URL with {game_id} in its path, e.g. http://runtime:8700/games/{game_id}/container",
            );
        }
        if !targets.contains_key(&self.target) {
            return bad("target", "names no target in [targets]");
        }
        if !(self.log.contains("$1") && self.log.contains("$2")) || params_used(&self.log) > 5 {
            return bad(
                "log",
                "use $1 (the game id) and $2 (the outcome); $3 (a detail), $4 (the attempt) \
                 and $5 (given up: true or false) are optional, and there is no $6",
            );
        }
        if self.max_attempts == 0 || self.timeout.is_zero() {
            return bad(
                "max_attempts",
                "max_attempts and timeout must be above zero",
            );
        }
        Ok(())
    }
}

impl RuntimeConfig {
    /// Prepares (without running) the `log` and `check` statements on the target, with the
    /// text parameters a removal binds, so a typo or a missing table is found at start. An
    /// unreachable target is an error of the field `target`.
    pub async fn check_statements(&self, targets: &Targets) -> Result<(), (String, String)> {
        let target = targets
            .get(&self.target)
            .await
            .map_err(|e| ("target".to_owned(), e.to_string()))?;
        let text = ["text"; 5];
        let refused =
            |field: &str, e: sqlx::Error| (field.to_owned(), format!("the target refuses it: {e}"));
        target
            .prepare(&self.log, &text[..params_used(&self.log).min(5)])
            .await
            .map_err(|e| refused("log", e))?;
        if let Some(check) = &self.check {
            target
                .prepare(check, &text[..1])
                .await
                .map_err(|e| refused("check", e))?;
        }
        Ok(())
    }
}

/// `{"game_id": 42}` (a number or a string).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveArgs {
    /// The game whose container goes.
    pub game_id: GameId,
}

/// A game id as the record gives it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GameId {
    /// A numeric id.
    Number(i64),
    /// A textual id.
    Text(String),
}

impl GameId {
    fn text(&self) -> String {
        match self {
            GameId::Number(n) => n.to_string(),
            GameId::Text(s) => s.clone(),
        }
    }
}

/// Removes containers through the runtime manager.
pub struct RemoveContainer {
    config: RuntimeConfig,
    targets: Arc<Targets>,
    http: reqwest::Client,
}

/// Who the requests say they come from.
const USER_AGENT: &str = concat!("longshore/", env!("CARGO_PKG_VERSION"));

impl RemoveContainer {
    /// The kind for `config`, logging to its target among `targets`.
    pub fn new(config: RuntimeConfig, targets: Arc<Targets>) -> RemoveContainer {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        RemoveContainer {
            config,
            targets,
            http,
        }
    }

    /// The request's outcome: `Ok((outcome, detail))` for a success, `Err(detail)` else.
    async fn delete(
        &self,
        job: &JobContext,
        game_id: &str,
    ) -> Result<(&'static str, String), String> {
        let url = self.config.url.replace("{game_id}", game_id);
        let response = self
            .http
            .delete(&url)
            .header(
                "idempotency-key",
                format!("{}:{}:{game_id}", Self::NAME, job.id),
            )
            .header("traceparent", traceparent(&job.metadata))
            .send()
            .await
            // Without the URL: it may carry credentials, and errors are shown to readers.
            .map_err(|e| format!("no answer: {}", e.without_url()))?;
        let status = response.status();
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let detail = format!(
            "HTTP {}{}{}",
            status.as_u16(),
            if body.is_empty() { "" } else { ": " },
            body.trim()
        );
        match status.as_u16() {
            200..=299 => Ok(("removed", detail)),
            404 | 410 => Ok(("already_removed", detail)),
            409 => Ok(("conflict", detail)),
            _ => Err(detail),
        }
    }
}

/// The highest `$n` that `sql` names: the statement is bound exactly that many parameters,
/// as Postgres refuses a statement given more than it uses.
fn params_used(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            rest[..digits].parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Whether `id` is a game id this kind sends: 1 to 200 of `A-Z a-z 0-9 _ -`, which stay
/// one path segment as they are (no `/`, `?`, `#`, `@`, `%` or `.`).
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Kind for RemoveContainer {
    const NAME: &'static str = "runtime.remove";
    type Args = RemoveArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            max_attempts: self.config.max_attempts,
            backoff: Backoff::Exponential {
                base: self.config.retry_base,
                max: Duration::from_secs(3600),
                jitter: 0.1,
            },
            ..KindOptions::default()
        }
    }

    async fn run(&self, job: JobContext, args: RemoveArgs) -> JobResult {
        let game_id = args.game_id.text();
        if !plain_id(&game_id) {
            return Err(JobError::fatal(
                "game_id must be 1 to 200 of A-Z a-z 0-9 _ -",
            ));
        }
        let target = self
            .targets
            .get(&self.config.target)
            .await
            .map_err(|e| match e {
                TargetError::Unknown(_) => JobError::fatal(e),
                TargetError::Unreachable { .. } => JobError::retry(e),
            })?;
        let eligible = match &self.config.check {
            Some(check) => target.exists(check, &[&game_id]).await.map_err(|e| {
                let e = longshore_jobs::error::describe(&e);
                JobError::retry(format!("cannot check the record: {e}"))
            })?,
            None => true,
        };
        let answer = if eligible {
            self.delete(&job, &game_id).await
        } else {
            Ok(("skipped", "the record is no longer eligible".to_owned()))
        };
        let (outcome, detail) = match &answer {
            Ok((outcome, detail)) => (*outcome, detail.as_str()),
            Err(detail) => ("failed", detail.as_str()),
        };
        let attempt = job.attempt.to_string();
        let given_up = answer.is_err() && job.attempt >= job.max_attempts;
        let params = [&game_id, outcome, detail, &attempt, &given_up.to_string()];
        let used = params_used(&self.config.log).min(params.len());
        target
            .execute(&self.config.log, &params[..used])
            .await
            .map_err(|e| {
                let e = longshore_jobs::error::describe(&e);
                JobError::retry(format!("cannot write the operation log: {e}"))
            })?;
        match answer {
            Ok((outcome, detail)) => Ok(serde_json::json!({
                "game_id": game_id,
                "outcome": outcome,
                "detail": detail,
            })),
            Err(detail) => Err(JobError::retry(format!(
                "removing game {game_id}: {detail}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_game_ids_are_sent() {
        for id in ["42", "a-b_c", "G7"] {
            assert!(plain_id(id), "{id}");
        }
        for id in [
            "", "..", ".", "../admin", "a/b", "x?y=1", "a#b", "@evil", "%2E%2E", "a.b",
        ] {
            assert!(!plain_id(id), "{id}");
        }
        assert!(!plain_id(&"9".repeat(201)));
    }

    #[test]
    fn the_game_id_goes_in_the_path() {
        let config = |url: &str| RuntimeConfig {
            url: url.to_owned(),
            target: "game".to_owned(),
            log: "SELECT $1, $2".to_owned(),
            check: None,
            timeout: ten_seconds(),
            max_attempts: 5,
            retry_base: thirty_seconds(),
        };
        let targets = [(
            "game".to_owned(),
            longshore_jobs::target::TargetDef {
                url: "sqlite::memory:".to_owned(),
            },
        )]
        .into();
        assert!(
            config("http://rt:8700/games/{game_id}")
                .validate(&targets)
                .is_ok()
        );
        let mut sixth = config("http://rt:8700/games/{game_id}");
        sixth.log = "SELECT $1, $2, $6".to_owned();
        assert_eq!(sixth.validate(&targets).unwrap_err().0, "log");
        for url in [
            "http://{game_id}.evil/x",
            "http://rt:8700",
            "ftp://rt/{game_id}",
        ] {
            assert_eq!(
                config(url).validate(&targets).unwrap_err().0,
                "url",
                "{url}"
            );
        }
    }

    #[test]
    fn the_log_statement_gets_the_parameters_it_names() {
        assert_eq!(params_used("SELECT $1, $2"), 2);
        assert_eq!(
            params_used("INSERT INTO log VALUES ($1::bigint, $2, $5::boolean)"),
            5
        );
        assert_eq!(params_used("SELECT $$ $$, $12"), 12);
        assert_eq!(params_used("SELECT 1"), 0);
    }
}
