//! # longshore-workers
//!
//! The runtime: worker pools on apalis, and the background roles that keep jobs moving.
//!
//! Each queue a process works is one apalis worker whose backend ([`backend::QueueBackend`])
//! claims jobs from Longshore's store. apalis runs the handlers through tower layers
//! (tracing, concurrency, catch-panic); the backend's own layer ([`ack::AckLayer`]) sees
//! every final result and hands it to the [`completer::Completer`], which stores outcomes in
//! batches. Beside the workers run the [`heartbeat::Heartbeat`] (leases and cancel requests),
//! the [`rescuer::Rescuer`] (expired leases) and the [`scheduler::Scheduler`] (cron
//! schedules). Retention is a kind, [`pruner::Prune`], fired by a built-in schedule.
//!
//! ## Example
//! ```no_run
//! # async fn demo(store: longshore_jobs::Store) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use longshore_jobs::{Registry, kinds};
//! use longshore_workers::{Pool, PoolConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! let mut registry = Registry::new();
//! kinds::register_builtins(&mut registry);
//! let shutdown = CancellationToken::new();
//! Pool::new(PoolConfig::default(), store, Arc::new(registry)).run(shutdown).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod exec;
pub mod kinds;
pub mod maintenance;
pub mod pool;

pub use config::{PoolConfig, QueueConfig, RetentionConfig, SchedulerConfig};
pub use maintenance::{pruner, scheduler::Scheduler};
pub use pool::{Pool, PoolError};
