//! Store errors as people read them: what the database said, once, and what to do when the
//! database itself is missing.

use std::error::Error as _;

use std::sync::Arc;
use std::time::Duration;

use longshore_jobs::{
    Client, Completion, EnqueueRequest, JobState, Outcome, Registry, Store, StoreConfig,
    StoreError, WorkerId,
};
use serde_json::json;

use crate::support::TestDb;

crate::per_backend!(
    crate::support::db =>
    says_what_the_database_said_once,
    says_how_to_create_a_missing_database,
);

/// A server that refuses connections ("too many clients") is named as the reason, not only
/// "pool timed out": sqlx retries such a refusal until its timeout and then hides it.
#[tokio::test]
async fn says_why_postgres_refused_the_connection() {
    let Some(db) = crate::support::db(crate::support::Backend::Postgres).await else {
        return;
    };
    // A role allowed no connections is refused as a full server refuses: SQLSTATE 53300.
    let role = format!("longshore_full_{}", uuid::Uuid::new_v4().simple());
    let create = format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 0");
    longshore_testkit::execute(&db.url, &create, &[]).await;
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    let config = StoreConfig {
        url: format!("{scheme}://{role}@{host}"),
        timeout: std::time::Duration::from_millis(500),
        ..StoreConfig::default()
    };
    let result = Store::connect(&config).await;
    longshore_testkit::execute(&db.url, &format!("DROP ROLE {role}"), &[]).await;
    let error = match result {
        Err(error) => error,
        Ok(_) => panic!("a role with no connections left connects"),
    };
    let text = error.to_string();
    assert!(matches!(error, StoreError::Connect(_)), "{error:?}");
    assert!(
        text.starts_with("cannot connect to the database: "),
        "{text}"
    );
    assert!(text.contains("too many connections for role"), "{text}");
}

/// Connections the server ended while they sat in the pool (as a restart ends them) are
/// found out before use: a connection idle over a second is checked as it is taken, so the
/// enqueue, the claim and the completion after the break all succeed.
#[tokio::test]
async fn replaces_connections_the_server_ended_while_idle() {
    let Some(db) = crate::support::db(crate::support::Backend::Postgres).await else {
        return;
    };
    // A name of its own picks this store's connections out of every other test's.
    let name = format!("longshore_ended_{}", uuid::Uuid::new_v4().simple());
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let config = StoreConfig {
        url: format!("{}{sep}application_name={name}", db.url),
        ..StoreConfig::default()
    };
    let store = Store::connect(&config).await.unwrap();
    let mut registry = Registry::new();
    longshore_jobs::kinds::register_builtins(&mut registry);
    let client = Client::new(store.clone(), Arc::new(registry));
    let request = || EnqueueRequest::new("noop", json!({}));
    client.enqueue(request()).await.unwrap();
    // Every pooled connection ends; the wake-up listener's is spared, or its reconnects would
    // use up the ended ones before the enqueue below could meet one. One row a connection
    // ended (sqlx counts a SELECT's rows as affected).
    let end_all = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                   WHERE application_name = $1 AND query NOT ILIKE 'LISTEN%'";
    let ended = longshore_testkit::execute(&db.url, end_all, &[&name]).await;
    assert!(ended >= 2, "{ended} connections ended");
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let job = client.enqueue(request()).await.unwrap();
    let worker = WorkerId("default@ended".into());
    let claimed = store
        .claim("default", &worker, 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2, "both jobs claimed");
    let done = Completion {
        lease: claimed
            .iter()
            .find(|j| j.id == job.id)
            .unwrap()
            .lease(&worker),
        queue: "default".into(),
        outcome: Outcome::Completed { result: None },
    };
    assert_eq!(store.complete(&[done]).await.unwrap(), [job.id]);
    let state = store.job(job.id).await.unwrap().unwrap().state;
    assert_eq!(state, JobState::Completed);
}

async fn says_what_the_database_said_once(db: TestDb) {
    // The database refuses every new queue setting, with its own words.
    if db.is_postgres() {
        for sql in [
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             RAISE EXCEPTION 'refused by the test' \
             USING DETAIL = 'Nothing may change.', HINT = 'Drop the trigger.'; END $$",
            "CREATE TRIGGER refuse BEFORE INSERT ON queues FOR EACH ROW EXECUTE FUNCTION refuse()",
        ] {
            longshore_testkit::execute(&db.url, sql, &[]).await;
        }
    } else {
        let sql = "CREATE TRIGGER refuse BEFORE INSERT ON queues \
                   BEGIN SELECT RAISE(ABORT, 'refused by the test'); END";
        longshore_testkit::execute(&db.url, sql, &[]).await;
    }
    let error = db.store.pause_queue("mail").await.unwrap_err();
    let said = if db.is_postgres() {
        // sqlx's own text names the line of Postgres's C source that raised it.
        let driver = error.driver().unwrap().to_string();
        assert!(driver.contains(" at line "), "{driver}");
        "database operation set queue failed: refused by the test \
         (detail: Nothing may change; hint: Drop the trigger)"
    } else {
        "database operation set queue failed: refused by the test"
    };
    assert_eq!(error.to_string(), said);
    // A chain printer (logs, the CLI's error line) says it once too.
    assert!(error.source().is_none());
    assert_eq!(format!("{:#}", anyhow::Error::from(error)), said);
}

async fn says_how_to_create_a_missing_database(db: TestDb) {
    let dir = longshore_testkit::TempDir::new().unwrap();
    let (url, said) = if db.is_postgres() {
        let base = longshore_testkit::pg_base_url();
        let (server, _) = base.rsplit_once('/').unwrap();
        let name = format!("longshore_missing_{}", uuid::Uuid::new_v4().simple());
        let url = format!("{server}/{name}");
        (url, format!(" {name}`, or fix the URL"))
    } else {
        let missing = dir.path().join("no").join("such");
        let url = format!("sqlite:{}", missing.join("longshore.db").display());
        (url, format!("`mkdir -p {}`", missing.display()))
    };
    let config = StoreConfig {
        url,
        ..StoreConfig::default()
    };
    let error = match Store::connect(&config).await {
        Err(error) => error,
        Ok(_) => panic!("{} connects", config.url),
    };
    assert!(matches!(error, StoreError::Missing { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.starts_with("cannot open the database: "), "{text}");
    assert!(text.contains(&said), "{text}");
    if db.is_postgres() {
        assert!(text.contains("does not exist on "), "{text}");
        assert!(text.contains("create it with `createdb -h "), "{text}");
    }
    // Nothing was created on the way.
    if !db.is_postgres() {
        assert!(!dir.path().join("no").exists());
    }
}
