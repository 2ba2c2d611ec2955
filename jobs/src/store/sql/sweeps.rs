//! The `sweeps` table: definitions and where each sweep's next pass starts.

use sqlx::types::Json;

use super::dialect::{Backend, Db, Row};
use super::rows;
use super::{Fetch, Run};
use crate::error::StoreError;
use crate::schedule::{Source, parse_source};
use crate::store::codec::Time;
use crate::sweep::{StoredSweep, SweepDef};

const COLUMNS: &str = "definition, source, resume_after, created_at, updated_at";

fn sweep(row: &Row) -> Result<StoredSweep, StoreError> {
    Ok(StoredSweep {
        def: rows::json(row, "definition")?,
        source: parse_source(&rows::get::<String>(row, "source")?)?,
        resume_after: rows::get(row, "resume_after")?,
        created_at: rows::time(row, "created_at")?,
        updated_at: rows::time(row, "updated_at")?,
    })
}

impl Backend {
    /// A changed definition starts its next pass at the beginning.
    pub(crate) async fn put_sweep(
        &self,
        def: &SweepDef,
        source: Source,
    ) -> Result<StoredSweep, StoreError> {
        let sql = format!(
            "INSERT INTO sweeps (name, definition, source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (name) DO UPDATE SET definition = $2, source = $3, updated_at = $4, \
                resume_after = CASE WHEN sweeps.definition = $2 THEN sweeps.resume_after END \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(&def.name)
            .bind(Json(def))
            .bind(source.as_str())
            .bind(Time::now())
            .one(self.writer(), "store sweep")
            .await?;
        sweep(&row)
    }

    pub(crate) async fn sweep(&self, name: &str) -> Result<Option<StoredSweep>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM sweeps WHERE name = $1");
        let row = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .optional(self.reader(), "read sweep")
            .await?;
        row.as_ref().map(sweep).transpose()
    }

    pub(crate) async fn sweeps(&self) -> Result<Vec<StoredSweep>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM sweeps ORDER BY name");
        let rows = sqlx::query::<Db>(sqlx::AssertSqlSafe(sql))
            .all(self.reader(), "list sweeps")
            .await?;
        rows.iter().map(sweep).collect()
    }

    pub(crate) async fn set_sweep_resume(
        &self,
        name: &str,
        after: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query::<Db>("UPDATE sweeps SET resume_after = $2 WHERE name = $1")
            .bind(name)
            .bind(after)
            .run(self.writer(), "store a sweep's resume point")
            .await?;
        Ok(())
    }

    pub(crate) async fn delete_sweep(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query::<Db>("DELETE FROM sweeps WHERE name = $1")
            .bind(name)
            .run(self.writer(), "delete sweep")
            .await?;
        Ok(done == 1)
    }
}
