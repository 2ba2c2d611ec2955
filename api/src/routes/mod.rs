//! The routes, one file per resource, and what they share: idempotency and the audit log.

use std::future::Future;

use longshore_jobs::admin::{IdempotencyClaim, NewAudit};
use poem_openapi::Tags;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use sha2::{Digest, Sha256};

use crate::ApiState;
use crate::auth::Principal;
use crate::problem::ApiError;

pub mod admin;
pub mod events;
pub mod health;
pub mod jobs;
pub mod operations;
pub mod queues;
pub mod schedules;
pub mod sweeps;

#[derive(Tags)]
pub(crate) enum Tag {
    /// Enqueue and inspect jobs; act on one job.
    Jobs,
    /// Bulk retry, cancel and delete, with a dry run.
    Operations,
    /// Queues, workers and counts.
    Queues,
    /// Cron schedules.
    Schedules,
    /// Declared clean-up passes over other databases.
    Sweeps,
    /// The event outbox: JSON pages and the SSE stream.
    Events,
    /// Tokens and the audit log.
    Admin,
}

/// Every API of `/api/v1`.
pub(crate) fn apis(
    state: ApiState,
) -> (
    jobs::JobsApi,
    operations::OperationsApi,
    queues::QueuesApi,
    events::EventsApi,
    schedules::SchedulesApi,
    sweeps::SweepsApi,
    admin::AdminApi,
) {
    (
        jobs::JobsApi {
            state: state.clone(),
        },
        operations::OperationsApi {
            state: state.clone(),
        },
        queues::QueuesApi {
            state: state.clone(),
        },
        events::EventsApi {
            state: state.clone(),
        },
        schedules::SchedulesApi {
            state: state.clone(),
        },
        sweeps::SweepsApi {
            state: state.clone(),
        },
        admin::AdminApi { state },
    )
}

/// Writes an audit record of a mutation.
pub(crate) async fn audit(
    state: &ApiState,
    who: &Principal,
    action: &str,
    targets: Vec<String>,
    detail: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    state
        .store()
        .write_audit(&NewAudit {
            actor: who.actor.clone(),
            action: action.to_owned(),
            targets,
            detail,
            request_id: who.request_id.clone(),
        })
        .await?;
    Ok(())
}

/// Runs `act` once per idempotency key: the same key with the same body gets the stored
/// response again; with another body, 422; while the first is running, 409. Without a key,
/// just runs `act`. Only successes are stored; a failed request frees its key.
pub(crate) async fn idempotent<B, T, F, Fut>(
    state: &ApiState,
    who: &Principal,
    key: Option<String>,
    body: &B,
    act: F,
) -> Result<T, ApiError>
where
    B: serde::Serialize,
    T: ToJSON + ParseFromJSON,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return act().await;
    };
    let hash = {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let store = state.store();
    match store.claim_idempotency(&who.actor, &key, &hash).await? {
        IdempotencyClaim::Fresh => {}
        IdempotencyClaim::Replay { body, .. } => {
            let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            return T::parse_from_json(Some(value)).map_err(|e| {
                ApiError::conflict(
                    "idempotency_replay",
                    format!("cannot replay: {}", e.message()),
                )
            });
        }
        IdempotencyClaim::InFlight => {
            return Err(ApiError::conflict(
                "idempotency_in_flight",
                "a request with this Idempotency-Key is still being processed",
            ));
        }
        IdempotencyClaim::Mismatch => {
            return Err(ApiError::invalid(
                "Idempotency-Key",
                "this key was used with a different request body",
            ));
        }
    }
    match act().await {
        Ok(value) => {
            let json = value.to_json_string();
            store
                .finish_idempotency(&who.actor, &key, 200, &json)
                .await?;
            Ok(value)
        }
        Err(error) => {
            store.release_idempotency(&who.actor, &key).await?;
            Err(error)
        }
    }
}
