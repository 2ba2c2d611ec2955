//! The `sweeps` table on Postgres.

use sqlx::Postgres;
use sqlx::postgres::PgRow;
use sqlx::types::Json;

use super::{PgStore, rows};
use crate::error::{StoreError, query};
use crate::schedule::{Source, parse_source};
use crate::sweep::{StoredSweep, SweepDef};

const COLUMNS: &str = "definition, source, resume_after, created_at, updated_at";

fn sweep(row: &PgRow) -> Result<StoredSweep, StoreError> {
    let Json(def) = rows::get::<Json<SweepDef>>(row, "definition")?;
    Ok(StoredSweep {
        def,
        source: parse_source(&rows::get::<String>(row, "source")?)?,
        resume_after: rows::get(row, "resume_after")?,
        created_at: rows::time(row, "created_at")?,
        updated_at: rows::time(row, "updated_at")?,
    })
}

impl PgStore {
    pub(crate) async fn put_sweep(
        &self,
        def: &SweepDef,
        source: Source,
    ) -> Result<StoredSweep, StoreError> {
        let row = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO sweeps (name, definition, source) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET definition = $2, source = $3, updated_at = now(), \
                resume_after = CASE WHEN sweeps.definition = $2 THEN sweeps.resume_after END \
             RETURNING {COLUMNS}"
        )))
        .bind(&def.name)
        .bind(Json(def))
        .bind(source.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(query("store sweep"))?;
        sweep(&row)
    }

    pub(crate) async fn sweep(&self, name: &str) -> Result<Option<StoredSweep>, StoreError> {
        let row = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sweeps WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(query("read sweep"))?;
        row.as_ref().map(sweep).transpose()
    }

    pub(crate) async fn sweeps(&self) -> Result<Vec<StoredSweep>, StoreError> {
        let rows = sqlx::query::<Postgres>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sweeps ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(query("list sweeps"))?;
        rows.iter().map(sweep).collect()
    }

    pub(crate) async fn set_sweep_resume(
        &self,
        name: &str,
        after: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query::<Postgres>("UPDATE sweeps SET resume_after = $2 WHERE name = $1")
            .bind(name)
            .bind(after)
            .execute(&self.pool)
            .await
            .map_err(query("store a sweep's resume point"))?;
        Ok(())
    }

    pub(crate) async fn delete_sweep(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query::<Postgres>("DELETE FROM sweeps WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(query("delete sweep"))?;
        Ok(done.rows_affected() == 1)
    }
}
