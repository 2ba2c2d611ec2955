//! The `schedules` table on SQLite.

use chrono::{DateTime, Utc};
use sqlx::Sqlite;
use sqlx::sqlite::SqliteRow;

use super::events::{self, NewEvent};
use super::{SqliteStore, micros, now_us, rows};
use crate::error::{StoreError, query};
use crate::id::JobId;
use crate::schedule::TickCounts;
use crate::schedule::{
    Schedule, catch_up_name, overlap_name, parse_catch_up, parse_overlap, parse_source,
};

const COLUMNS: &str = "id, cron, timezone, template, catch_up, catch_up_window_s, catch_up_cap, \
    overlap, enabled, source, last_fire_at, last_job_id, next_fire_at, fired_count, skipped_count, \
    missed_count, created_at, updated_at";

fn schedule(row: &SqliteRow) -> Result<Schedule, StoreError> {
    let window: i64 = rows::get(row, "catch_up_window_s")?;
    let cap: i64 = rows::get(row, "catch_up_cap")?;
    Ok(Schedule {
        id: rows::get(row, "id")?,
        cron: rows::get(row, "cron")?,
        timezone: rows::get(row, "timezone")?,
        template: rows::json(row, "template")?,
        catch_up: parse_catch_up(&rows::get::<String>(row, "catch_up")?)?,
        catch_up_window: std::time::Duration::from_secs(window.max(0) as u64),
        catch_up_cap: cap.clamp(0, u32::MAX as i64) as u32,
        overlap: parse_overlap(&rows::get::<String>(row, "overlap")?)?,
        enabled: rows::get(row, "enabled")?,
        source: parse_source(&rows::get::<String>(row, "source")?)?,
        last_fire_at: rows::opt_time(row, "last_fire_at")?,
        last_job_id: rows::get::<Option<uuid::Uuid>>(row, "last_job_id")?.map(JobId),
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

impl SqliteStore {
    pub(crate) async fn put_schedule(&self, s: &Schedule) -> Result<Schedule, StoreError> {
        let now = now_us();
        let sql = format!(
            "INSERT INTO schedules (id, cron, timezone, template, catch_up, catch_up_window_s, \
                catch_up_cap, overlap, enabled, source, next_fire_at, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12) \
             ON CONFLICT (id) DO UPDATE SET cron = ?2, timezone = ?3, template = ?4, \
                catch_up = ?5, catch_up_window_s = ?6, catch_up_cap = ?7, overlap = ?8, \
                enabled = ?9, source = ?10, next_fire_at = ?11, updated_at = ?12 \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(sql))
            .bind(&s.id)
            .bind(&s.cron)
            .bind(&s.timezone)
            .bind(serde_json::to_string(&s.template).unwrap_or_default())
            .bind(catch_up_name(s.catch_up))
            .bind(s.catch_up_window.as_secs() as i64)
            .bind(i64::from(s.catch_up_cap))
            .bind(overlap_name(s.overlap))
            .bind(s.enabled)
            .bind(s.source.as_str())
            .bind(s.next_fire_at.map(micros))
            .bind(now)
            .fetch_one(&self.writer)
            .await
            .map_err(query("store schedule"))?;
        schedule(&row)
    }

    pub(crate) async fn schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.writer)
        .await
        .map_err(query("read schedule"))?;
        row.as_ref().map(schedule).transpose()
    }

    pub(crate) async fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        let rows = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules ORDER BY id"
        )))
        .fetch_all(&self.reader)
        .await
        .map_err(query("list schedules"))?;
        rows.iter().map(schedule).collect()
    }

    pub(crate) async fn due_schedules(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Schedule>, StoreError> {
        let rows = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE enabled AND next_fire_at <= ? ORDER BY next_fire_at LIMIT 100"
        )))
        .bind(micros(now))
        .fetch_all(&self.writer)
        .await
        .map_err(query("due schedules"))?;
        rows.iter().map(schedule).collect()
    }

    pub(crate) async fn delete_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query::<Sqlite>("DELETE FROM schedules WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(query("delete schedule"))?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn advance_schedule(
        &self,
        id: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        fired: Option<(DateTime<Utc>, JobId)>,
        counts: TickCounts,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query::<Sqlite>(
            "UPDATE schedules SET next_fire_at = ?3, \
                last_fire_at = COALESCE(?4, last_fire_at), last_job_id = COALESCE(?5, last_job_id), \
                fired_count = fired_count + ?6, skipped_count = skipped_count + ?7, \
                missed_count = missed_count + ?8 \
             WHERE id = ?1 AND next_fire_at = ?2",
        )
        .bind(id)
        .bind(micros(expected))
        .bind(next.map(micros))
        .bind(fired.map(|f| micros(f.0)))
        .bind(fired.map(|f| f.1.0))
        .bind(counts.fired)
        .bind(counts.skipped)
        .bind(counts.missed)
        .execute(&self.writer)
        .await
        .map_err(query("advance schedule"))?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn write_event(
        &self,
        event_type: &str,
        queue: Option<&str>,
        job_id: Option<JobId>,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.write("write event").await?;
        events::write(
            &mut tx,
            NewEvent {
                event_type,
                job_id,
                queue,
                kind: None,
                state: None,
                attempt: None,
                data: Some(data),
            },
        )
        .await?;
        tx.commit().await.map_err(query("write event"))
    }
}
