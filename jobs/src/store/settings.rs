//! Small values every process shares: the cursor key, the event retention mark.

use super::dispatch;

dispatch! {
    /// A setting, stored as `value` by whoever asks first.
    fn setting_or_insert(&self, key: &str, value: &str) -> String;
    /// A setting, if set.
    fn setting(&self, key: &str) -> Option<String>;
    /// Raises a numeric setting to `value` (a cursor or a mark: it only grows).
    fn raise_setting(&self, key: &str, value: i64) -> ();
}
