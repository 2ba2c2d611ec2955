//! `/activity`: a gateway reports the users it saw act. With lifecycle events and pushes,
//! these reports feed the active-users gauge (`GET /stats`, `GET /metrics`): distinct users
//! over trailing windows, the same figure on every replica, kept across restarts.

use chrono::{DateTime, Duration, Utc};
use longshore_jobs::activity::{MAX_REPORT, check_user_id};
use longshore_jobs::admin::Scope;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::Tag;
use crate::ApiState;
use crate::auth::Auth;
use crate::problem::ApiError;

/// How far ahead of this server's clock a report may be stamped (clocks differ a little).
const SKEW: Duration = Duration::minutes(5);

/// Users a gateway saw act.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct ActivityBody {
    /// The users (1 to 1,000 ids, each 1 to 256 bytes; repeats count once).
    #[oai(validator(min_items = 1, max_items = 1000))]
    pub user_ids: Vec<String>,
    /// When they were seen; defaults to now. At most 5 minutes ahead of the server's clock,
    /// and within the longest window.
    #[oai(skip_serializing_if_is_none)]
    pub at: Option<DateTime<Utc>>,
}

/// What a report recorded.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct ActivityRecorded {
    /// Distinct users marked seen.
    pub recorded: i64,
}

/// The distinct users seen over each window of the gauge, by the window's name, shortest
/// first.
pub(crate) async fn active_users(state: &ApiState) -> Result<Vec<(String, i64)>, ApiError> {
    let now = Utc::now();
    let starts: Vec<DateTime<Utc>> = state
        .activity
        .iter()
        .map(|(_, length)| {
            Duration::from_std(*length)
                .ok()
                .and_then(|l| now.checked_sub_signed(l))
                .unwrap_or(now)
        })
        .collect();
    let counts = state.store().active_users(&starts).await?;
    Ok(state
        .activity
        .iter()
        .map(|(name, _)| name.clone())
        .zip(counts)
        .collect())
}

pub struct ActivityApi {
    pub state: ApiState,
}

#[OpenApi(tag = "Tag::Queues")]
impl ActivityApi {
    /// Report users seen acting (a gateway's batch); they count as active from `at`.
    #[oai(path = "/activity", method = "post", operation_id = "report_activity")]
    async fn report(
        &self,
        auth: Auth,
        body: Json<ActivityBody>,
    ) -> Result<Json<ActivityRecorded>, ApiError> {
        auth.0.require(Scope::Enqueue)?;
        let body = body.0;
        if body.user_ids.len() > MAX_REPORT {
            return Err(ApiError::invalid(
                "user_ids",
                format!("at most {MAX_REPORT} ids"),
            ));
        }
        let now = Utc::now();
        let at = body.at.unwrap_or(now);
        if at > now + SKEW {
            return Err(ApiError::invalid(
                "at",
                "must not be more than 5 minutes ahead of the server's clock",
            ));
        }
        let longest = self.state.activity.last().map(|(_, l)| *l);
        if let Some(longest) = longest
            && Duration::from_std(longest).is_ok_and(|l| at < now - l)
        {
            return Err(ApiError::invalid(
                "at",
                "is older than the longest window of the active-users gauge",
            ));
        }
        for (i, user) in body.user_ids.iter().enumerate() {
            check_user_id(&format!("user_ids[{i}]"), user)?;
        }
        let seen: Vec<(String, DateTime<Utc>)> = body
            .user_ids
            .into_iter()
            .map(|user| (user, at.min(now)))
            .collect();
        let distinct = seen
            .iter()
            .map(|(user, _)| user.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len();
        self.state.store().record_activity(&seen).await?;
        Ok(Json(ActivityRecorded {
            recorded: distinct as i64,
        }))
    }
}
