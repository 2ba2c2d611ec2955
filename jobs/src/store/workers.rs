//! Workers: registered at start, marked alive by the heartbeat, reaped when long gone.

use chrono::{DateTime, Utc};

use super::dispatch;
use crate::admin::WorkerRow;
use crate::id::WorkerId;

/// A worker row, as registered at start.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerInfo {
    /// Unique per process start.
    pub id: WorkerId,
    /// The queue it serves.
    pub queue: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Jobs it runs at once.
    pub concurrency: u32,
    /// The kinds it can run.
    pub kinds: Vec<String>,
}

dispatch! {
    /// Registers a worker at its start.
    fn register_worker(&self, worker: &WorkerInfo) -> ();
    /// Records that workers are alive.
    fn touch_workers(&self, workers: &[WorkerId]) -> ();
    /// Records that a worker stopped cleanly.
    fn stop_worker(&self, worker: &WorkerId) -> ();
    /// Deletes worker rows not seen since `before`.
    fn reap_workers(&self, before: DateTime<Utc>) -> u64;
    /// Workers seen since `live_since`, oldest first.
    fn workers(&self, live_since: DateTime<Utc>) -> Vec<WorkerRow>;
}
