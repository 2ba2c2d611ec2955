//! `/queues`, `/workers`, `/stats` and `/stats/throughput`.

use std::time::{Duration, Instant};

use longshore_jobs::admin::Scope;
use longshore_jobs::client::check_queue_name;
use poem::http::StatusCode;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::{Tag, audit};
use crate::ApiState;
use crate::auth::Auth;
use crate::model::{QueueView, StatsView, WorkerView};
use crate::problem::{ApiError, Problem};

/// How long the stats are served from memory.
const STATS_TTL: Duration = Duration::from_secs(2);

/// A queue's global concurrency limit.
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
#[oai(deny_unknown_fields)]
pub struct ConcurrencyBody {
    /// Most jobs of the queue running at once across all workers; `null` removes the limit.
    #[oai(validator(minimum(value = "0"), maximum(value = "100000")))]
    #[oai(skip_serializing_if_is_none)]
    pub concurrency: Option<i32>,
}

/// Outcomes per time bucket, from the event outbox (kept for `[pool.retention] events`).
#[derive(Clone, Debug, Object, serde::Serialize, serde::Deserialize)]
pub struct ThroughputView {
    /// The first bucket's start.
    pub since: chrono::DateTime<chrono::Utc>,
    /// Each bucket's length in seconds (60, or more over a long range: at most 180 buckets).
    pub bucket_s: i64,
    /// Every bucket of the range, oldest first, empty ones included.
    pub buckets: Vec<ThroughputBucket>,
}

/// What ended, and what failed, in one bucket.
#[derive(Clone, Debug, Default, Object, serde::Serialize, serde::Deserialize)]
pub struct ThroughputBucket {
    /// Its start.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Jobs completed.
    pub completed: i64,
    /// Attempts that failed and will be retried.
    pub failed: i64,
    /// Jobs discarded (failed for good).
    pub discarded: i64,
    /// Jobs cancelled.
    pub cancelled: i64,
}

/// The longest range of the throughput chart: three days, the default event retention.
const MAX_RANGE_MINUTES: i64 = 3 * 24 * 60;
/// The most buckets a throughput answer holds.
const MAX_BUCKETS: i64 = 180;

pub struct QueuesApi {
    pub state: ApiState,
}

fn queue_name(name: &str) -> Result<(), ApiError> {
    check_queue_name(name)
        .map_err(|_| ApiError::invalid("name", "queue names are 1 to 100 of A-Z a-z 0-9 _ - . :"))
}

/// How many known queues a refusal names.
const NAMED_QUEUES: usize = 20;

impl QueuesApi {
    /// Refuses a queue nothing knows (no jobs, no settings, no worker serving it) unless the
    /// caller asked to create it: a typo would otherwise leave a queue behind for good.
    async fn known(&self, name: &str, create: bool) -> Result<(), ApiError> {
        if create {
            return Ok(());
        }
        let queues = self.state.store().queues().await?;
        if queues.iter().any(|q| q.name == name) {
            return Ok(());
        }
        let mut known: Vec<String> = queues
            .iter()
            .take(NAMED_QUEUES)
            .map(|q| format!("{:?}", q.name))
            .collect();
        if queues.len() > NAMED_QUEUES {
            known.push(format!("and {} more", queues.len() - NAMED_QUEUES));
        }
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        Err(ApiError::from_problem(Problem::new(
            StatusCode::NOT_FOUND,
            "unknown_queue",
            format!(
                "no queue named {name:?}: it has no jobs, no settings and no worker; \
                 known queues: {known}; to set up a new queue, pass create=true"
            ),
        )))
    }

    async fn queue(&self, name: &str) -> Result<QueueView, ApiError> {
        let queues = self.state.store().queues().await?;
        queues
            .into_iter()
            .find(|q| q.name == name)
            .map(Into::into)
            .ok_or_else(|| ApiError::not_found(format!("no queue named {name:?}")))
    }
}

#[OpenApi(tag = "Tag::Queues")]
impl QueuesApi {
    /// Every queue with jobs, settings or workers, with counts by state, the age of its
    /// oldest available job, its throughput and its workers.
    #[oai(path = "/queues", method = "get", operation_id = "list_queues")]
    async fn list(&self, auth: Auth) -> Result<Json<Vec<QueueView>>, ApiError> {
        auth.0.require(Scope::Read)?;
        let queues = self.state.store().queues().await?;
        Ok(Json(queues.into_iter().map(Into::into).collect()))
    }

