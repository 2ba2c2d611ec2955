//! Sweeps: definitions (from the config or the API) and where each one's next pass starts.
//! Their passes are jobs of kind `sweep`.

use super::dispatch;
use crate::schedule::Source;
use crate::sweep::{StoredSweep, SweepDef};

dispatch! {
    /// Creates or replaces a sweep's definition; a changed definition starts its next pass
    /// at the beginning.
    fn put_sweep(&self, def: &SweepDef, source: Source) -> StoredSweep;
    /// One sweep.
    fn sweep(&self, name: &str) -> Option<StoredSweep>;
    /// Every sweep, by name.
    fn sweeps(&self) -> Vec<StoredSweep>;
    /// Records where the sweep's next pass starts (`None`: at the beginning).
    fn set_sweep_resume(&self, name: &str, after: Option<&str>) -> ();
    /// Deletes a sweep (its passes stay); false when there was none.
    fn delete_sweep(&self, name: &str) -> bool;
}
