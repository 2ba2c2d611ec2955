//! API tokens, stored by the SHA-256 of their secret.

use uuid::Uuid;

use super::{Store, on_backend};
use crate::admin::TokenRow;
use crate::error::StoreError;

impl Store {
    /// Stores a token by the SHA-256 of its secret.
    pub async fn create_token(&self, token: &TokenRow, hash: &str) -> Result<(), StoreError> {
        on_backend!(self, s => s.create_token(token, hash).await)
    }

    /// The token whose secret hashes to `hash`.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        on_backend!(self, s => s.token_by_hash(hash).await)
    }

    /// Every token, revoked ones included.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        on_backend!(self, s => s.tokens().await)
    }

    /// How many tokens are not revoked.
    pub async fn active_tokens(&self) -> Result<i64, StoreError> {
        on_backend!(self, s => s.active_tokens().await)
    }

    /// Revokes a token; false when there was no such live token.
    pub async fn revoke_token(&self, id: Uuid) -> Result<bool, StoreError> {
        on_backend!(self, s => s.revoke_token(id).await)
    }

    /// Records that a token was used.
    pub async fn touch_token(&self, id: Uuid) -> Result<(), StoreError> {
        on_backend!(self, s => s.touch_token(id).await)
    }
}
