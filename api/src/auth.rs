//! Bearer tokens with scopes. A request's token is checked once, by the middleware, which
//! leaves a [`Principal`] for the routes; the routes only ask for the scope they need.
//!
//! Auth is on when any token exists or the server listens beyond loopback; with no token on
//! a loopback address every request acts as `local` with every scope, so a laptop needs no
//! set-up. A server that is asked to listen beyond loopback without a token refuses to start.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use longshore_jobs::admin::{Scope, TokenRow, hash_token};
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use uuid::Uuid;

use crate::problem::{ApiError, Problem};
use crate::{ApiState, RequestId};

/// How long a looked-up token is trusted before it is read again (so a revocation takes
/// effect within this time on every replica).
const TOKEN_TTL: Duration = Duration::from_secs(5);

/// Who is calling, and what they may do.
#[derive(Clone, Debug)]
pub struct Principal {
    /// `token:<name>` or `local`.
    pub actor: String,
    /// The broadest scope granted.
    pub scope: Scope,
    /// The token's id.
    pub token_id: Option<Uuid>,
    /// The request's id, for the audit log.
    pub request_id: Option<String>,
}

impl Principal {
    /// The principal of a request when auth is off.
    pub fn local() -> Principal {
        Principal {
            actor: "local".to_owned(),
            scope: Scope::Admin,
            token_id: None,
            request_id: None,
        }
    }

    /// Fails with 403 unless the principal has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scope >= scope {
            Ok(())
        } else {
            Err(ApiError::from_problem(Problem::new(
                poem::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this operation needs the {scope} scope; the token has {}",
                    self.scope
                ),
            )))
        }
    }
}

/// A bearer token (`Authorization: Bearer lsh_…`).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "checked_principal")]
pub struct Auth(pub Principal);

async fn checked_principal(req: &Request, _bearer: Bearer) -> Option<Principal> {
    let mut principal = req.extensions().get::<Principal>().cloned()?;
    principal.request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    Some(principal)
}

/// Looked-up tokens, by hash.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (Instant, Option<TokenRow>)>>,
    auth_on: Mutex<Option<(Instant, bool)>>,
}

impl TokenCache {
    pub(crate) fn forget(&self) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.auth_on.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What the middleware decided about a request.
pub(crate) enum Verdict {
    /// Go on as this principal.
    Allow(Principal),
    /// Go on as `local`, inserting a placeholder bearer so the route's extractor passes.
    Local,
    /// Answer 401 with this detail.
    Deny(&'static str),
}

/// Checks the request's bearer token.
pub(crate) async fn authenticate(
    state: &ApiState,
    header: Option<&str>,
) -> Result<Verdict, ApiError> {
    let token = header.and_then(|h| {
        let (scheme, rest) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let Some(token) = token else {
        return Ok(if auth_on(state).await? {
            Verdict::Deny("this server requires a bearer token (Authorization: Bearer …)")
        } else {
            Verdict::Local
        });
    };
    if token.is_empty() || token.len() > 200 {
        return Ok(Verdict::Deny("the bearer token is not valid"));
    }
    let hash = hash_token(token);
    let cache = &state.shared.tokens;
    let cached = {
        let tokens = cache.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(&hash)
            .filter(|(at, _)| at.elapsed() < TOKEN_TTL)
            .map(|(_, row)| row.clone())
    };
    let row = match cached {
        Some(row) => row,
        None => {
            let row = state.store().token_by_hash(&hash).await?;
            let mut tokens = cache.tokens.lock().unwrap_or_else(|e| e.into_inner());
            if tokens.len() > 10_000 {
                tokens.clear();
            }
            tokens.insert(hash, (Instant::now(), row.clone()));
            row
        }
    };
    let Some(row) = row.filter(|r| r.revoked_at.is_none()) else {
        if !auth_on(state).await? {
            // With auth off a stray token is ignored rather than refused.
            return Ok(Verdict::Local);
        }
        return Ok(Verdict::Deny("the bearer token is unknown or revoked"));
    };
    let recently = row
        .last_used_at
        .is_some_and(|at| chrono::Utc::now() - at < chrono::Duration::seconds(60));
    if !recently {
        let store = state.store().clone();
        let id = row.id;
        tokio::spawn(async move {
            if let Err(error) = store.touch_token(id).await {
                tracing::debug!(%error, "cannot record token use");
            }
        });
    }
    let scope = row.scopes.iter().copied().max().unwrap_or(Scope::Read);
    Ok(Verdict::Allow(Principal {
        actor: format!("token:{}", row.name),
        scope,
        token_id: Some(row.id),
        request_id: None,
    }))
}

/// Whether requests need a token: any token exists, or the server listens beyond loopback.
async fn auth_on(state: &ApiState) -> Result<bool, ApiError> {
    if state.shared.require_auth {
        return Ok(true);
    }
    let cache = &state.shared.tokens;
    if let Some((at, on)) = *cache.auth_on.lock().unwrap_or_else(|e| e.into_inner())
        && at.elapsed() < Duration::from_secs(2)
    {
        return Ok(on);
    }
    let on = state.store().active_tokens().await? > 0;
    *cache.auth_on.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), on));
    Ok(on)
}
