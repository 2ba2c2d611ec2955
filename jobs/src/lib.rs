//! # longshore-jobs
//!
//! The domain of Longshore and the only crate with SQL: jobs, their states and attempts, the
//! event outbox, kinds and the registry, and the store with one implementation per backend
//! (PostgreSQL and SQLite).
//!
//! ## Layout
//! - [`job`], [`state`], [`id`]: the job model and its one list of states.
//! - [`kind`], [`registry`], [`kinds`]: kinds bind a stable name to a handler and defaults.
//! - [`client`]: validates enqueues and applies defaults; [`limits`]: what a job may hold.
//! - [`store`]: claims, completions, rescues, events; `store::pg` and `store::sqlite`.
//! - [`event`], [`outcome`], [`backoff`], [`telemetry`].
//!
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
pub mod limits;
pub mod outcome;
pub mod registry;
pub mod schedule;
pub mod state;
pub mod store;
pub mod sweep;
pub mod target;
pub mod telemetry;

pub use backoff::Backoff;
pub use client::{Client, EnqueueRequest};
pub use error::{EnqueueError, StoreError};
pub use event::Event;
pub use id::{EventId, JobId, ProcessId, WorkerId};
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
