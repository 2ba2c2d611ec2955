//! The kinds the engine itself brings, a file each: `noop` and `sleep`, for demos, tests and
//! benchmarks. The families (sweeps, container removal, and the coming push, webhook,
//! lifecycle and HTTP kinds) live on the runtime side, in `longshore-workers`.

mod noop;
mod sleep;

pub use noop::{Noop, NoopArgs};
pub use sleep::{Sleep, SleepArgs};

use crate::registry::Registry;

/// Registers the kinds every process knows: `noop` and `sleep`.
pub fn register_builtins(registry: &mut Registry) {
    registry.register(Noop).register(Sleep);
}
