//! The built-in families of jobs, a folder or file each: `sweep` (a declared clean-up pass
//! over another database), `runtime.remove` (a container's removal through the runtime
//! manager), `http` (a request to any service), `webhook` (deliveries of pushes and events to webhook
//! endpoints) and `lifecycle` (a user lifecycle event's cascade, its `sql` and `push` steps as
//! `lifecycle.step`). In debug builds only, the kinds fault tests use (`test.abort`, `test.stubborn`,
//! `test.mark`): never part of a release binary.

pub mod http;
pub mod lifecycle;
mod runtime;
mod sweep;
#[cfg(debug_assertions)]
mod testing;
mod trace_context;
pub mod webhook;

pub use http::{Http, HttpArgs};
pub use lifecycle::{Lifecycle, LifecycleConfig};
pub use runtime::{GameId, RemoveArgs, RemoveContainer, RuntimeConfig};
pub use sweep::{Sweep, SweepArgs};
#[cfg(debug_assertions)]
pub use testing::{Abort, AbortArgs, Mark, MarkArgs, Stubborn, StubbornArgs};
pub use webhook::{Deliver, DeliverArgs, WebhooksConfig};
