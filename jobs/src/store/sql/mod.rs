//! The SQL that is the same on both backends, written once and compiled into each:
//! `store::pg` and `store::sqlite` each include this folder as their `sql` module, beside
//! their own `dialect` (the database type, the store that runs the SQL, and the few
//! spellings that differ). Parameters are `$1`…`$n` on both (sqlx's SQLite driver reads
//! them too); times travel as [`Time`](crate::store::codec::Time), JSON as
//! `sqlx::types::Json`. What truly differs (the hot path: insert, claim, complete, leases,
//! rescue, notifications) is in each backend's own files; the read horizon of the event and
//! push logs is a `dialect` spelling, the reads written once here.

pub(crate) use super::dialect;

pub(crate) mod activity;
pub(crate) mod audit;
pub(crate) mod events;
pub(crate) mod filter;
pub(crate) mod idempotency;
pub(crate) mod inserts;
pub(crate) mod job_moves;
pub(crate) mod jobs;
pub(crate) mod operations;
pub(crate) mod pushes;
pub(crate) mod queues;
pub(crate) mod rows;
pub(crate) mod run;
pub(crate) use run::{Fetch, Run};
pub(crate) mod schedules;
pub(crate) mod settings;
pub(crate) mod sweeps;
pub(crate) mod tokens;
pub(crate) mod webhooks;
pub(crate) mod workers;
