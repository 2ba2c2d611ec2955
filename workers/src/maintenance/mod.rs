//! The background roles beside the workers, each a noun with a `run_once()` that returns a
//! report and a short `run()` loop around it: the [`heartbeat::Heartbeat`] (leases and cancel
//! requests), the [`rescuer::Rescuer`] (expired leases), the [`scheduler::Scheduler`] (cron
//! schedules), and retention as a kind, [`pruner::Prune`], fired by a built-in schedule.

pub mod heartbeat;
pub mod pruner;
pub mod rescuer;
pub mod scheduler;
