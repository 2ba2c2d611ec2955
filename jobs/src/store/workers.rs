//! Workers: registered at start, marked alive by the heartbeat, reaped when long gone.

use chrono::{DateTime, Utc};

use super::{Store, on_backend};
use crate::admin::WorkerRow;
use crate::error::StoreError;
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

impl Store {
    /// Registers a worker at its start.
    pub async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), StoreError> {
        on_backend!(self, s => s.register_worker(worker).await)
    }

    /// Records that workers are alive.
    pub async fn touch_workers(&self, workers: &[WorkerId]) -> Result<(), StoreError> {
        on_backend!(self, s => s.touch_workers(workers).await)
    }

    /// Records that a worker stopped cleanly.
    pub async fn stop_worker(&self, worker: &WorkerId) -> Result<(), StoreError> {
        on_backend!(self, s => s.stop_worker(worker).await)
    }

    /// Deletes worker rows not seen since `before`.
    pub async fn reap_workers(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        on_backend!(self, s => s.reap_workers(before).await)
    }

    /// Workers seen since `live_since`, oldest first.
    pub async fn workers(&self, live_since: DateTime<Utc>) -> Result<Vec<WorkerRow>, StoreError> {
        on_backend!(self, s => s.workers(live_since).await)
    }
}
