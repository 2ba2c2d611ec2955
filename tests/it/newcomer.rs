//! The command line as scripts and newcomers lean on it: exit codes, a closed pipe, the
//! live tail, paging, ids by prefix, the token modes, the start-up line and its checks,
//! completions. Each test runs the real binary against a real server.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{BIN, TestDb, cli, eventually, free_port, ok};

fn code(output: &std::process::Output) -> Option<i32> {
    output.status.code()
}

fn text(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Enqueues `n` noop jobs through the batch endpoint.
async fn enqueue_many(base: &str, n: usize) {
    let http = reqwest::Client::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let jobs: Vec<Value> = chunk
            .iter()
            .map(|i| json!({ "kind": "noop", "args": {}, "tags": [format!("n{i}")], "delay_ms": 3_600_000 }))
            .collect();
        let answer = http
            .post(format!("{base}/api/v1/jobs/batch"))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{:?}", answer.text().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_a_script_how_its_job_ended() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    let run = |args: &[&str]| cli(&base, None, args);

    let completed = run(&[
        "jobs",
        "enqueue",
        "sleep",
        "--args",
        r#"{"ms": 50}"#,
        "--wait",
    ]);
    assert_eq!(code(&completed), Some(0), "{completed:?}");
    assert!(text(&completed).0.contains("completed"));

    let discarded = run(&[
        "jobs",
        "enqueue",
        "sleep",
        "--args",
        r#"{"ms": 10, "fail": "disk full"}"#,
        "--max-attempts",
        "1",
        "--wait",
    ]);
    let (stdout, stderr) = text(&discarded);
    assert_eq!(code(&discarded), Some(10), "{stdout}{stderr}");
    assert!(stdout.contains("discarded"), "{stdout}");
    assert!(stderr.contains("ended discarded: disk full"), "{stderr}");

    let later = ok(&run(&[
        "jobs", "enqueue", "noop", "--delay", "1h", "-o", "json",
    ]));
    let later: Value = serde_json::from_str(&later).unwrap();
    let later = later["id"].as_str().unwrap().to_owned();
    ok(&run(&["jobs", "cancel", &later]));
    let cancelled = run(&["jobs", "watch", &later]);
    assert_eq!(code(&cancelled), Some(11), "{cancelled:?}");

    let started = Instant::now();
    let slow = run(&[
        "jobs",
        "enqueue",
        "sleep",
        "--args",
        r#"{"ms": 20000}"#,
        "--wait",
        "--timeout",
        "1s",
    ]);
    assert_eq!(code(&slow), Some(12), "{slow:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(text(&slow).1.contains("it goes on"), "{slow:?}");

    let missing = run(&["jobs", "get", "01a20d06-1678-72a9-bb0f-6fafbef7e5c5"]);
    assert_eq!(code(&missing), Some(3), "{missing:?}");
    // Cancelling a job already cancelled: the state does not allow it.
    let conflict = run(&["jobs", "cancel", &later]);
    assert_eq!(code(&conflict), Some(4), "{conflict:?}");
    let usage = run(&["jobs", "enqueue", "sleep", "--args", "{ms:"]);
    assert_eq!(code(&usage), Some(2), "{usage:?}");
    let invalid = run(&["jobs", "enqueue", "noop", "--priority", "99"]);
    assert_eq!(code(&invalid), Some(2), "{invalid:?}");
    assert!(text(&invalid).1.contains("priority"), "{invalid:?}");
    let down = cli("http://127.0.0.1:9", None, &["stats"]);
    assert_eq!(code(&down), Some(6), "{down:?}");
    // The CLI checks enumerations itself and lists them.
    let state = run(&["jobs", "list", "--state", "failed"]);
    assert_eq!(code(&state), Some(2));
    let stderr = text(&state).1;
    for allowed in [
        "scheduled",
        "available",
        "retryable",
        "completed",
        "discarded",
    ] {
        assert!(stderr.contains(allowed), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_taken_by_unique_prefix() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    let run = |args: &[&str]| cli(&base, None, args);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let out = ok(&run(&[
            "jobs", "enqueue", "noop", "--delay", "1h", "-o", "json",
        ]));
        let created: Value = serde_json::from_str(&out).unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // Ids made in the same second share their first digits: a short prefix is ambiguous.
    let common: String = ids[0]
        .chars()
        .zip(ids[1].chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    assert!(common.len() >= 4, "{ids:?}");
    let prefix = &common[..4];
    let ambiguous = run(&["jobs", "get", prefix]);
    assert_eq!(code(&ambiguous), Some(4), "{ambiguous:?}");
    assert!(text(&ambiguous).1.contains("ambiguous"), "{ambiguous:?}");
    // One more digit than they share names one.
    let unique = &ids[1][..common.len() + 1];
    let shown = ok(&run(&["jobs", "get", unique]));
    assert!(shown.contains(&ids[1]), "{shown}");
    let edited = ok(&run(&["jobs", "edit", unique, "--priority", "7"]));
    assert!(
        edited
            .lines()
            .any(|l| l.starts_with("priority") && l.ends_with(" 7")),
        "{edited}"
    );
    let none = run(&["jobs", "get", "ffff"]);
    assert_eq!(code(&none), Some(3), "{none:?}");
    let bad = run(&["jobs", "get", "xyz"]);
    assert_eq!(code(&bad), Some(2), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_command_quietly() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    // More output than a pipe holds, so the writer meets the closed end.
    enqueue_many(&base, 2000).await;
    let mut child = Command::new(BIN)
        .args(["jobs", "list", "--all", "--limit", "500", "-o", "jsonl"])
        .env("LONGSHORE_SERVER", &base)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("\"kind\":\"noop\""), "{first}");
    drop(reader);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "a closed pipe is not an error: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_list_pages_past_500_with_a_cursor_or_all() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    enqueue_many(&base, 520).await;
    // The default queue's jobs only: the built-in prune schedule adds a job of its own queue
    // at each minute's start, which would move the pages under the test.
    let run = |args: &[&str]| cli(&base, None, &[args, &["--queue", "default"]].concat());
    let all = ok(&run(&[
        "jobs", "list", "--all", "--limit", "200", "-o", "jsonl",
    ]));
    let ids: std::collections::BTreeSet<String> = all
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(all.lines().count(), 520);
    assert_eq!(ids.len(), 520, "no job twice");
    // A table says how to go on; the cursor it gives reads the rest.
    let first = run(&["jobs", "list", "--limit", "500"]);
    let (stdout, stderr) = text(&first);
    assert_eq!(stdout.lines().count(), 501, "a header and 500 rows");
    assert!(stdout.starts_with("ID"), "{stdout}");
    let cursor = stderr
        .split_whitespace()
        .skip_while(|w| *w != "--cursor")
        .nth(1)
        .unwrap_or_else(|| panic!("no cursor in {stderr:?}"));
    let rest = ok(&run(&[
        "jobs", "list", "--limit", "500", "--cursor", cursor, "-o", "jsonl",
    ]));
    assert_eq!(rest.lines().count(), 20);
    let json = ok(&run(&["jobs", "list", "--all", "-o", "json"]));
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 520);
    let refused = run(&["jobs", "list", "--limit", "1000"]);
    assert_eq!(code(&refused), Some(2), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tail_starts_live_and_replays_only_when_asked() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    let run = |args: &[&str]| cli(&base, None, args);
    let failed = run(&[
        "jobs",
        "enqueue",
        "sleep",
        "--args",
        r#"{"ms": 10, "fail": "disk full"}"#,
        "--max-attempts",
        "1",
        "--wait",
    ]);
    assert_eq!(code(&failed), Some(10), "{failed:?}");
    // Live: nothing of the past, the next event first (of the queue the test uses: the
    // built-in prune schedule fires at every minute's start in its own queue).
    let mut live = Command::new(BIN)
        .args([
            "events", "tail", "--count", "1", "--queue", "default", "-o", "jsonl",
        ])
        .env("LONGSHORE_SERVER", &base)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = ok(&run(&["jobs", "enqueue", "noop", "-o", "json"]));
    let new_id = serde_json::from_str::<Value>(&out).unwrap()["id"].clone();
    let output = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        while live.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the live tail printed nothing");
            std::thread::sleep(Duration::from_millis(50));
        }
        live.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["type"], "job.enqueued", "{printed}");
    assert_eq!(printed["job_id"], new_id, "{printed}");
    // From the start: the oldest event first.
    let replay = ok(&run(&[
        "events",
        "tail",
        "--from-start",
        "--count",
        "1",
        "-o",
        "jsonl",
    ]));
    let first: Value = serde_json::from_str(&replay).unwrap();
    assert_eq!(first["type"], "job.enqueued");
    assert_ne!(first["job_id"], new_id);
    // Rows for people carry the time, the type, the queue and the error.
    let failed = ok(&run(&[
        "events",
        "tail",
        "--since",
        "1h",
        "--type",
        "job.discarded",
        "--count",
        "1",
    ]));
    assert!(failed.contains("job.discarded"), "{failed}");
    assert!(failed.contains("default"), "{failed}");
    assert!(failed.contains("disk full"), "{failed}");
}

#[test]
fn tokens_name_their_database_and_never_make_one_up() {
    let dir = tempfile::tempdir().unwrap();
    // No database named, none here, and LONGSHORE_SERVER exported: the command says so
    // rather than going over HTTP or creating ./longshore.db.
    let output = Command::new(BIN)
        .args(["tokens", "list"])
        .env_remove("DATABASE_URL")
        .env_remove("LONGSHORE_CONFIG")
        .env("LONGSHORE_SERVER", "http://127.0.0.1:9")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(code(&output), Some(3), "{stderr}");
    assert!(stderr.contains("no database at longshore.db"), "{stderr}");
    assert!(stderr.contains("--server"), "{stderr}");
    assert!(!dir.path().join("longshore.db").exists());
    // A file that is no Longshore database: told to migrate, and nothing is written.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let url = format!("sqlite:{}", empty.display());
    let output = Command::new(BIN)
        .args([
            "tokens",
            "create",
            "--scope",
            "admin",
            "--database-url",
            &url,
        ])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_ne!(code(&output), Some(0));
    assert!(stderr.contains("longshore migrate"), "{stderr}");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_list_has_headers_and_a_401_says_what_to_pass() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    let made = Command::new(BIN)
        .args(["tokens", "create", "--name", "ops", "--scope", "admin"])
        .args(["--database-url", &db.url])
        .output()
        .unwrap();
    let token = ok(&made).trim().to_owned();
    let listed = ok(&Command::new(BIN)
        .args(["tokens", "list", "--database-url", &db.url])
        .output()
        .unwrap());
    let header = listed.lines().next().unwrap();
    for column in ["ID", "NAME", "PREFIX", "SCOPES", "STATUS"] {
        assert!(header.contains(column), "{listed}");
    }
    assert!(
        listed.contains("ops") && listed.contains("live"),
        "{listed}"
    );
    let denied = eventually(Duration::from_secs(10), "auth turns on", || async {
        let out = cli(&base, None, &["stats"]);
        (code(&out) == Some(5)).then_some(out)
    })
    .await;
    assert!(
        text(&denied)
            .1
            .contains("pass --token or set LONGSHORE_TOKEN"),
        "{denied:?}"
    );
    let over_http = ok(&cli(
        &base,
        Some(&token),
        &["tokens", "list", "--server", &base],
    ));
    assert!(
        over_http.lines().next().unwrap().contains("NAME"),
        "{over_http}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_says_where_it_is_in_one_line_and_binds_before_it_starts() {
    let db = TestDb::sqlite().await;
    let (serve, base) = db
        .serve_ready(&[
            "--queues",
            "default=4,mail=2",
            "--log",
            "warn,longshore=info",
        ])
        .await;
    let log = eventually(Duration::from_secs(10), "the start-up line", || async {
        let log = serve.log_text();
        log.contains("Longshore is up").then_some(log)
    })
    .await;
    let line = log.lines().find(|l| l.contains("Longshore is up")).unwrap();
    assert!(
        line.contains(&format!("the API at {base}/api/v1")),
        "{line}"
    );
    assert!(
        line.contains(&format!("its docs at {base}/api/v1/docs")),
        "{line}"
    );
    assert!(
        line.contains(&format!("version=\"{}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(
        line.contains("queues=default=4,longshore=1,mail=2"),
        "{line}"
    );
    assert!(line.contains(&format!("database={}", db.url)), "{line}");
    assert!(!log.contains('\u{1b}'), "no colour codes in a file: {log}");
    // The same port again: refused at once, before any worker started.
    let port = base.rsplit(':').next().unwrap();
    let second = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &db.url)
        .env("LONGSHORE_LOG", "info")
        .output()
        .unwrap();
    let (_, stderr) = text(&second);
    assert_ne!(code(&second), Some(0));
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!stderr.contains("pool started"), "{stderr}");
    // The version names its commit.
    let version = ok(&Command::new(BIN).arg("--version").output().unwrap());
    assert!(
        version.starts_with(&format!("longshore {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_statement_the_target_refuses_stops_the_start_naming_its_field() {
    let db = TestDb::sqlite().await;
    let target = db.path("target.db");
    let config = db.path("longshore.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[targets.local]
url = "sqlite:{}?mode=rwc"

[[sweeps]]
name = "typo"
target = "local"
retention = "1day"
query = "SELECT key FROM no_such_table WHERE $1 AND $2 AND $3"
action = {{ type = "statement", sql = "DELETE FROM no_such_table WHERE key IN (SELECT value FROM json_each($1))" }}
"#,
            target.display()
        ),
    )
    .unwrap();
    let mut worker = db.spawn("worker", &["worker", "--config", config.to_str().unwrap()]);
    let status = worker.wait_for_exit(Duration::from_secs(20));
    let log = worker.log_text();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("sweeps.typo.query"), "{log}");
    assert!(log.contains("no_such_table"), "{log}");
    // So does a [runtime] whose log statement the target refuses.
    std::fs::write(
        &config,
        format!(
            r#"
[targets.local]
url = "sqlite:{}?mode=rwc"

[runtime]
url = "http://127.0.0.1:9/games/{{game_id}}/container"
target = "local"
log = "INSERT INTO no_such_log (game, outcome) VALUES ($1, $2)"
"#,
            target.display()
        ),
    )
    .unwrap();
    let mut worker = db.spawn("worker2", &["worker", "--config", config.to_str().unwrap()]);
    let status = worker.wait_for_exit(Duration::from_secs(20));
    let log = worker.log_text();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("runtime.log"), "{log}");
    assert!(log.contains("no_such_log"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_comes_from_the_environment() {
    let db = TestDb::sqlite().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let log = db.path("serve.log");
    let _serve = crate::support::Proc {
        child: Command::new(BIN)
            .args(["serve", "--listen", &listen])
            .env("DATABASE_URL", &db.url)
            .env("LONGSHORE_API__MAX_BODY_BYTES", "2000")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    let base = format!("http://{listen}");
    crate::support::wait_ready(&base).await;
    let big = json!({ "kind": "noop", "args": { "pad": "x".repeat(3000) } });
    let answer = reqwest::Client::new()
        .post(format!("{base}/api/v1/jobs"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, mark) in [
        ("bash", "complete -F _longshore"),
        ("zsh", "#compdef longshore"),
        ("fish", "complete -c longshore"),
    ] {
        let out = ok(&Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap());
        assert!(out.contains(mark), "{shell}: {out}");
        assert!(out.contains("enqueue"), "{shell}");
    }
    let bad = Command::new(BIN)
        .args(["completions", "cmd"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_0_when_ready_and_6_when_not() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    let ready = Command::new(BIN)
        .args(["health", "--server", &base])
        .output()
        .unwrap();
    assert_eq!(ok(&ready).trim(), "ready");
    let down = Command::new(BIN)
        .args([
            "health",
            "--server",
            "http://127.0.0.1:9",
            "--timeout",
            "2s",
        ])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(6), "{down:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_commands_show_and_change_what_the_api_knows() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    let run = |args: &[&str]| cli(&base, None, args);
    let json = |out: &std::process::Output| -> Value { serde_json::from_str(&ok(out)).unwrap() };

    // Args from a file and from stdin; a key makes a retried enqueue the same job.
    let file = db.path("args.json");
    std::fs::write(&file, r#"{"from": "file"}"#).unwrap();
    let from_file = json(&run(&[
        "jobs",
        "enqueue",
        "noop",
        "--args",
        &format!("@{}", file.display()),
        "--idempotency-key",
        "order-42",
        "-o",
        "json",
    ]));
    let again = json(&run(&[
        "jobs",
        "enqueue",
        "noop",
        "--args",
        &format!("@{}", file.display()),
        "--idempotency-key",
        "order-42",
        "-o",
        "json",
    ]));
    assert_eq!(from_file["id"], again["id"], "the same key, the same job");
    let job = json(&run(&[
        "jobs",
        "get",
        from_file["id"].as_str().unwrap(),
        "-o",
        "json",
    ]));
    assert_eq!(job["args"]["from"], "file");
    let mut stdin = Command::new(BIN)
        .args([
            "jobs",
            "enqueue",
            "noop",
            "--args",
            "-",
            "--at",
            "2030-01-01T00:00:00Z",
            "-o",
            "json",
        ])
        .env("LONGSHORE_SERVER", &base)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    stdin
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"from": "stdin"}"#)
        .unwrap();
    let created: Value = serde_json::from_slice(&stdin.wait_with_output().unwrap().stdout).unwrap();
    let later = json(&run(&[
        "jobs",
        "get",
        created["id"].as_str().unwrap(),
        "-o",
        "json",
    ]));
    assert_eq!(later["args"]["from"], "stdin");
    assert_eq!(later["state"], "scheduled");
    assert!(
        later["run_at"]
            .as_str()
            .unwrap()
            .starts_with("2030-01-01T00:00:00"),
        "{later}"
    );
    let missing = run(&["jobs", "enqueue", "noop", "--args", "@no-such-file.json"]);
    assert_eq!(code(&missing), Some(2));
    assert!(
        text(&missing).1.contains("no-such-file.json"),
        "{missing:?}"
    );

    // Workers and queues.
    let workers = ok(&run(&["workers", "list"]));
    assert!(workers.starts_with("WORKER"), "{workers}");
    assert!(
        workers
            .lines()
            .any(|l| l.contains(" default ") && l.contains("live")),
        "{workers}"
    );
    let limited = ok(&run(&["queues", "concurrency", "default", "3"]));
    assert!(
        limited.lines().nth(1).unwrap().split_whitespace().nth(8) == Some("3"),
        "{limited}"
    );
    let cleared = json(&run(&[
        "queues",
        "concurrency",
        "default",
        "--clear",
        "-o",
        "json",
    ]));
    assert!(cleared["concurrency"].is_null(), "{cleared}");
    let queue = json(&run(&["queues", "get", "default", "-o", "json"]));
    assert_eq!(queue["name"], "default");

    // A bulk operation, then the operations and the audit log.
    ok(&run(&[
        "jobs",
        "cancel",
        "--state",
        "scheduled",
        "--since",
        "1h",
        "--yes",
    ]));
    let ops = ok(&run(&["operations", "list", "-o", "jsonl"]));
    let op: Value = serde_json::from_str(ops.lines().next().unwrap()).unwrap();
    assert_eq!(op["action"], "cancel", "{op}");
    let shown = ok(&run(&["operations", "get", op["id"].as_str().unwrap()]));
    assert!(shown.contains("cancel completed: 1 done"), "{shown}");
    let audit = ok(&run(&["audit"]));
    assert!(audit.starts_with("ID"), "{audit}");
    assert!(
        audit.contains("operations.cancel") && audit.contains("queues.concurrency"),
        "{audit}"
    );
    // The delete commands answer in JSON too.
    let deleted = json(&run(&[
        "jobs",
        "delete",
        created["id"].as_str().unwrap(),
        "-o",
        "json",
    ]));
    assert_eq!(deleted["deleted"], true);
}

/// A request the API cannot parse, from the real binary's server on `db`: each bad field
/// named, with what it accepts; the CLI prints each.
async fn parse_errors_name_each_field(db: TestDb) {
    let (_serve, base) = db.serve_ready(&[]).await;
    let answer = reqwest::get(format!(
        "{base}/api/v1/jobs?state=failed&limit=1000&created_after=yesterday"
    ))
    .await
    .unwrap();
    assert_eq!(answer.status(), 422);
    let problem: Value = answer.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_field", "{problem}");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in ["state", "limit", "created_after"] {
        assert!(fields.contains(&field), "{problem}");
    }
    let text = problem.to_string();
    assert!(text.contains("discarded") && text.contains("500"), "{text}");
    assert!(
        !text.contains("occurred while parsing"),
        "no framework text: {text}"
    );
    let body = reqwest::Client::new()
        .post(format!("{base}/api/v1/jobs"))
        .json(&json!({ "args": {}, "priority": "high" }))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 422);
    let problem: Value = body.json().await.unwrap();
    let text = problem["errors"].to_string();
    assert!(
        text.contains("\"kind\"") && text.contains("\"priority\""),
        "{problem}"
    );
    // Through the CLI: one error, a line per field.
    let out = cli(
        &base,
        None,
        &["queues", "concurrency", "default", "999999999"],
    );
    assert_eq!(code(&out), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_errors_name_each_field_on_sqlite() {
    parse_errors_name_each_field(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_errors_name_each_field_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    parse_errors_name_each_field(db).await;
}
