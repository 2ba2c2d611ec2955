//! The `sweeps` table on SQLite.

use sqlx::Sqlite;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, now_us, rows};
use crate::error::{StoreError, query};
use crate::schedule::{Source, parse_source};
use crate::sweep::{StoredSweep, SweepDef};

const COLUMNS: &str = "definition, source, resume_after, created_at, updated_at";

fn sweep(row: &SqliteRow) -> Result<StoredSweep, StoreError> {
    Ok(StoredSweep {
        def: rows::json(row, "definition")?,
        source: parse_source(&rows::get::<String>(row, "source")?)?,
        resume_after: rows::get(row, "resume_after")?,
        created_at: rows::time(row, "created_at")?,
        updated_at: rows::time(row, "updated_at")?,
    })
}

impl SqliteStore {
    pub(crate) async fn put_sweep(
        &self,
        def: &SweepDef,
        source: Source,
    ) -> Result<StoredSweep, StoreError> {
        let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO sweeps (name, definition, source, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?4) \
             ON CONFLICT (name) DO UPDATE SET definition = ?2, source = ?3, updated_at = ?4, \
                resume_after = CASE WHEN sweeps.definition = ?2 THEN sweeps.resume_after END \
             RETURNING {COLUMNS}"
        )))
        .bind(&def.name)
        .bind(serde_json::to_string(def).unwrap_or_default())
        .bind(source.as_str())
        .bind(now_us())
        .fetch_one(&self.writer)
        .await
        .map_err(query("store sweep"))?;
        sweep(&row)
    }

    pub(crate) async fn sweep(&self, name: &str) -> Result<Option<StoredSweep>, StoreError> {
        let row = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sweeps WHERE name = ?"
        )))
        .bind(name)
        .fetch_optional(&self.reader)
        .await
        .map_err(query("read sweep"))?;
        row.as_ref().map(sweep).transpose()
    }

    pub(crate) async fn sweeps(&self) -> Result<Vec<StoredSweep>, StoreError> {
        let rows = sqlx::query::<Sqlite>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sweeps ORDER BY name"
        )))
        .fetch_all(&self.reader)
        .await
        .map_err(query("list sweeps"))?;
        rows.iter().map(sweep).collect()
    }

    pub(crate) async fn set_sweep_resume(
        &self,
        name: &str,
        after: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query::<Sqlite>("UPDATE sweeps SET resume_after = ? WHERE name = ?")
            .bind(after)
            .bind(name)
            .execute(&self.writer)
            .await
            .map_err(query("store a sweep's resume point"))?;
        Ok(())
    }

    pub(crate) async fn delete_sweep(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query::<Sqlite>("DELETE FROM sweeps WHERE name = ?")
            .bind(name)
            .execute(&self.writer)
            .await
            .map_err(query("delete sweep"))?;
        Ok(done.rows_affected() == 1)
    }
}
