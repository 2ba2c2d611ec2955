//! The `schedules` table.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::dialect::{Backend, Db, Row};
use super::rows;
use super::{Fetch, Run};
use crate::error::StoreError;
use crate::id::JobId;
use crate::schedule::{
    Schedule, TickCounts, catch_up_name, overlap_name, parse_catch_up, parse_overlap, parse_source,
};
use crate::store::codec::Time;

const COLUMNS: &str = "id, cron, timezone, template, catch_up, catch_up_window_s, catch_up_cap, \
    overlap, enabled, source, last_fire_at, last_job_id, next_fire_at, fired_count, skipped_count, \
    missed_count, created_at, updated_at";

fn schedule(row: &Row) -> Result<Schedule, StoreError> {
    let window: i64 = rows::get(row, "catch_up_window_s")?;
    let cap: i32 = rows::get(row, "catch_up_cap")?;
    Ok(Schedule {
        id: rows::get(row, "id")?,
        cron: rows::get(row, "cron")?,
        timezone: rows::get(row, "timezone")?,
        template: rows::json(row, "template")?,
        catch_up: parse_catch_up(&rows::get::<String>(row, "catch_up")?)?,
        catch_up_window: std::time::Duration::from_secs(window.max(0) as u64),
        catch_up_cap: cap.max(0) as u32,
        overlap: parse_overlap(&rows::get::<String>(row, "overlap")?)?,
        enabled: rows::get(row, "enabled")?,
        source: parse_source(&rows::get::<String>(row, "source")?)?,
        last_fire_at: rows::opt_time(row, "last_fire_at")?,
        last_job_id: rows::opt_job_id(row, "last_job_id")?,
        next_fire_at: rows::opt_time(row, "next_fire_at")?,
        counts: TickCounts {
            fired: rows::get(row, "fired_count")?,
            skipped: rows::get(row, "skipped_count")?,
            missed: rows::get(row, "missed_count")?,
        },
        created_at: rows::time(row, "created_at")?,
        updated_at: rows::time(row, "updated_at")?,
    })
}

impl Backend {
    pub(crate) async fn put_schedule(&self, s: &Schedule) -> Result<Schedule, StoreError> {
        let sql = format!(
            "INSERT INTO schedules (id, cron, timezone, template, catch_up, catch_up_window_s, \
                catch_up_cap, overlap, enabled, source, next_fire_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
             ON CONFLICT (id) DO UPDATE SET cron = $2, timezone = $3, template = $4, \
                catch_up = $5, catch_up_window_s = $6, catch_up_cap = $7, overlap = $8, \
                enabled = $9, source = $10, next_fire_at = $11, updated_at = $12 \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(&s.id)
            .bind(&s.cron)
            .bind(&s.timezone)
            .bind(Json(&s.template))
            .bind(catch_up_name(s.catch_up))
            .bind(s.catch_up_window.as_secs() as i64)
            .bind(s.catch_up_cap as i32)
            .bind(overlap_name(s.overlap))
            .bind(s.enabled)
            .bind(s.source.as_str())
            .bind(s.next_fire_at.map(Time))
            .bind(Time::now())
            .one(self.writer(), "store schedule")
            .await?;
        schedule(&row)
    }

    pub(crate) async fn schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = $1");
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .optional(self.writer(), "read schedule")
            .await?;
        row.as_ref().map(schedule).transpose()
    }

    pub(crate) async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY id");
        let rows = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .all(self.reader(), "list schedules")
            .await?;
        rows.iter().map(schedule).collect()
    }

    /// Read on the writer: the scheduler compares what it reads with what it just wrote.
    pub(crate) async fn due_schedules(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Schedule>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM schedules WHERE enabled AND next_fire_at <= $1 \
             ORDER BY next_fire_at LIMIT 100"
        );
        let rows = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(Time(now))
            .all(self.writer(), "due schedules")
            .await?;
        rows.iter().map(schedule).collect()
    }

    pub(crate) async fn next_fire_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.earliest(
            "SELECT min(next_fire_at) FROM schedules WHERE enabled",
            "read the next tick",
        )
        .await
    }

    pub(crate) async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query::<Db>("DELETE FROM schedules WHERE id = $1")
            .bind(id)
            .run(self.writer(), "delete schedule")
            .await?;
        Ok(done == 1)
    }

    pub(crate) async fn advance_schedule(
        &self,
        id: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        fired: Option<(DateTime<Utc>, JobId)>,
        counts: TickCounts,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<Db>(
            "UPDATE schedules SET next_fire_at = $3, \
                last_fire_at = COALESCE($4, last_fire_at), last_job_id = COALESCE($5, last_job_id), \
                fired_count = fired_count + $6, skipped_count = skipped_count + $7, \
                missed_count = missed_count + $8 \
             WHERE id = $1 AND next_fire_at = $2",
        )
        .bind(id)
        .bind(Time(expected))
        .bind(next.map(Time))
        .bind(fired.map(|f| Time(f.0)))
        .bind(fired.map(|f| f.1.0))
        .bind(counts.fired)
        .bind(counts.skipped)
        .bind(counts.missed)
        .run(self.writer(), "advance schedule").await?;
        Ok(done == 1)
    }
}
