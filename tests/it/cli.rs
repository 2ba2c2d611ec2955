//! The command line as a new user meets it: the default SQLite file, and config errors.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{BIN, Proc, eventually};

#[test]
fn a_bad_setting_is_one_line_naming_the_field_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[pool]\nleese = \"1s\"\n").unwrap();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (&["worker", "--lease", "1s"], &[], "pool.heartbeat_interval"),
        (
            &["worker"],
            &[("DATABASE_URL", "mysql://db/x")],
            "database.database_url",
        ),
        (&["worker", "--config", "bad.toml"], &[], "leese"),
        (&["serve"], &[("LONGSHORE_QUEUES", "mail=lots")], "queues"),
    ];
    for (args, env, field) in cases {
        let output = Command::new(BIN)
            .args(args)
            .env_remove("DATABASE_URL")
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(field),
            "{args:?} should name {field}: {stderr}"
        );
    }
    assert!(
        !dir.path().join("longshore.db").exists(),
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_creates_its_sqlite_file_on_first_run_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("DATABASE_URL")
        .env("LONGSHORE_LOG", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let mut process = Proc {
        child,
        log: dir.path().join("serve.log"),
    };
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    eventually(Duration::from_secs(20), "serve is ready", || async {
        let response = http.get(&url).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(dir.path().join("longshore.db").exists());
    process.signal(libc::SIGTERM);
    let status = process.wait_for_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "log:\n{}", process.log_text());
}
