//! Small values every process shares: the cursor key, the event retention mark.

use super::{Store, on_backend};
use crate::error::StoreError;

impl Store {
    /// A setting, stored as `value` by whoever asks first.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        on_backend!(self, s => s.setting_or_insert(key, value).await)
    }

    /// A setting, if set.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        on_backend!(self, s => s.setting(key).await)
    }
}
