//! Kinds for fault tests, registered only when `enable_test_kinds` is set. Never enable them
//! in production: `test.abort` kills the process that runs it, `test.stubborn` blocks a
//! thread and ignores every request to stop.

use std::io::Write;

use serde::{Deserialize, Serialize};

use longshore_jobs::{JobContext, JobError, JobResult, Kind, KindOptions};

/// Aborts the whole process, as a crashing native library or an out-of-memory kill would.
pub struct Abort;

/// `{"marker": "/tmp/starts"}`: a file that gets one line per start before the abort.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortArgs {
    /// A file to append `{job id} {attempt}` to before aborting.
    #[serde(default)]
    pub marker: Option<String>,
}

impl Kind for Abort {
    const NAME: &'static str = "test.abort";
    type Args = AbortArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            max_attempts: 3,
            ..KindOptions::default()
        }
    }

    async fn run(&self, job: JobContext, args: AbortArgs) -> JobResult {
        if let Some(path) = args.marker {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(file, "{} {}", job.id, job.attempt)?;
            file.sync_all()?;
        }
        std::process::abort()
    }
}

/// Blocks its thread for `ms` milliseconds and ignores cancellation and shutdown: the handler
/// no runtime can abort, for tests that shutdown still ends on time.
pub struct Stubborn;

/// `{"ms": 60000}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StubbornArgs {
    /// How long to block, in milliseconds.
    pub ms: u64,
}

impl Kind for Stubborn {
    const NAME: &'static str = "test.stubborn";
    type Args = StubbornArgs;

    async fn run(&self, _job: JobContext, args: StubbornArgs) -> JobResult {
        let block = std::time::Duration::from_millis(args.ms);
        tokio::task::block_in_place(|| std::thread::sleep(block));
        Ok(serde_json::Value::Null)
    }
}

/// Notes each start in a file, then sleeps `ms` (stopping early when asked) and succeeds:
/// for fault tests that count how often each job ran.
pub struct Mark;

/// `{"ms": 20, "marker": "/tmp/starts"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkArgs {
    /// How long to sleep, in milliseconds.
    #[serde(default)]
    pub ms: u64,
    /// A file to append `{job id} {attempt}` to at every start.
    pub marker: String,
}

impl Kind for Mark {
    const NAME: &'static str = "test.mark";
    type Args = MarkArgs;

    async fn run(&self, job: JobContext, args: MarkArgs) -> JobResult {
        let line = format!("{} {}\n", job.id, job.attempt);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.marker)?;
        file.write_all(line.as_bytes())?;
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(args.ms)) => Ok(serde_json::Value::Null),
            () = job.cancel.cancelled() => Err(JobError::retry("interrupted")),
        }
    }
}
