//! The built-in kinds, a file each.

mod noop;
mod runtime;
mod sleep;
mod sweep;
mod testing;

pub use noop::{Noop, NoopArgs};
pub use runtime::{GameId, RemoveArgs, RemoveContainer, RuntimeConfig};
pub use sleep::{Sleep, SleepArgs};
pub use sweep::{Sweep, SweepArgs};
pub use testing::{Abort, AbortArgs, Mark, MarkArgs, Stubborn, StubbornArgs};

use crate::registry::Registry;

/// Registers the kinds every process knows: `noop` and `sleep`.
pub fn register_builtins(registry: &mut Registry) {
    registry.register(Noop).register(Sleep);
}
