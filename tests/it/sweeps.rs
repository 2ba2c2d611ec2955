//! The abandoned-guests sweep on a separate Postgres database: 10,000 accounts, a dry run
//! that counts exactly what the pass deletes, and a pass killed mid-way that resumes from
//! its checkpoint in another process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use longshore_jobs::{EnqueueRequest, JobState};
use serde_json::json;
use sqlx::PgPool;

use crate::support::{FAST, TestDb, cli, eventually, ok};

/// The example's schema and config, as README shows them.
const SCHEMA: &str = include_str!("../../examples/sweeps/schema.sql");
const EXAMPLE: &str = include_str!("../../examples/sweeps/longshore.toml");

/// The example config on `target_url`, with small pages and a pause so that a pass lasts
/// long enough to be killed half-way, and no schedule (the test starts the passes).
fn example_config(target_url: &str) -> String {
    let mut config: toml::Table = EXAMPLE.replace("TARGET_URL", target_url).parse().unwrap();
    for sweep in config["sweeps"].as_array_mut().unwrap() {
        let sweep = sweep.as_table_mut().unwrap();
        sweep.remove("schedule");
        if sweep["name"].as_str() == Some("guests") {
            sweep.insert("batch".into(), 100.into());
            sweep.insert("pause".into(), "100ms".into());
        }
    }
    toml::to_string(&config).unwrap()
}

