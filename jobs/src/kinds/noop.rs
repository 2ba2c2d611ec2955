//! `noop`: succeeds at once. Benchmarks measure the platform with it.

use serde::{Deserialize, Serialize};

use crate::kind::{JobContext, JobResult, Kind};

/// Does nothing and succeeds.
pub struct Noop;

/// `noop` takes any JSON object and ignores it (args are still stored, listed and
/// searchable, which demos and tests of filters use).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NoopArgs(pub serde_json::Map<String, serde_json::Value>);

impl Kind for Noop {
    const NAME: &'static str = "noop";
    type Args = NoopArgs;

    async fn run(&self, _job: JobContext, _args: NoopArgs) -> JobResult {
        Ok(serde_json::Value::Null)
    }
}
