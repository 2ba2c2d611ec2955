//! The `webhook_endpoints` and `webhook_attempts` tables: endpoints with their breaker
//! state, and the delivery log. The breaker's moves are single statements, so processes
//! delivering to one endpoint at once agree on it.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use sqlx::types::Json;
use uuid::Uuid;

use super::dialect::{Backend, Db, Row};
use super::rows;
use super::{Fetch, Run};
use crate::error::StoreError;
use crate::store::codec::Time;
use crate::webhook::{DeliveryAttempt, Endpoint, EndpointSpec};

const COLUMNS: &str = "id, url, kinds, enabled, rate_limit, ordered, secret, previous_secret, \
    previous_until, consecutive_failures, failing_since, breaker_until, disabled_reason, \
    created_at, updated_at";

const ATTEMPT_COLUMNS: &str = "id, endpoint_id, job_id, message_id, event_type, attempt, at, \
    status, latency_ms, error, response";

fn endpoint(row: &Row) -> Result<Endpoint, StoreError> {
    Ok(Endpoint {
        id: rows::get(row, "id")?,
        url: rows::get(row, "url")?,
        kinds: rows::json(row, "kinds")?,
        enabled: rows::get(row, "enabled")?,
        rate_limit: rows::get(row, "rate_limit")?,
        ordered: rows::get(row, "ordered")?,
        secret: rows::get(row, "secret")?,
        previous_secret: rows::get(row, "previous_secret")?,
        previous_until: rows::opt_time(row, "previous_until")?,
        consecutive_failures: rows::get(row, "consecutive_failures")?,
        failing_since: rows::opt_time(row, "failing_since")?,
        breaker_until: rows::opt_time(row, "breaker_until")?,
        disabled_reason: rows::get(row, "disabled_reason")?,
        created_at: rows::time(row, "created_at")?,
        updated_at: rows::time(row, "updated_at")?,
    })
}

fn attempt(row: &Row) -> Result<DeliveryAttempt, StoreError> {
    Ok(DeliveryAttempt {
        id: rows::get(row, "id")?,
        endpoint_id: rows::get(row, "endpoint_id")?,
        job_id: rows::get(row, "job_id")?,
        message_id: rows::get(row, "message_id")?,
        event_type: rows::get(row, "event_type")?,
        attempt: rows::get(row, "attempt")?,
        at: rows::time(row, "at")?,
        status: rows::get(row, "status")?,
        latency_ms: rows::get(row, "latency_ms")?,
        error: rows::get(row, "error")?,
        response: rows::get(row, "response")?,
    })
}

impl Backend {
    pub(crate) async fn create_endpoint(&self, e: &Endpoint) -> Result<(), StoreError> {
        sqlx::query::<Db>(
            "INSERT INTO webhook_endpoints (id, url, kinds, enabled, rate_limit, ordered, secret, \
                created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(e.id)
        .bind(&e.url)
        .bind(Json(&e.kinds))
        .bind(e.enabled)
        .bind(e.rate_limit)
        .bind(e.ordered)
        .bind(&e.secret)
        .bind(Time(e.created_at))
        .run(self.writer(), "create webhook endpoint")
        .await?;
        Ok(())
    }

    pub(crate) async fn endpoint(&self, id: Uuid) -> Result<Option<Endpoint>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1");
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .optional(self.reader(), "read webhook endpoint")
            .await?;
        row.as_ref().map(endpoint).transpose()
    }

