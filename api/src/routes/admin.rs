//! `/tokens` and `/audit`, for `admin` tokens; `/session`, who a token is, for anyone.

use longshore_jobs::admin::{Scope, new_token};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::{Tag, audit};
use crate::ApiState;
use crate::auth::Auth;
use crate::model::{AuditPage, ScopeView, TokenView};
use crate::problem::ApiError;

/// A token to create.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct TokenBody {
    /// A name for people, e.g. `ci` or `dashboard`.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: String,
    /// What it may do; each scope includes the ones before it (read < enqueue < operate <
    /// admin).
    #[oai(validator(min_items = 1, max_items = 4))]
    pub scopes: Vec<ScopeView>,
}

/// Who the caller is: what the dashboard shows, and which actions it offers.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    /// `token:<name>`, or `local` when no token exists and the server listens on loopback.
    pub actor: String,
    /// What the caller may do.
    pub scope: ScopeView,
    /// Whether requests need a token.
    pub auth_required: bool,
}

#[derive(ApiResponse)]
enum TokenCreated {
    /// Created. `token` is shown only here.
    #[oai(status = 201)]
    Created(Json<TokenView>),
}

#[derive(ApiResponse)]
enum Revoked {
    /// Revoked.
    #[oai(status = 204)]
    Revoked,
}

pub struct AdminApi {
    pub state: ApiState,
}

#[OpenApi(tag = "Tag::Admin")]
impl AdminApi {
    /// Who the caller is and what it may do (any token, or none in local mode).
    #[oai(path = "/session", method = "get", operation_id = "get_session")]
    async fn session(&self, auth: Auth) -> Result<Json<SessionView>, ApiError> {
        Ok(Json(SessionView {
            actor: auth.0.actor.clone(),
            scope: auth.0.scope.into(),
            auth_required: auth.0.token_id.is_some(),
        }))
    }

    /// Every token, revoked ones included (never their secrets).
    #[oai(path = "/tokens", method = "get", operation_id = "list_tokens")]
    async fn tokens(&self, auth: Auth) -> Result<Json<Vec<TokenView>>, ApiError> {
        auth.0.require(Scope::Admin)?;
        let tokens = self.state.store().tokens().await?;
        Ok(Json(tokens.into_iter().map(Into::into).collect()))
    }

    /// Create a token; the response holds the token itself, shown this once.
    #[oai(path = "/tokens", method = "post", operation_id = "create_token")]
    async fn create(&self, auth: Auth, body: Json<TokenBody>) -> Result<TokenCreated, ApiError> {
        auth.0.require(Scope::Admin)?;
        let mut scopes: Vec<Scope> = body.0.scopes.iter().copied().map(Into::into).collect();
        scopes.sort();
        scopes.dedup();
        let (row, token, hash) = new_token(&body.0.name, scopes);
        self.state.store().create_token(&row, &hash).await?;
        self.state.forget_tokens();
        let detail = serde_json::json!({ "name": row.name, "scopes": row.scopes });
        audit(
            &self.state,
            &auth.0,
            "tokens.create",
            vec![row.id.to_string()],
            Some(detail),
        )
        .await?;
        let mut view = TokenView::from(row);
        view.token = Some(token);
        Ok(TokenCreated::Created(Json(view)))
    }

    /// Revoke a token; it stops working within seconds on every replica.
    #[oai(path = "/tokens/:id", method = "delete", operation_id = "revoke_token")]
    async fn revoke(&self, auth: Auth, id: Path<String>) -> Result<Revoked, ApiError> {
        auth.0.require(Scope::Admin)?;
        let not_found = || ApiError::not_found(format!("no live token has id {:?}", id.0));
        let uuid: Uuid = id.0.parse().map_err(|_| not_found())?;
        if !self.state.store().revoke_token(uuid).await? {
            return Err(not_found());
        }
        self.state.forget_tokens();
        audit(
            &self.state,
            &auth.0,
            "tokens.revoke",
            vec![uuid.to_string()],
            None,
        )
        .await?;
        Ok(Revoked::Revoked)
    }

    /// The audit log of mutations, newest first; continue with `before`.
    #[oai(path = "/audit", method = "get", operation_id = "list_audit")]
    async fn audit(
        &self,
        auth: Auth,
        #[oai(validator(minimum(value = "1")))] before: Query<Option<i64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
    ) -> Result<Json<AuditPage>, ApiError> {
        auth.0.require(Scope::Admin)?;
        let limit = limit.0.unwrap_or(100);
        let items = self.state.store().audit(before.0, limit).await?;
        let next_before = (items.len() == limit as usize)
            .then(|| items.last().map(|a| a.id))
            .flatten();
        Ok(Json(AuditPage {
            items: items.into_iter().map(Into::into).collect(),
            next_before,
        }))
    }
}