    /// One queue.
    #[oai(path = "/queues/:name", method = "get", operation_id = "get_queue")]
    async fn get(&self, auth: Auth, name: Path<String>) -> Result<Json<QueueView>, ApiError> {
        auth.0.require(Scope::Read)?;
        queue_name(&name.0)?;
        Ok(Json(self.queue(&name.0).await?))
    }

    /// Pause a queue: workers stop claiming its jobs; running ones finish. A queue nothing
    /// knows is refused unless `create=true`.
    #[oai(
        path = "/queues/:name/pause",
        method = "post",
        operation_id = "pause_queue"
    )]
    async fn pause(
        &self,
        auth: Auth,
        name: Path<String>,
        /// Set up a queue nothing knows yet (no jobs, settings or workers); without it such
        /// a name is refused (404 `unknown_queue`), as a typo would be.
        create: Query<Option<bool>>,
    ) -> Result<Json<QueueView>, ApiError> {
        auth.0.require(Scope::Operate)?;
        queue_name(&name.0)?;
        self.known(&name.0, create.0.unwrap_or(false)).await?;
        self.state.store().pause_queue(&name.0).await?;
        audit(
            &self.state,
            &auth.0,
            "queues.pause",
            vec![name.0.clone()],
            None,
        )
        .await?;
        Ok(Json(self.queue(&name.0).await?))
    }

    /// Resume a paused queue. A queue nothing knows is refused unless `create=true`.
    #[oai(
        path = "/queues/:name/resume",
        method = "post",
        operation_id = "resume_queue"
    )]
    async fn resume(
        &self,
        auth: Auth,
        name: Path<String>,
        /// Set up a queue nothing knows yet (no jobs, settings or workers); without it such
        /// a name is refused (404 `unknown_queue`), as a typo would be.
        create: Query<Option<bool>>,
    ) -> Result<Json<QueueView>, ApiError> {
        auth.0.require(Scope::Operate)?;
        queue_name(&name.0)?;
        self.known(&name.0, create.0.unwrap_or(false)).await?;
        self.state.store().resume_queue(&name.0).await?;
        audit(
            &self.state,
            &auth.0,
            "queues.resume",
            vec![name.0.clone()],
            None,
        )
        .await?;
        Ok(Json(self.queue(&name.0).await?))
    }

    /// Set or remove a queue's global concurrency limit (across all workers). A queue
    /// nothing knows is refused unless `create=true`.
    #[oai(
        path = "/queues/:name/concurrency",
        method = "put",
        operation_id = "set_queue_concurrency"
    )]
    async fn concurrency(
        &self,
        auth: Auth,
        name: Path<String>,
        /// Set up a queue nothing knows yet (no jobs, settings or workers); without it such
        /// a name is refused (404 `unknown_queue`), as a typo would be.
        create: Query<Option<bool>>,
        body: Json<ConcurrencyBody>,
    ) -> Result<Json<QueueView>, ApiError> {
        auth.0.require(Scope::Operate)?;
        queue_name(&name.0)?;
        self.known(&name.0, create.0.unwrap_or(false)).await?;
        self.state
            .store()
            .set_queue_concurrency(&name.0, body.0.concurrency)
            .await?;
        let detail = serde_json::json!({ "concurrency": body.0.concurrency });
        audit(
            &self.state,
            &auth.0,
            "queues.concurrency",
            vec![name.0.clone()],
            Some(detail),
        )
        .await?;
        Ok(Json(self.queue(&name.0).await?))
    }

    /// Workers seen in the last `within_s` seconds (default 300), oldest first.
    #[oai(path = "/workers", method = "get", operation_id = "list_workers")]
    async fn workers(
        &self,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "86400")))] within_s: Query<
            Option<i64>,
        >,
    ) -> Result<Json<Vec<WorkerView>>, ApiError> {
        auth.0.require(Scope::Read)?;
        let since = chrono::Utc::now() - chrono::Duration::seconds(within_s.0.unwrap_or(300));
        let workers = self.state.store().workers(since).await?;
        Ok(Json(workers.into_iter().map(Into::into).collect()))
    }

    /// Jobs by state across all queues, cached for two seconds: a dashboard polling it does
    /// not count the table on every request.
    /// Jobs completed, failed, discarded and cancelled over the last `minutes` (default 60,
    /// at most 4,320), per bucket, counted from the event outbox; `queue` narrows to one.
    #[oai(
        path = "/stats/throughput",
        method = "get",
        operation_id = "get_throughput"
    )]
    async fn throughput(
        &self,
        auth: Auth,
        #[oai(validator(minimum(value = "1"), maximum(value = "4320")))] minutes: Query<
            Option<i64>,
        >,
        queue: Query<Option<String>>,
    ) -> Result<Json<ThroughputView>, ApiError> {
        use longshore_jobs::event as types;
        auth.0.require(Scope::Read)?;
        if let Some(queue) = &queue.0 {
            queue_name(queue)?;
        }
        let minutes = minutes.0.unwrap_or(60).clamp(1, MAX_RANGE_MINUTES);
        let bucket_min = (minutes + MAX_BUCKETS - 1) / MAX_BUCKETS;
        let now_min = chrono::Utc::now().timestamp().div_euclid(60);
        // The bucket holding this minute ends the range; buckets align to multiples of
        // their length, so a chart redrawn a minute later keeps its bars.
        let first = (now_min - minutes + 1).div_euclid(bucket_min) * bucket_min;
        let count = (now_min - first) / bucket_min + 1;
        let at = |minute: i64| chrono::DateTime::from_timestamp(minute * 60, 0).unwrap_or_default();
        let since = at(first);
        let mut buckets: Vec<ThroughputBucket> = (0..count)
            .map(|i| ThroughputBucket {
                at: at(first + i * bucket_min),
                ..ThroughputBucket::default()
            })
            .collect();
        let kinds = [
            types::JOB_COMPLETED,
            types::JOB_FAILED,
            types::JOB_DISCARDED,
            types::JOB_CANCELLED,
        ];
        let counts = self.state.store().event_counts(since, &kinds).await?;
        for row in counts {
            if queue
                .0
                .as_ref()
                .is_some_and(|q| row.queue.as_ref() != Some(q))
            {
                continue;
            }
            let minute = row.minute.timestamp().div_euclid(60);
            let Some(bucket) = usize::try_from((minute - first) / bucket_min)
                .ok()
                .and_then(|i| buckets.get_mut(i))
            else {
                continue;
            };
            match row.event_type.as_str() {
                types::JOB_COMPLETED => bucket.completed += row.count,
                types::JOB_FAILED => bucket.failed += row.count,
                types::JOB_DISCARDED => bucket.discarded += row.count,
                _ => bucket.cancelled += row.count,
            }
        }
        Ok(Json(ThroughputView {
            since,
            bucket_s: bucket_min * 60,
            buckets,
        }))
    }

    #[oai(path = "/stats", method = "get", operation_id = "get_stats")]
    async fn stats(&self, auth: Auth) -> Result<Json<StatsView>, ApiError> {
        auth.0.require(Scope::Read)?;
        let cached = {
            let stats = self
                .state
                .shared
                .stats
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            stats
                .as_ref()
                .filter(|(at, _)| at.elapsed() < STATS_TTL)
                .map(|(_, s)| s.clone())
        };
        if let Some(stats) = cached {
            return Ok(Json(stats));
        }
        let queues = self.state.store().queues().await?;
        let mut counts = std::collections::BTreeMap::new();
        for state in longshore_jobs::JobState::ALL {
            counts.insert(state.as_str().to_owned(), 0);
        }
        for queue in &queues {
            for (state, n) in &queue.counts {
                *counts.entry(state.as_str().to_owned()).or_insert(0) += n;
            }
        }
        let active_users = super::activity::active_users(&self.state)
            .await?
            .into_iter()
            .collect();
        let stats = StatsView {
            total: counts.values().sum(),
            counts,
            queues: queues.len() as i64,
            active_users,
            as_of: chrono::Utc::now(),
        };
        *self
            .state
            .shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), stats.clone()));
        Ok(Json(stats))
    }
}
