//! `sleep`: waits a while, then succeeds. For tests and demos of long jobs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kind::{JobContext, JobError, JobResult, Kind};

/// Sleeps for `ms` milliseconds; stops early when the job is cancelled.
pub struct Sleep;

/// `{"ms": 1500}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds.
    pub ms: u64,
}

impl Kind for Sleep {
    const NAME: &'static str = "sleep";
    type Args = SleepArgs;

    async fn run(&self, job: JobContext, args: SleepArgs) -> JobResult {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(args.ms)) => {
                Ok(serde_json::json!({ "slept_ms": args.ms }))
            }
            () = job.cancel.cancelled() => Err(JobError::retry("interrupted while sleeping")),
        }
    }
}
