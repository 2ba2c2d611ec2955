//! API tokens, stored by the SHA-256 of their secret.

use uuid::Uuid;

use super::dispatch;
use crate::admin::TokenRow;

dispatch! {
    /// Stores a token by the SHA-256 of its secret.
    fn create_token(&self, token: &TokenRow, hash: &str) -> ();
    /// The token whose secret hashes to `hash`.
    fn token_by_hash(&self, hash: &str) -> Option<TokenRow>;
    /// Every token, revoked ones included.
    fn tokens(&self) -> Vec<TokenRow>;
    /// How many tokens are not revoked.
    fn active_tokens(&self) -> i64;
    /// Revokes a token; false when there was no such live token.
    fn revoke_token(&self, id: Uuid) -> bool;
    /// Records that a token was used.
    fn touch_token(&self, id: Uuid) -> ();
}
