//! Kinds: a stable name bound to a handler and its defaults.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::client::Client;
use crate::error::StoreError;
use crate::id::{JobId, WorkerId};
use crate::job::{Enqueued, Lease, NewJob, UniqueOptions};

/// A kind of job: a stable name, the type of its args and the handler that runs it.
///
/// ```
/// use longshore_jobs::{JobContext, JobResult, Kind};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Greet { name: String }
///
/// struct Greeter;
///
/// impl Kind for Greeter {
///     const NAME: &'static str = "greet";
///     type Args = Greet;
///
///     async fn run(&self, _job: JobContext, args: Greet) -> JobResult {
///         Ok(serde_json::json!({ "greeting": format!("hello {}", args.name) }))
///     }
/// }
/// ```
pub trait Kind: Send + Sync + 'static {
    /// The stable name jobs are enqueued under. Renaming it orphans stored jobs.
    const NAME: &'static str;

    /// The args a job of this kind carries, stored as JSON.
    type Args: Serialize + DeserializeOwned + Send + 'static;

    /// The defaults for jobs of this kind. Defaults to [`KindOptions::default`].
    fn options(&self) -> KindOptions {
        KindOptions::default()
    }

    /// Rewrites checked args before they are stored: a kind whose args carry secrets (an
    /// `http` job's `Authorization` header) seals them here, so that the database, the
    /// events and the API never hold them in the clear. An error refuses the enqueue, naming
    /// `args`. Defaults to storing the args as given.
    fn seal_args(&self, args: serde_json::Value) -> Result<serde_json::Value, String> {
        Ok(args)
    }

    /// Runs one attempt. `Ok` completes the job and stores the value as its result (`null`
    /// stores none); `Err` says what happens next (see [`JobError`]).
    fn run(&self, job: JobContext, args: Self::Args) -> impl Future<Output = JobResult> + Send;
}

/// The outcome of one attempt.
pub type JobResult = Result<serde_json::Value, JobError>;

/// Defaults applied to every job of a kind; an enqueue may override each.
#[derive(Clone, Debug, PartialEq)]
pub struct KindOptions {
    /// The queue jobs go to. Defaults to `default`.
    pub queue: String,
    /// Attempts before a failing job is discarded. Defaults to 20.
    pub max_attempts: u32,
    /// Priority, 0 (first) to 9 (last). Defaults to 0.
    pub priority: i16,
    /// Delay between failed attempts. Defaults to [`Backoff::DEFAULT`].
    pub backoff: Backoff,
    /// How long one attempt may run before it fails. Defaults to none.
    pub timeout: Option<Duration>,
    /// Uniqueness applied when an enqueue names none. Defaults to none.
    pub unique: Option<UniqueOptions>,
}

impl Default for KindOptions {
    fn default() -> Self {
        KindOptions {
            queue: "default".to_owned(),
            max_attempts: 20,
            priority: 0,
            backoff: Backoff::DEFAULT,
            timeout: None,
            unique: None,
        }
    }
}

/// What a handler knows about the job it runs, and what it can do from inside it: enqueue
/// jobs and record progress, fenced by its attempt's lease (River's client from context,
/// Oban's insert inside `perform`).
#[derive(Clone)]
pub struct JobContext {
    /// The job's id.
    pub id: JobId,
    /// The job's kind.
    pub kind: String,
    /// The queue it was claimed from.
    pub queue: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Attempts allowed before the job is discarded.
    pub max_attempts: u32,
    /// When the job was enqueued.
    pub created_at: DateTime<Utc>,
    /// The worker running this attempt.
    pub worker: WorkerId,
    /// The job's metadata.
    pub metadata: serde_json::Value,
    /// Fired when an operator cancels the job or the process must stop. A handler that watches
    /// it can stop cleanly; one that does not is aborted after the grace period.
    pub cancel: CancellationToken,
    /// Enqueues jobs and reaches the store from inside the handler.
    pub client: Client,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("queue", &self.queue)
            .field("attempt", &self.attempt)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    /// This attempt's lease: what fences its progress and its outcome.
    pub fn lease(&self) -> Lease {
        Lease {
            job: self.id,
            attempt: i32::try_from(self.attempt).unwrap_or(i32::MAX),
            worker: self.worker.clone(),
        }
    }

    /// Records the job's progress (a checkpoint the next attempt resumes from); false when
    /// this attempt no longer holds its lease.
    pub async fn save_progress(&self, progress: &serde_json::Value) -> Result<bool, StoreError> {
        self.client
            .store()
            .save_progress(&self.lease(), progress)
            .await
    }