/// A fresh schema in the targets database with the example's schema applied: its URL and
/// a pool on it.
async fn example_target() -> (String, PgPool) {
    let url = longshore_testkit::postgres_target_url().await.unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(SCHEMA).execute(&pool).await.unwrap();
    (url, pool)
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
    let (target_url, target) = example_target().await;
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
    // Every row the sweep deletes is written down, to show none is deleted twice.
    sqlx::raw_sql(
        "CREATE TABLE deleted (id bigint NOT NULL); \
         CREATE FUNCTION note_delete() RETURNS trigger LANGUAGE plpgsql AS \
           'BEGIN INSERT INTO deleted VALUES (OLD.id); RETURN OLD; END'; \
         CREATE TRIGGER note_delete AFTER DELETE ON accounts \
           FOR EACH ROW EXECUTE FUNCTION note_delete();",
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
    assert_eq!(count(&target, "SELECT count(*) FROM deleted").await, doomed);
    assert_eq!(
        count(&target, "SELECT count(DISTINCT id) FROM deleted").await,
        doomed
    );
    let attempts = db.store.attempts(pass.id).await.unwrap();
    assert_eq!(
        attempts[0].outcome, "lost",
        "the killed attempt was rescued"
    );
}

/// A runtime manager for the container sweep: it answers DELETE per game by the game's
/// class (`game % 10`) and remembers every answer.
struct RuntimeManager {
    answers: Mutex<BTreeMap<i64, Vec<u16>>>,
    /// The game database, where game 2 restarts while its removal is under way.
    target: PgPool,
}

impl RuntimeManager {
    /// 2: always fails (500), but game 2 restarts after its first failure; 4: already
    /// removed (404); 6: someone else is on it (409); 8: fails once (503), then removes;
    /// 0: removes.
    async fn answer(&self, game: i64) -> u16 {
        if game == 2 {
            sqlx::query("UPDATE runtimes SET status = 'running' WHERE game_id = 2")
                .execute(&self.target)
                .await
                .unwrap();
        }
        let mut answers = self.answers.lock().unwrap();
        let seen = answers.entry(game).or_default();
        let status = match game % 10 {
            2 => 500,
            4 => 404,
            6 => 409,
            8 if seen.is_empty() => 503,
            _ => 204,
        };
        seen.push(status);
        status
    }

    fn answers(&self) -> BTreeMap<i64, Vec<u16>> {
        self.answers.lock().unwrap().clone()
    }
}

#[poem::handler]
async fn remove_container(
    poem::web::Path(game): poem::web::Path<i64>,
    manager: poem::web::Data<&Arc<RuntimeManager>>,
) -> poem::http::StatusCode {
    poem::http::StatusCode::from_u16(manager.answer(game).await).unwrap()
}

/// Serves `manager` on a free port; returns its base URL.
async fn serve_runtime_manager(manager: Arc<RuntimeManager>) -> String {
    use poem::EndpointExt;
    use poem::listener::Acceptor;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let app = poem::Route::new()
        .at("/games/:game/container", poem::delete(remove_container))
        .data(manager);
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    format!("http://{addr}")
}

/// The example config with the test's target and runtime manager, quick retries, and no
/// schedules (the test starts the passes).
fn container_config(target_url: &str, manager_url: &str) -> String {
    let text = EXAMPLE
        .replace("TARGET_URL", target_url)
        .replace("http://runtime-manager:8700", manager_url);
    let mut config: toml::Table = text.parse().unwrap();
    for sweep in config["sweeps"].as_array_mut().unwrap() {
        sweep.as_table_mut().unwrap().remove("schedule");
    }
    let runtime = config["runtime"].as_table_mut().unwrap();
    runtime.insert("max_attempts".into(), 3.into());
    runtime.insert("retry_base".into(), "200ms".into());
    toml::to_string(&config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_sweep_removes_each_expired_container_once_despite_failures() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (target_url, target) = example_target().await;
    // 400 games: every fourth running; even ones stopped 3 days ago, odd ones an hour ago.
    sqlx::raw_sql(
        "INSERT INTO runtimes SELECT g, CASE WHEN g % 4 = 0 THEN 'running' ELSE 'stopped' END \
           FROM generate_series(1, 400) g; \
         INSERT INTO runtime_operations (game_id, at, operation, outcome) \
           SELECT g, now() - CASE WHEN g % 2 = 0 THEN interval '3 days' ELSE interval '1 hour' END, \
                  'stop', 'stopped' \
           FROM generate_series(1, 400) g;",
    )
    .execute(&target)
    .await
    .unwrap();
    // Eligible: stopped, last operation over the TTL (1 day) ago: g % 4 = 2, of every class.
    let eligible: Vec<i64> = (1..=400).filter(|g| g % 4 == 2).collect();

    let manager = Arc::new(RuntimeManager {
        answers: Mutex::default(),
        target: target.clone(),
    });
    let manager_url = serve_runtime_manager(Arc::clone(&manager)).await;
    let config = db.path("longshore.toml");
    std::fs::write(&config, container_config(&target_url, &manager_url)).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let _worker = db.spawn(
        "worker",
        &[
            &["worker", "--config", &config, "--queues", "default=8"],
            FAST,
        ]
        .concat(),
    );
    let client = db.client();
    let finished = |id| {
        let store = db.store.clone();
        async move {
            let job = store.job(id).await.unwrap()?;
            job.state.is_terminal().then_some(job)
        }
    };

    let dry = client
        .enqueue(EnqueueRequest::new(
            "sweep",
            json!({"sweep": "containers", "dry_run": true}),
        ))
        .await
        .unwrap();
    let dry = eventually(Duration::from_secs(60), "the dry run", || finished(dry.id)).await;
    assert_eq!(
        dry.result.as_ref().unwrap()["matched"],
        eligible.len(),
        "{dry:?}"
    );
    assert!(manager.answers().is_empty(), "a dry run calls nothing");

    let pass = client
        .enqueue(EnqueueRequest::new("sweep", json!({"sweep": "containers"})))
        .await
        .unwrap();
    let pass = eventually(Duration::from_secs(60), "the pass", || finished(pass.id)).await;
    assert_eq!(pass.state, JobState::Completed, "{pass:?}");
    let result = pass.result.unwrap();
    assert_eq!(result["acted"], eligible.len(), "{result}");
    assert_eq!(result["complete"], true);
    // The pass's counts are on the event stream too.
    let events = db.store.job_events(pass.id).await.unwrap();
    let last = events
        .iter()
        .rfind(|e| e.event_type == "sweep.finished")
        .expect("a sweep.finished event");
    let data = last.data.as_ref().unwrap();
    assert_eq!(data["acted"], eligible.len());
    assert_eq!(data["sweep"], "containers");

    // Every child ends: completed, or discarded after its retries.
    let filter = longshore_jobs::admin::JobFilter {
        kind: Some("runtime.remove".to_owned()),
        ..Default::default()
    };
    let children = eventually(Duration::from_secs(90), "every removal ends", || async {
        let children = db.store.list_jobs(&filter, None, 1000).await.unwrap();
        children
            .iter()
            .all(|j| j.state.is_terminal())
            .then_some(children)
    })
    .await;
    let mut games: Vec<i64> = children
        .iter()
        .map(|j| j.args["game_id"].as_i64().unwrap())
        .collect();
    games.sort();
    assert_eq!(
        games, eligible,
        "one child per eligible record, none for others"
    );

    let answers = manager.answers();
    let log: Vec<(i64, String)> = sqlx::query_as(
        "SELECT game_id, outcome FROM runtime_operations WHERE operation = 'remove' ORDER BY id",
    )
    .fetch_all(&target)
    .await
    .unwrap();
    let status: BTreeMap<i64, String> =
        sqlx::query_as::<_, (i64, String)>("SELECT game_id, status FROM runtimes")
            .fetch_all(&target)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for child in &children {
        let game = child.args["game_id"].as_i64().unwrap();
        let outcomes: Vec<&str> = log
            .iter()
            .filter(|(g, _)| *g == game)
            .map(|(_, o)| o.as_str())
            .collect();
        let (state, calls, logged, final_status): (JobState, &[u16], &[&str], &str) =
            match game % 10 {
                // Restarted after its first failed request: the retry leaves it alone.
                _ if game == 2 => (
                    JobState::Completed,
                    &[500],
                    &["failed", "skipped"],
                    "running",
                ),
                2 => (
                    JobState::Discarded,
                    &[500, 500, 500],
                    &["failed", "failed", "failed"],
                    "stopped",
                ),
                4 => (JobState::Completed, &[404], &["already_removed"], "removed"),
                6 => (JobState::Completed, &[409], &["conflict"], "stopped"),
                8 => (
                    JobState::Completed,
                    &[503, 204],
                    &["failed", "removed"],
                    "removed",
                ),
                _ => (JobState::Completed, &[204], &["removed"], "removed"),
            };
        assert_eq!(child.state, state, "game {game}: {child:?}");
        assert_eq!(answers[&game], calls, "game {game}'s requests");
        assert_eq!(outcomes, logged, "game {game}'s operation log");
        assert_eq!(status[&game], final_status, "game {game}'s record");
        let successes = calls
            .iter()
            .filter(|c| matches!(c, 200..=299 | 404 | 409))
            .count();
        assert!(
            successes <= 1,
            "game {game}: at most one successful removal"
        );
        // Exactly one successful removal, or a discarded child (or, for the game that
        // restarted, none at all).
        assert_eq!(successes == 1, state == JobState::Completed && game != 2);
    }
    // Records inside the TTL, or running, are untouched.
    for game in (1..=400).filter(|g| g % 4 != 2) {
        assert!(!answers.contains_key(&game), "game {game} was not eligible");
        assert!(
            log.iter().all(|(g, _)| *g != game),
            "game {game} was logged"
        );
        let expected = if game % 4 == 0 { "running" } else { "stopped" };
        assert_eq!(status[&game], expected);
    }
    // A second pass finds nothing: removed records are removed, and the failed and
    // conflicting ones were touched just now, so their TTL starts again.
    let again = client
        .enqueue(EnqueueRequest::new("sweep", json!({"sweep": "containers"})))
        .await
        .unwrap();
    let again = eventually(Duration::from_secs(60), "the second pass", || {
        finished(again.id)
    })
    .await;
    assert_eq!(again.result.unwrap()["matched"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_sweep_ends_with_a_clear_error_not_a_hung_job() {
    let db = TestDb::sqlite().await;
    // A query stuck on the server needs a Postgres target (outside CI, it may be missing).
    let slow_target = longshore_testkit::postgres_target_url().await;
    let stuck = match &slow_target {
        Some(url) => format!(
            r#"
[targets.slow]
url = "{url}"

[[sweeps]]
name = "stuck"
target = "slow"
retention = "1day"
max_time = "1s"
query = "SELECT '1' AS key FROM pg_sleep(30) WHERE $1::timestamptz IS NOT NULL AND $2::text IS NULL LIMIT $3"
action = {{ type = "statement", sql = "SELECT $1::text[]" }}
"#
        ),
        None => String::new(),
    };
    let config = db.path("longshore.toml");
    std::fs::write(
        &config,
        stuck
            + r#"
[targets.nowhere]
url = "postgres://longshore@127.0.0.1:9/none"

[targets.local]
url = "sqlite::memory:"

[[sweeps]]
name = "unreachable"
target = "nowhere"
retention = "1day"
query = "SELECT id::text AS key FROM t WHERE $1 < now() AND $2::text IS NULL LIMIT $3"
action = { type = "statement", sql = "DELETE FROM t WHERE id = ANY($1::text[]::bigint[])" }
"#,
    )
    .unwrap();
    // A sweep the target refuses (a table dropped after it was declared, say): a config
    // file's would stop the start, so this one is stored as the API stored it then.
    let typo: longshore_jobs::sweep::SweepDef = toml::from_str(
        r#"
name = "typo"
target = "local"
retention = "1day"
query = "SELEC key FROM nothing WHERE $1 AND $2 AND $3"
action = { type = "statement", sql = "DELETE FROM nothing WHERE key IN (SELECT value FROM json_each($1))" }
"#,
    )
    .unwrap();
    db.store
        .put_sweep(&typo, longshore_jobs::schedule::Source::Api)
        .await
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
    // With its attempts spent, the unreachable pass ends discarded, saying why.
    let once = |sweep: &str| EnqueueRequest {
        max_attempts: Some(1),
        ..EnqueueRequest::new("sweep", json!({ "sweep": sweep }))
    };
    let gave_up = client.enqueue(once("unreachable")).await.unwrap();
    let job = eventually(Duration::from_secs(30), "the pass gives up", || async {
        let job = db.store.job(gave_up.id).await.unwrap()?;
        (job.state == JobState::Discarded).then_some(job)
    })
    .await;
    assert!(job.last_error.unwrap_or_default().contains("unreachable"));
    // A query that outlasts the pass's max_time is abandoned (the server cancels it too):
    // the attempt fails, nothing hangs.
    if slow_target.is_some() {
        let stuck = client.enqueue(once("stuck")).await.unwrap();
        let job = eventually(Duration::from_secs(20), "the stuck pass ends", || async {
            let job = db.store.job(stuck.id).await.unwrap()?;
            (job.state == JobState::Discarded).then_some(job)
        })
        .await;
        let error = job.last_error.unwrap_or_default();
        assert!(error.contains("ran longer than max_time"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_run_sweeps_from_the_cli_and_budgets_stop_passes_partway() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (target_url, target) = example_target().await;
    // 1,000 old unseated guests (doomed) and 100 new ones.
    sqlx::raw_sql(
        "INSERT INTO accounts (kind, created_at) \
           SELECT 'guest', now() - CASE WHEN g <= 1000 THEN interval '40 days' ELSE interval '1 day' END \
           FROM generate_series(1, 1100) g;",
    )
    .execute(&target)
    .await
    .unwrap();
    // The guest sweep with a row budget of 250 a pass, and a slow copy with a time budget.
    let mut config: toml::Table = example_config(&target_url).parse().unwrap();
    let sweeps = config["sweeps"].as_array_mut().unwrap();
    let mut slow = sweeps[0].as_table().unwrap().clone();
    let guests = sweeps[0].as_table_mut().unwrap();
    guests.insert("max_rows".into(), 250.into());
    guests.remove("pause");
    slow.insert("name".into(), "slow".into());
    slow.insert("batch".into(), 50.into());
    slow.insert("pause".into(), "300ms".into());
    slow.insert("max_time".into(), "1s".into());
    sweeps.push(slow.into());
    let path = db.path("longshore.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let (_serve, base) = db.serve(&path, &[]);
    let listed = eventually(Duration::from_secs(30), "the API answers", || async {
        let out = cli(&base, None, &["sweeps", "list"]);
        out.status.success().then(|| ok(&out))
    })
    .await;
    for name in ["guests", "containers", "slow"] {
        assert!(listed.contains(name), "{listed}");
    }

    // A time budget ends a pass with a partial result, not a hung job.
    let slow = ok(&cli(&base, None, &["sweeps", "dry-run", "slow"]));
    assert!(slow.contains("stopped by its max_time budget"), "{slow}");
    assert!(slow.contains("(dry run: nothing changed)"), "{slow}");

    // The row budget: 250 a pass, each pass going on after the previous one's last key.
    let dry = ok(&cli(&base, None, &["sweeps", "dry-run", "guests"]));
    assert!(dry.starts_with("guests: 250 matched, 0 acted on"), "{dry}");
    // A statement deletes another application's rows: without a terminal to ask on, the
    // pass waits for --yes, and nothing is deleted.
    let before = count(&target, "SELECT count(*) FROM accounts").await;
    let refused = cli(&base, None, &["sweeps", "run", "guests"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("would run its statement on 250 rows of target")
            && stderr.contains("--yes"),
        "{stderr}"
    );
    assert_eq!(
        count(&target, "SELECT count(*) FROM accounts").await,
        before
    );
    let mut passes = Vec::new();
    loop {
        let out = ok(&cli(
            &base,
            None,
            &["sweeps", "run", "guests", "--yes", "-o", "json"],
        ));
        let result: serde_json::Value = serde_json::from_str(&out).unwrap();
        let complete = result["complete"] == true;
        passes.push(result);
        if complete || passes.len() > 6 {
            break;
        }
    }
    let acted: Vec<u64> = passes
        .iter()
        .map(|p| p["acted"].as_u64().unwrap())
        .collect();
    assert_eq!(acted, [250, 250, 250, 250, 0], "{passes:?}");
    for pair in passes.windows(2) {
        assert_eq!(pair[0]["stopped_by"], "max_rows");
        assert_eq!(pair[1]["resumed_from"], pair[0]["last_key"], "{pair:?}");
    }
    assert_eq!(count(&target, "SELECT count(*) FROM accounts").await, 100);
    let shown = ok(&cli(&base, None, &["sweeps", "get", "guests"]));
    assert!(shown.contains("completed (matched 0, acted 0"), "{shown}");

    // A readable error for a sweep that does not exist.
    let missing = cli(&base, None, &["sweeps", "run", "nope"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no sweep is named \"nope\""), "{stderr}");
}
