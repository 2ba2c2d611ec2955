//! # longshore-jobs
//!
//! The domain of Longshore and the only crate with SQL: jobs, their states and attempts, the
//! event outbox, kinds and the registry, and the store with one implementation per backend
//! (PostgreSQL and SQLite).
//!
//! ## The path of one job
//! 1. `client.rs` checks an enqueue against its kind and fills in the kind's defaults.
//! 2. `store/inserter.rs` commits concurrent enqueues together; `store/{pg,sqlite}/jobs.rs`
//!    writes the rows with their `job.enqueued` events.
//! 3. `store/wakeup.rs` wakes the queue's idle workers; `store/pg/notify.rs` other processes'.
//! 4. `store/{pg,sqlite}/jobs.rs` claims it for a worker under a lease (`job.started`).
//! 5. The runtime (`longshore-workers`, its `exec/`) runs the handler and decides the outcome.
//! 6. `store/{pg,sqlite}/jobs.rs` stores it fenced by its [`Lease`], with attempt and event.
//! 7. `store/sql/events.rs` reads the outbox below the horizon, for the API's stream.

//! ## Layout
//! - [`job`], [`state`], [`id`]: the job model and its one list of states.
//! - [`kind`], [`registry`], [`kinds`]: kinds bind a stable name to a handler and defaults (the
//!   families of built-in kinds live on the runtime side, in `longshore-workers`).
//! - [`client`]: validates enqueues and applies defaults; [`limits`]: what a job may hold.
//! - [`store`]: the one seam over both databases, a file per table; the SQL that is the same
//!   on both in `store/sql/`, the hot path per backend in `store/pg/` and `store/sqlite/`.
//! - [`schedule`], [`cron`], [`sweep`], [`target`]: schedules and sweep definitions.
//! - [`event`], [`outcome`], [`backoff`], [`telemetry`] (the span and field names).

//! ## Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use longshore_jobs::{Client, EnqueueRequest, Registry, Store, StoreConfig, kinds};
//!
//! let store = Store::connect(&StoreConfig::default()).await?;
//! let mut registry = Registry::new();
//! kinds::register_builtins(&mut registry);
//! let client = Client::new(store, Arc::new(registry));
//! let job = client.enqueue(EnqueueRequest::new("sleep", serde_json::json!({"ms": 100}))).await?;
//! println!("enqueued {}", job.id);
//! # Ok(()) }
//! ```

pub mod activity;
pub mod admin;
pub mod backoff;
pub mod client;
pub mod cron;
pub mod error;
pub mod event;
pub mod id;
pub mod job;
pub mod kind;
pub mod kinds;
pub mod lifecycle;
pub mod limits;
pub mod outcome;
pub mod push;
pub mod registry;
pub mod schedule;
pub mod secret;
pub mod state;
pub mod store;
pub mod sweep;
pub mod target;
pub mod telemetry;
pub mod webhook;

pub use backoff::Backoff;
pub use client::{Client, EnqueueRequest};
pub use error::{EnqueueError, StoreError};
pub use event::Event;
pub use id::{EventId, IdPrefix, JobId, ProcessId, WorkerId};
pub use job::{
    Attempt, ClaimedJob, Enqueued, Job, Lease, NewJob, RunAt, UniqueOptions, UniqueScope,
};
pub use kind::{
    ErrorAction, ErrorReport, JobContext, JobError, JobResult, Kind, KindOptions, ResultExt,
};
pub use outcome::{Completion, Outcome};
pub use registry::{RegisteredKind, Registry};
pub use state::JobState;
pub use store::{BackendKind, Store, StoreConfig};
