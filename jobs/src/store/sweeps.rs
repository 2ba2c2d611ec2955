//! Sweeps: definitions (from the config or the API) and where each one's next pass starts.
//! Their passes are jobs of kind `sweep`.

use super::{Store, on_backend};
use crate::error::StoreError;

impl Store {
    /// Creates or replaces a sweep's definition; a changed definition starts its next pass
    /// at the beginning.
    pub async fn put_sweep(
        &self,
        def: &crate::sweep::SweepDef,
        source: crate::schedule::Source,
    ) -> Result<crate::sweep::StoredSweep, StoreError> {
        on_backend!(self, s => s.put_sweep(def, source).await)
    }

    /// One sweep.
    pub async fn sweep(&self, name: &str) -> Result<Option<crate::sweep::StoredSweep>, StoreError> {
        on_backend!(self, s => s.sweep(name).await)
    }

    /// Every sweep, by name.
    pub async fn sweeps(&self) -> Result<Vec<crate::sweep::StoredSweep>, StoreError> {
        on_backend!(self, s => s.sweeps().await)
    }

    /// Records where the sweep's next pass starts (`None`: at the beginning).
    pub async fn set_sweep_resume(
        &self,
        name: &str,
        after: Option<&str>,
    ) -> Result<(), StoreError> {
        on_backend!(self, s => s.set_sweep_resume(name, after).await)
    }

    /// Deletes a sweep (its passes stay); false when there was none.
    pub async fn delete_sweep(&self, name: &str) -> Result<bool, StoreError> {
        on_backend!(self, s => s.delete_sweep(name).await)
    }
}
