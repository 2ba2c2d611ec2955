//! What the store scenarios share: a fresh database per backend, and a client that knows the
//! built-in kinds.

use std::sync::Arc;

use longshore_jobs::{Client, Registry, kinds};
pub use longshore_testkit::{Backend, TestDb, enqueue};

/// A fresh database for one scenario (`None`: Postgres unreachable outside CI).
pub async fn db(backend: Backend) -> Option<TestDb> {
    TestDb::new(backend).await
}

/// A client over the scenario's store with the built-in kinds (`noop`, `sleep`).
pub fn client(db: &TestDb) -> Client {
    let mut registry = Registry::new();
    kinds::register_builtins(&mut registry);
    Client::new(db.store.clone(), Arc::new(registry))
}
