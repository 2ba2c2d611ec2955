//! # longshore-workers
//!
//! The runtime: worker pools on apalis, the built-in kinds, and the background roles that
//! keep jobs moving.
//!
//! ## The path of one job
//! 1. `exec/backend.rs`: woken by the store (or at its poll), the queue's backend claims a
//!    batch under a lease; `exec/held.rs` tracks each attempt until its outcome is stored.
//! 2. `pool.rs` builds the tower stack apalis runs each job through (ack, tracing, limits).
//! 3. `exec/dispatch.rs` runs the handler (the built-in ones are in `kinds/`) on its own task
//!    and decides the outcome, retry with backoff or discard, in that one place.
//! 4. `exec/ack.rs` hands it to `exec/completer.rs`, which stores outcomes in batches.
//! 5. `maintenance/heartbeat.rs` renews the leases meanwhile and relays cancel requests;
//!    `maintenance/rescuer.rs` gives back the jobs of a process that died.
//!
//! Beside them, `maintenance/scheduler.rs` fires cron schedules once per tick however many
//! processes run, and retention is a kind, [`pruner::Prune`], fired by a built-in schedule;
//! `ingest.rs` turns Redis Stream entries into `lifecycle` jobs, one per entry.
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
pub mod egress;
pub mod exec;
pub mod ingest;
pub mod kinds;
pub mod maintenance;
pub mod otel;
pub mod pool;

pub use config::{
    PoolConfig, Prefetch, QueueConfig, RetentionConfig, SchedulerConfig, TraceAttempts,
};
pub use maintenance::{pruner, scheduler::Scheduler};
pub use pool::{Pool, PoolError};
