//! Running a statement so that its error names the operation: `.all(pool, "list tokens")`
//! for `.fetch_all(pool).await.map_err(query("list tokens"))`, and `.run(…)` for `execute`,
//! answering the rows it touched. Compiled into each backend like the rest of `sql/`, so the
//! backends' own files use it too.

use sqlx::query::{Query, QueryScalar};
use sqlx::{Executor, FromRow, IntoArguments};

use super::dialect::{Db, Row};
use crate::error::{StoreError, query};

/// Fetching the rows (or scalars) of a statement.
pub(crate) trait Fetch: Sized {
    /// A row, or the scalar of a `query_scalar`.
    type Item;

    async fn all<'c, E>(self, on: E, op: &'static str) -> Result<Vec<Self::Item>, StoreError>
    where
        E: Executor<'c, Database = Db>;

    async fn one<'c, E>(self, on: E, op: &'static str) -> Result<Self::Item, StoreError>
    where
        E: Executor<'c, Database = Db>;

    async fn optional<'c, E>(
        self,
        on: E,
        op: &'static str,
    ) -> Result<Option<Self::Item>, StoreError>
    where
        E: Executor<'c, Database = Db>;
}

/// Executing a statement, for the rows it touched.
pub(crate) trait Run: Sized {
    async fn run<'c, E>(self, on: E, op: &'static str) -> Result<u64, StoreError>
    where
        E: Executor<'c, Database = Db>;
}

impl<'q, A> Fetch for Query<'q, Db, A>
where
    A: 'q + IntoArguments<Db> + Send,
{
    type Item = Row;

    async fn all<'c, E>(self, on: E, op: &'static str) -> Result<Vec<Row>, StoreError>
    where
        E: Executor<'c, Database = Db>,
    {
        self.fetch_all(on).await.map_err(query(op))
    }

    async fn one<'c, E>(self, on: E, op: &'static str) -> Result<Row, StoreError>
    where
        E: Executor<'c, Database = Db>,
    {
        self.fetch_one(on).await.map_err(query(op))
    }

    async fn optional<'c, E>(self, on: E, op: &'static str) -> Result<Option<Row>, StoreError>
    where
        E: Executor<'c, Database = Db>,
    {
        self.fetch_optional(on).await.map_err(query(op))
    }
}

impl<'q, A> Run for Query<'q, Db, A>
where
    A: 'q + IntoArguments<Db> + Send,
{
    async fn run<'c, E>(self, on: E, op: &'static str) -> Result<u64, StoreError>
    where
        E: Executor<'c, Database = Db>,
    {
        let done = self.execute(on).await.map_err(query(op))?;
        Ok(done.rows_affected())
    }
}

impl<'q, O, A> Fetch for QueryScalar<'q, Db, O, A>
where
    O: Send + Unpin,
    A: 'q + IntoArguments<Db> + Send,
    (O,): Send + Unpin + for<'r> FromRow<'r, Row>,
{
    type Item = O;

    async fn all<'c, E>(self, on: E, op: &'static str) -> Result<Vec<O>, StoreError>
    where
        E: Executor<'c, Database = Db>,
    {
        self.fetch_all(on).await.map_err(query(op))
    }

    async fn one<'c, E>(self, on: E, op: &'static str) -> Result<O, StoreError>
    where
        E: Executor<'c, Database = Db>,
    {
        self.fetch_one(on).await.map_err(query(op))
    }

    async fn optional<'c, E>(self, on: E, op: &'static str) -> Result<Option<O>, StoreError>
    where
        E: Executor<'c, Database = Db>,
    {
        self.fetch_optional(on).await.map_err(query(op))
    }
}
