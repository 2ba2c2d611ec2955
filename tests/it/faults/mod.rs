//! The fault suite: processes and databases killed, frozen and held up under load, each test
//! printing what it measured (jobs lost, duplicates, seconds to recover, the longest answer).

mod cluster;
mod frozen_worker;
mod load;
mod long_transaction;
mod postgres_crash;
mod postgres_freeze;
