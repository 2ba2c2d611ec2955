//! The abandoned-guests sweep on a separate Postgres database: 10,000 accounts, a dry run
//! that counts exactly what the pass deletes, and a pass killed mid-way that resumes from
//! its checkpoint in another process.

use std::time::Duration;

use longshore_jobs::{EnqueueRequest, JobState};
use serde_json::json;
use sqlx::PgPool;

use crate::support::{FAST, TestDb, eventually};

/// The example's schema and config, as README shows them.
const SCHEMA: &str = include_str!("../../examples/sweeps/schema.sql");
const EXAMPLE: &str = include_str!("../../examples/sweeps/longshore.toml");

/// The example config on `target_url`, with small pages and a pause so that a pass lasts
/// long enough to be killed half-way, and no schedule (the test starts the passes).
fn example_config(target_url: &str) -> String {
    let mut config: toml::Table = EXAMPLE.replace("TARGET_URL", target_url).parse().unwrap();
    let sweep = config["sweeps"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap();
    sweep.insert("batch".into(), 100.into());
    sweep.insert("pause".into(), "100ms".into());
    sweep.remove("schedule");
    toml::to_string(&config).unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_sweep_deletes_exactly_the_old_unseated_guests_and_resumes_after_a_kill() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let target_url = longshore_testkit::postgres_target_url().await.unwrap();
    let target = PgPool::connect(&target_url).await.unwrap();
    sqlx::raw_sql(SCHEMA).execute(&target).await.unwrap();
    // 10,000 guests: even ids 40 days old, odd ones 1 day old; a third of the old are seated.
    sqlx::raw_sql(
        "INSERT INTO accounts (kind, created_at) \
           SELECT 'guest', now() - CASE WHEN g % 2 = 0 THEN interval '40 days' ELSE interval '1 day' END \
           FROM generate_series(1, 10000) g; \
         INSERT INTO seats SELECT id, 1 FROM accounts WHERE created_at < now() - interval '30 days' AND id % 3 = 0; \
         INSERT INTO sessions SELECT id, 't' FROM accounts; \
         INSERT INTO identities SELECT id, 'device' FROM accounts; \
         INSERT INTO stats SELECT id, 0 FROM accounts;",
    )
    .execute(&target)
    .await
    .unwrap();
    let doomed = count(&target, "SELECT count(*) FROM accounts a WHERE created_at < now() - interval '30 days' AND NOT EXISTS (SELECT 1 FROM seats s WHERE s.account_id = a.id)").await;
    let seated_old = count(&target, "SELECT count(*) FROM seats").await;
    assert!(doomed > 3000 && seated_old > 1500, "{doomed} {seated_old}");

    let config = db.path("longshore.toml");
    std::fs::write(&config, example_config(&target_url)).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let args = [&["worker", "--config", &config], FAST].concat();
    let client = db.client();

    // A dry run counts what a pass would delete, and deletes nothing.
    let mut first = db.spawn("first", &args);
    let dry = client
        .enqueue(EnqueueRequest::new(
            "sweep",
            json!({"sweep": "guests", "dry_run": true}),
        ))
        .await
        .unwrap();
    let dry_job = eventually(Duration::from_secs(60), "the dry run", || async {
        let job = db.store.job(dry.id).await.unwrap()?;
        (job.state == JobState::Completed).then_some(job)
    })
    .await;
    let result = dry_job.result.unwrap();
    assert_eq!(result["matched"], doomed, "{result}");
    assert_eq!(result["dry_run"], true);
    assert_eq!(
        count(&target, "SELECT count(*) FROM accounts").await,
        10_000
    );

    // The pass: killed after a few pages, resumed by another process from its checkpoint.
    let pass = client
        .enqueue(EnqueueRequest::new("sweep", json!({"sweep": "guests"})))
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "a few pages done", || async {
        let progress = db.store.job_progress(pass.id).await.unwrap()?;
        (progress["pages"].as_u64()? >= 3).then_some(())
    })
    .await;
    first.signal(libc::SIGKILL);
    first.wait_for_exit(Duration::from_secs(5));
    let deleted_before = 10_000 - count(&target, "SELECT count(*) FROM accounts").await;
    assert!(
        deleted_before > 0 && deleted_before < doomed,
        "killed mid-pass: {deleted_before}"
    );
    let _second = db.spawn("second", &args);
    let done = eventually(Duration::from_secs(90), "the pass completes", || async {
        let job = db.store.job(pass.id).await.unwrap()?;
        (job.state == JobState::Completed).then_some(job)
    })
    .await;
    let result = done.result.unwrap();
    assert_eq!(done.attempt, 2, "one attempt killed, one resumed");
    assert_eq!(result["complete"], true);
    // The page in flight at the kill may have been deleted without its checkpoint: its rows
    // are then neither candidates again nor counted, so the counts may miss one page.
    let acted = result["acted"].as_i64().unwrap();
    assert!(
        (doomed - 100..=doomed).contains(&acted),
        "acted {acted} of {doomed}: {result}"
    );
    // Exactly the old unseated guests are gone, their dependants with them.
    assert_eq!(
        count(&target, "SELECT count(*) FROM accounts").await,
        10_000 - doomed
    );
    assert_eq!(
        count(
            &target,
            "SELECT count(*) FROM accounts WHERE created_at > now() - interval '30 days'"
        )
        .await,
        5_000
    );
    assert_eq!(
        count(&target, "SELECT count(*) FROM seats").await,
        seated_old
    );
    for table in ["sessions", "identities", "stats"] {
        assert_eq!(
            count(&target, &format!("SELECT count(*) FROM {table}")).await,
            10_000 - doomed,
            "{table}"
        );
    }
    let attempts = db.store.attempts(pass.id).await.unwrap();
    assert_eq!(
        attempts[0].outcome, "lost",
        "the killed attempt was rescued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_sweep_enqueues_one_child_per_eligible_record() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let target_url = longshore_testkit::postgres_target_url().await.unwrap();
    let target = PgPool::connect(&target_url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE runtime_records (game_id bigint PRIMARY KEY, status text NOT NULL, last_op_at timestamptz NOT NULL); \
         INSERT INTO runtime_records \
           SELECT g, CASE WHEN g % 4 = 0 THEN 'running' ELSE 'stopped' END, \
                  now() - CASE WHEN g % 2 = 0 THEN interval '3 days' ELSE interval '1 hour' END \
           FROM generate_series(1, 400) g;",
    )
    .execute(&target)
    .await
    .unwrap();
    // Eligible: stopped and last touched over a day ago: g % 2 = 0 and g % 4 != 0.
    let eligible: Vec<i64> = (1..=400).filter(|g| g % 2 == 0 && g % 4 != 0).collect();
    let config = db.path("longshore.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[targets.runtime]
url = "{target_url}"

[[sweeps]]
name = "containers"
target = "runtime"
retention = "1day"
batch = 64
query = """
SELECT game_id::text AS key, json_build_object('game_id', game_id) AS args FROM runtime_records
WHERE status = 'stopped' AND last_op_at < $1 AND ($2::text IS NULL OR game_id > $2::bigint)
ORDER BY game_id LIMIT $3
"""
action = {{ type = "fan_out", kind = "noop", queue = "removals" }}
"#
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let _worker = db.spawn(
        "worker",
        &["worker", "--config", &config, "--queues", "default=4"],
    );
    let client = db.client();
    let dry = client
        .enqueue(EnqueueRequest::new(
            "sweep",
            json!({"sweep": "containers", "dry_run": true}),
        ))
        .await
        .unwrap();
    let pass = client
        .enqueue(EnqueueRequest::new("sweep", json!({"sweep": "containers"})))
        .await
        .unwrap();
    for (id, what) in [(dry.id, "the dry run"), (pass.id, "the pass")] {
        eventually(Duration::from_secs(60), what, || async {
            let job = db.store.job(id).await.unwrap()?;
            (job.state == JobState::Completed).then_some(())
        })
        .await;
    }
    let dry = db.store.job(dry.id).await.unwrap().unwrap().result.unwrap();
    assert_eq!(dry["matched"], eligible.len(), "{dry}");
    assert_eq!(dry["acted"], 0);
    let result = db
        .store
        .job(pass.id)
        .await
        .unwrap()
        .unwrap()
        .result
        .unwrap();
    assert_eq!(result["acted"], eligible.len(), "{result}");
    assert_eq!(result["complete"], true);
    let filter = longshore_jobs::admin::JobFilter {
        tag: Some("sweep:containers".to_owned()),
        ..Default::default()
    };
    let children = db.store.list_jobs(&filter, None, 1000).await.unwrap();
    let mut games: Vec<i64> = children
        .iter()
        .map(|j| j.args["game_id"].as_i64().unwrap())
        .collect();
    games.sort();
    assert_eq!(
        games, eligible,
        "one child per eligible record, none for the others"
    );
    assert!(children.iter().all(|j| j.queue == "removals"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_sweep_ends_with_a_clear_error_not_a_hung_job() {
    let db = TestDb::sqlite().await;
    let config = db.path("longshore.toml");
    std::fs::write(
        &config,
        r#"
[targets.nowhere]
url = "postgres://longshore@127.0.0.1:9/none"

[targets.local]
url = "sqlite::memory:"

[[sweeps]]
name = "typo"
target = "local"
retention = "1day"
query = "SELEC key FROM nothing WHERE $1 AND $2 AND $3"
action = { type = "statement", sql = "DELETE FROM nothing WHERE key IN (SELECT value FROM json_each($1))" }

[[sweeps]]
name = "unreachable"
target = "nowhere"
retention = "1day"
query = "SELECT id::text AS key FROM t WHERE $1 < now() AND $2::text IS NULL LIMIT $3"
action = { type = "statement", sql = "DELETE FROM t WHERE id = ANY($1::text[]::bigint[])" }
"#,
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let _worker = db.spawn("worker", &["worker", "--config", &config]);
    let client = db.client();
    let typo = client
        .enqueue(EnqueueRequest::new("sweep", json!({"sweep": "typo"})))
        .await
        .unwrap();
    let unreachable = client
        .enqueue(EnqueueRequest::new(
            "sweep",
            json!({"sweep": "unreachable"}),
        ))
        .await
        .unwrap();
    let missing = client
        .enqueue(EnqueueRequest::new(
            "sweep",
            json!({"sweep": "no-such-sweep"}),
        ))
        .await
        .unwrap();
    // A broken query will not heal: discarded at once, saying what failed.
    for (id, says) in [
        (typo.id, "candidate query failed"),
        (missing.id, "no sweep \"no-such-sweep\""),
    ] {
        let job = eventually(Duration::from_secs(30), "the broken sweep ends", || async {
            let job = db.store.job(id).await.unwrap()?;
            (job.state == JobState::Discarded).then_some(job)
        })
        .await;
        assert!(
            job.last_error.as_deref().unwrap_or_default().contains(says),
            "{:?}",
            job.last_error
        );
    }
    // An unreachable target may come back: the attempt fails and waits for its backoff.
    let job = eventually(
        Duration::from_secs(30),
        "the unreachable target fails an attempt",
        || async {
            let job = db.store.job(unreachable.id).await.unwrap()?;
            (job.state == JobState::Retryable).then_some(job)
        },
    )
    .await;
    assert!(job.last_error.unwrap_or_default().contains("unreachable"));
}
