//! `noop`: succeeds at once. Benchmarks measure the platform with it.

use serde::{Deserialize, Serialize};

use crate::kind::{JobContext, JobResult, Kind};

/// Does nothing and succeeds.
pub struct Noop;

/// `noop` takes no args: `{}`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopArgs {}

impl Kind for Noop {
    const NAME: &'static str = "noop";
    type Args = NoopArgs;

    async fn run(&self, _job: JobContext, _args: NoopArgs) -> JobResult {
        Ok(serde_json::Value::Null)
    }
}
