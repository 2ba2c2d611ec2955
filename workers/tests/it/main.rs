//! The conformance suite: every semantic of the engine, run once on SQLite and once on
//! Postgres (`name::sqlite`, `name::postgres`).

mod support;

mod cancel;
mod claim;
mod completion;
mod enqueue;
mod events;
mod leases;
mod properties;
mod rescue;
mod schedules;
mod shutdown;
mod unique;
