//! The `queues` table (pause, global concurrency) and the figures operators read per queue.

use chrono::Utc;

use super::dialect::{Backend, Db};
use super::events::{self, NewEvent};
use super::rows;
use super::{Fetch, Run};
use crate::error::{StoreError, query};
use crate::event;
use crate::store::codec::Time;
use crate::store::{Outlook, QueueTotals};

/// The earliest `run_at` of a queue's waiting jobs, read as ten probes of the claim index
/// (one per priority, each the first entry of its range) rather than a scan of every
/// waiting job, which may be millions scheduled ahead.
static OUTLOOK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let probes: Vec<String> = (0..=9)
        .map(|p| {
            format!(
                "SELECT (SELECT run_at FROM jobs WHERE queue = $1 AND priority = {p} \
                 AND state IN ('available', 'scheduled', 'retryable') \
                 ORDER BY run_at LIMIT 1) AS at"
            )
        })
        .collect();
    format!(
        "SELECT (SELECT paused FROM queues WHERE name = $1) AS paused, \
                (SELECT min(at) FROM ({}) probes) AS next_run_at",
        probes.join(" UNION ALL ")
    )
});

impl Backend {
    pub(crate) async fn queue_outlook(&self, queue: &str) -> Result<Outlook, StoreError> {
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(OUTLOOK.as_str()))
            .bind(queue)
            .one(self.reader(), "read a queue's next job")
            .await?;
        Ok(Outlook {
            paused: rows::get::<Option<bool>>(&row, "paused")?.unwrap_or(false),
            next_run_at: rows::opt_time(&row, "next_run_at")?,
        })
    }

    pub(crate) async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        let event_type = if paused {
            event::QUEUE_PAUSED
        } else {
            event::QUEUE_RESUMED
        };
        self.set_queue("paused", paused, queue, event_type, None)
            .await
    }

    pub(crate) async fn set_queue_concurrency(
        &self,
        queue: &str,
        concurrency: Option<i32>,
    ) -> Result<(), StoreError> {
        let data = serde_json::json!({ "concurrency": concurrency });
        let event_type = event::QUEUE_UPDATED;
        self.set_queue("concurrency", concurrency, queue, event_type, Some(data))
            .await
    }

    /// Sets one setting of a queue (creating its row) and writes the event that reports it.
    async fn set_queue<T>(
        &self,
        column: &'static str,
        value: T,
        queue: &str,
        event_type: &str,
        data: Option<serde_json::Value>,
    ) -> Result<(), StoreError>
    where
        T: for<'q> sqlx::Encode<'q, Db> + sqlx::Type<Db> + Send,
    {
        let mut tx = self.write("set queue").await?;
        let sql = format!(
            "INSERT INTO queues (name, {column}, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET {column} = $2, updated_at = $3"
        );
        sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(queue)
            .bind(value)
            .bind(Time::now())
            .run(&mut *tx, "set queue")
            .await?;
        let event = NewEvent {
            event_type,
            job_id: None,
            queue: Some(queue),
            kind: None,
            state: None,
            attempt: None,
            data,
        };
        events::write(&mut *tx, event).await?;
        tx.commit().await.map_err(query("set queue"))
    }

    pub(crate) async fn queue_totals(&self) -> Result<QueueTotals, StoreError> {
        let now = Utc::now();
        let minute_ago = Time(now - chrono::Duration::minutes(1));
        let mut totals = QueueTotals::default();
        let reader = self.reader();
        let counts =
            sqlx::query::<Db>("SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state")
                .all(reader, "queue stats")
                .await?;
        for row in &counts {
            let queue: String = rows::get(row, "queue")?;
            let counts = totals.counts.entry(queue).or_default();
            counts.insert(rows::state(row, "state")?, rows::get(row, "n")?);
        }
        let settings = sqlx::query::<Db>("SELECT name, paused, concurrency FROM queues")
            .all(reader, "queue stats")
            .await?;
        for row in &settings {
            let setting = (rows::get(row, "paused")?, rows::get(row, "concurrency")?);
            totals.settings.insert(rows::get(row, "name")?, setting);
        }
        let oldest = sqlx::query::<Db>(
            "SELECT queue, min(run_at) AS oldest FROM jobs WHERE state = 'available' \
             GROUP BY queue",
        )
        .all(reader, "queue stats")
        .await?;
        for row in &oldest {
            let age = (now - rows::time(row, "oldest")?).num_milliseconds() as f64 / 1000.0;
            totals
                .oldest_available_s
                .insert(rows::get(row, "queue")?, age.max(0.0));
        }
        let recent = sqlx::query::<Db>(
            "SELECT queue, count(*) AS n FROM jobs WHERE state = 'completed' \
               AND finished_at > $1 GROUP BY queue",
        )
        .bind(minute_ago)
        .all(reader, "queue stats")
        .await?;
        for row in &recent {
            let n = rows::get(row, "n")?;
            totals
                .completed_last_minute
                .insert(rows::get(row, "queue")?, n);
        }
        let workers = sqlx::query::<Db>(
            "SELECT queue, count(*) AS n FROM workers WHERE stopped_at IS NULL \
               AND last_seen_at > $1 GROUP BY queue",
        )
        .bind(minute_ago)
        .all(reader, "queue stats")
        .await?;
        for row in &workers {
            totals
                .workers
                .insert(rows::get(row, "queue")?, rows::get(row, "n")?);
        }
        Ok(totals)
    }
}
