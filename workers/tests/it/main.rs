//! The runtime suite: worker pools, heartbeats, rescue, shutdown and schedulers, run once on
//! SQLite and once on Postgres (`name::sqlite`, `name::postgres`) through the one harness of
//! `testkit`. What only the store promises is tested in `jobs/tests`.

mod support;

mod cancel;
mod claim;
mod completion;
mod events;
mod idle;
mod ingest;
mod leases;
mod lifecycle;
mod prefetch;
mod rescue;
mod runtime;
mod schedules;
mod sequences;
mod shutdown;

pub use support::per_backend;
