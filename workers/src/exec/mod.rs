//! The execution path of one attempt, in the order it runs: the [`backend`] claims jobs for a
//! worker and buffers them ([`held`] records each attempt from claim to stored outcome); apalis
//! hands each to the tower stack that `pool` builds, whose innermost service,
//! [`dispatch::Dispatch`], runs the handler on a task of its own and decides the
//! [`Outcome`](longshore_jobs::Outcome) (retry or discard included, in that one place); the
//! outermost layer, [`ack`], hands it to the [`completer`], which stores outcomes in batches.

pub mod ack;
pub mod backend;
pub mod completer;
pub mod dispatch;
pub mod held;
