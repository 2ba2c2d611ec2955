//! The store suite: every semantic the store promises, run once on SQLite and once on
//! Postgres (`name::sqlite`, `name::postgres`) through the one harness of `testkit`. The
//! runtime's own scenarios (pools, heartbeats, shutdown, schedulers) are in `workers/tests`.

mod support;

mod cancel;
mod claim;
mod completion;
mod enqueue;
mod errors;
mod events;
mod leases;
mod properties;
mod pushes;
mod rescue;
mod retention;
mod sequences;
mod startup;
mod telemetry;
mod unique;

pub use longshore_testkit::per_backend;