    /// Enqueues `jobs` (checked by [`Client::prepare`]) and records the job's progress in one
    /// transaction: a page of children and the checkpoint after it are stored together or not
    /// at all. `None`, with nothing stored, when this attempt no longer holds its lease.
    pub async fn enqueue_with_progress(
        &self,
        jobs: Vec<NewJob>,
        progress: &serde_json::Value,
    ) -> Result<Option<Vec<Enqueued>>, StoreError> {
        self.client
            .store()
            .insert_with_progress(jobs, &self.lease(), progress)
            .await
    }
}

/// What should happen after a failed attempt, with the error that caused it.
///
/// Any `std::error::Error` converts into a retryable `JobError` with `?`.
pub struct JobError {
    action: ErrorAction,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// What a [`JobError`] asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ErrorAction {
    /// Retry after the kind's backoff, or after the given delay (e.g. from `Retry-After`).
    Retry {
        /// Overrides the backoff when set.
        after: Option<Duration>,
    },
    /// Fail for good: discard the job now.
    Fatal,
    /// Run again after the delay without consuming an attempt.
    Snooze(Duration),
    /// Cancel the job.
    Cancel,
}

impl JobError {
    /// Retry after the kind's backoff.
    pub fn retry(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::with(ErrorAction::Retry { after: None }, error)
    }

    /// Retry after `delay` instead of the backoff.
    pub fn retry_after(error: impl Into<Box<dyn StdError + Send + Sync>>, delay: Duration) -> Self {
        Self::with(ErrorAction::Retry { after: Some(delay) }, error)
    }

    /// Discard the job now: retrying cannot help.
    pub fn fatal(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::with(ErrorAction::Fatal, error)
    }

    /// Run again after `delay` without consuming an attempt.
    pub fn snooze(delay: Duration) -> Self {
        JobError {
            action: ErrorAction::Snooze(delay),
            source: None,
        }
    }

    /// Cancel the job, giving a reason.
    pub fn cancel(reason: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::with(ErrorAction::Cancel, reason)
    }

    fn with(action: ErrorAction, error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        JobError {
            action,
            source: Some(error.into()),
        }
    }

    /// What this error asks for.
    pub fn action(&self) -> ErrorAction {
        self.action
    }

    /// The error's report: its message and the messages of its sources.
    pub fn report(&self) -> ErrorReport {
        match &self.source {
            Some(source) => ErrorReport::from_error(source.as_ref()),
            None => ErrorReport::default(),
        }
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for JobError {
    fn from(error: E) -> Self {
        JobError::retry(error)
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("action", &self.action)
            .field("error", &self.report().message)
            .finish()
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report().message)
    }
}

/// Turns a `Result` into a handler outcome that says what to do on error.
pub trait ResultExt<T> {
    /// On error, discard the job.
    fn fatal(self) -> Result<T, JobError>;
    /// On error, retry after the backoff.
    fn retryable(self) -> Result<T, JobError>;
}

impl<T, E: Into<Box<dyn StdError + Send + Sync>>> ResultExt<T> for Result<T, E> {
    fn fatal(self) -> Result<T, JobError> {
        self.map_err(JobError::fatal)
    }

    fn retryable(self) -> Result<T, JobError> {
        self.map_err(JobError::retry)
    }
}

/// An error as stored with an attempt: the top message and the chain of its sources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ErrorReport {
    /// The error's own message.
    pub message: String,
    /// The messages of its sources, outermost first.
    pub chain: Vec<String>,
}

impl ErrorReport {
    /// The report of `error` and its sources.
    pub fn from_error(error: &(dyn StdError + 'static)) -> Self {
        let mut chain = Vec::new();
        let mut next = error.source();
        while let Some(source) = next {
            chain.push(source.to_string());
            next = source.source();
        }
        ErrorReport {
            message: error.to_string(),
            chain,
        }
    }

    /// A report of a message without sources.
    pub fn message(message: impl Into<String>) -> Self {
        ErrorReport {
            message: message.into(),
            chain: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("charge failed")]
    struct Outer(#[source] std::io::Error);

    fn fails() -> Result<(), Outer> {
        Err(Outer(std::io::Error::other("connection reset")))
    }

    fn handler() -> JobResult {
        fails()?;
        Ok(serde_json::Value::Null)
    }

    #[test]
    fn question_mark_retries_and_keeps_the_source_chain() {
        let err = handler().unwrap_err();
        assert_eq!(err.action(), ErrorAction::Retry { after: None });
        let report = err.report();
        assert_eq!(report.message, "charge failed");
        assert_eq!(report.chain, ["connection reset"]);
    }

    #[test]
    fn fatal_marks_the_error_final() {
        let err = fails().fatal().unwrap_err();
        assert_eq!(err.action(), ErrorAction::Fatal);
    }
}
