//! `sleep`: waits a while, then succeeds (or, when asked, fails). For tests and demos of
//! long jobs and of failures.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kind::{JobContext, JobError, JobResult, Kind};

/// Sleeps for `ms` milliseconds; stops early when the job is cancelled.
pub struct Sleep;

/// `{"ms": 1500}`, or `{"ms": 10, "fail": "disk full"}` for attempts that fail, or
/// `{"ms": 10, "fail": "disk full", "fail_attempts": 2}` for a job whose first two attempts
/// fail and whose third succeeds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds.
    pub ms: u64,
    /// When set, each attempt fails with this message after sleeping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<String>,
    /// With `fail`: only attempts up to this number fail; later ones succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_attempts: Option<u32>,
}

impl Kind for Sleep {
    const NAME: &'static str = "sleep";
    type Args = SleepArgs;

    async fn run(&self, job: JobContext, args: SleepArgs) -> JobResult {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(args.ms)) => match args.fail {
                Some(message)
                    if args
                        .fail_attempts
                        .is_none_or(|n| i64::from(job.attempt) <= i64::from(n)) =>
                {
                    Err(JobError::retry(message))
                }
                _ => Ok(serde_json::json!({ "slept_ms": args.ms })),
            },
            () = job.cancel.cancelled() => Err(JobError::retry("interrupted while sleeping")),
        }
    }
}