    pub(crate) async fn endpoints(&self) -> Result<Vec<Endpoint>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints ORDER BY created_at, id");
        let rows = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .all(self.reader(), "list webhook endpoints")
            .await?;
        rows.iter().map(endpoint).collect()
    }

    /// Applies what `spec` gives; enabling an endpoint also clears its failures.
    pub(crate) async fn update_endpoint(
        &self,
        id: Uuid,
        spec: &EndpointSpec,
    ) -> Result<Option<Endpoint>, StoreError> {
        let mut qb = QueryBuilder::<Db>::new("UPDATE webhook_endpoints SET updated_at = ");
        qb.push_bind(Time::now());
        if let Some(url) = &spec.url {
            qb.push(", url = ").push_bind(url.clone());
        }
        if let Some(kinds) = &spec.kinds {
            qb.push(", kinds = ").push_bind(Json(kinds.clone()));
        }
        if let Some(limit) = spec.rate_limit {
            qb.push(", rate_limit = ").push_bind(limit);
        }
        if let Some(ordered) = spec.ordered {
            qb.push(", ordered = ").push_bind(ordered);
        }
        if let Some(enabled) = spec.enabled {
            qb.push(", enabled = ").push_bind(enabled);
            if enabled {
                qb.push(
                    ", disabled_reason = NULL, consecutive_failures = 0, failing_since = NULL, \
                     breaker_until = NULL",
                );
            }
        }
        qb.push(" WHERE id = ").push_bind(id);
        qb.push(format!(" RETURNING {COLUMNS}"));
        let row = qb
            .build()
            .optional(self.writer(), "update webhook endpoint")
            .await?;
        row.as_ref().map(endpoint).transpose()
    }

    /// Replaces the secret, keeping the old one signing until `previous_until`.
    pub(crate) async fn rotate_endpoint_secret(
        &self,
        id: Uuid,
        secret: &str,
        previous_secret: &str,
        previous_until: DateTime<Utc>,
    ) -> Result<Option<Endpoint>, StoreError> {
        let sql = format!(
            "UPDATE webhook_endpoints SET secret = $2, previous_secret = $3, \
                previous_until = $4, updated_at = $5 WHERE id = $1 RETURNING {COLUMNS}"
        );
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(secret)
            .bind(previous_secret)
            .bind(Time(previous_until))
            .bind(Time::now())
            .optional(self.writer(), "rotate webhook secret")
            .await?;
        row.as_ref().map(endpoint).transpose()
    }

    pub(crate) async fn delete_endpoint(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query::<Db>("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .run(self.writer(), "delete webhook endpoint")
            .await?;
        Ok(done == 1)
    }

    /// Disables an enabled endpoint; false when it was disabled (or gone) already.
    pub(crate) async fn disable_endpoint(
        &self,
        id: Uuid,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<Db>(
            "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = $3 \
             WHERE id = $1 AND enabled",
        )
        .bind(id)
        .bind(reason)
        .bind(Time::now())
        .run(self.writer(), "disable webhook endpoint")
        .await?;
        Ok(done == 1)
    }

    /// A delivery succeeded: the failures are forgotten and the breaker closes. Returns
    /// whether the endpoint was failing until now.
    pub(crate) async fn endpoint_succeeded(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query::<Db>(
            "UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL, \
                breaker_until = NULL \
             WHERE id = $1 AND (consecutive_failures > 0 OR breaker_until IS NOT NULL)",
        )
        .bind(id)
        .run(self.writer(), "record a webhook success")
        .await?;
        Ok(done == 1)
    }

    /// A delivery failed: one more failure in a row, and the breaker opens until `open_until`
    /// once they reach `threshold`. Returns the endpoint as it is now.
    pub(crate) async fn endpoint_failed(
        &self,
        id: Uuid,
        threshold: i32,
        open_until: DateTime<Utc>,
    ) -> Result<Option<Endpoint>, StoreError> {
        let sql = format!(
            "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1, \
                failing_since = COALESCE(failing_since, $2), \
                breaker_until = CASE WHEN consecutive_failures + 1 >= $3 THEN $4 \
                                     ELSE breaker_until END \
             WHERE id = $1 RETURNING {COLUMNS}"
        );
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(Time::now())
            .bind(threshold)
            .bind(Time(open_until))
            .optional(self.writer(), "record a webhook failure")
            .await?;
        row.as_ref().map(endpoint).transpose()
    }

    /// Takes the half-open probe of an endpoint whose breaker's wait is over: the breaker
    /// stays open until `open_until` for every other delivery while the probe runs. True for
    /// the one delivery that took it.
    pub(crate) async fn take_probe(
        &self,
        id: Uuid,
        open_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<Db>(
            "UPDATE webhook_endpoints SET breaker_until = $2 \
             WHERE id = $1 AND breaker_until IS NOT NULL AND breaker_until <= $3",
        )
        .bind(id)
        .bind(Time(open_until))
        .bind(Time::now())
        .run(self.writer(), "take a webhook probe")
        .await?;
        Ok(done == 1)
    }

    pub(crate) async fn record_delivery_attempt(
        &self,
        a: &DeliveryAttempt,
    ) -> Result<(), StoreError> {
        sqlx::query::<Db>(
            "INSERT INTO webhook_attempts (endpoint_id, job_id, message_id, event_type, attempt, \
                at, status, latency_ms, error, response) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(a.endpoint_id)
        .bind(a.job_id)
        .bind(&a.message_id)
        .bind(&a.event_type)
        .bind(a.attempt)
        .bind(Time(a.at))
        .bind(a.status)
        .bind(a.latency_ms)
        .bind(a.error.as_deref())
        .bind(a.response.as_deref())
        .run(self.background(), "record a delivery attempt")
        .await?;
        Ok(())
    }

    /// The endpoint's delivery log, newest first, before the attempt `before`.
    pub(crate) async fn delivery_attempts(
        &self,
        endpoint_id: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE endpoint_id = "
        ));
        qb.push_bind(endpoint_id);
        if let Some(before) = before {
            qb.push(" AND id < ").push_bind(before);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = qb
            .build()
            .all(self.reader(), "read the delivery log")
            .await?;
        rows.iter().map(attempt).collect()
    }

    /// Whether a delivery to `endpoint_id` of `order_key` that came before `seq` is still to
    /// be delivered or given up (an ordered endpoint's delivery waits for it).
    pub(crate) async fn earlier_delivery_pending(
        &self,
        endpoint_id: Uuid,
        order_key: &str,
        seq: i64,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query::<Db>(
            "SELECT 1 AS pending FROM jobs WHERE kind = 'longshore.webhook' \
               AND state IN ('scheduled', 'available', 'running', 'retryable') \
               AND args->>'endpoint_id' = $1 AND args->>'order_key' = $2 \
               AND CAST(args->>'seq' AS BIGINT) < $3 LIMIT 1",
        )
        .bind(endpoint_id.to_string())
        .bind(order_key)
        .bind(seq)
        .optional(self.reader(), "look for an earlier delivery")
        .await?;
        Ok(row.is_some())
    }
}
