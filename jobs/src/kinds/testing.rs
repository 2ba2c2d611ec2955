//! Kinds for fault tests, registered only when `enable_test_kinds` is set. Never enable them
//! in production: `test.abort` kills the process that runs it.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::kind::{JobContext, JobResult, Kind, KindOptions};

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
