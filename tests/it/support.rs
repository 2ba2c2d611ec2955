//! Running the real binary against a fresh database.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use longshore_jobs::{Client, Registry, Store, StoreConfig, kinds};
use longshore_workers::kinds as workers;

pub const BIN: &str = env!("CARGO_BIN_EXE_longshore");

/// A fresh database: an SQLite file in a temp dir, or a Postgres schema.
pub struct TestDb {
    pub url: String,
    pub store: Store,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let (url, dir) = longshore_testkit::sqlite_url();
        let store = connect(&url).await;
        TestDb { url, store, dir }
    }

    /// The database at `url` (a private cluster's, say), its logs in a temp dir.
    pub async fn at(url: &str) -> TestDb {
        TestDb {
            url: url.to_owned(),
            store: connect(url).await,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh schema, or `None` when Postgres is unreachable outside CI.
    pub async fn postgres() -> Option<TestDb> {
        let url = longshore_testkit::postgres_url().await?;
        let store = connect(&url).await;
        Some(TestDb {
            url,
            store,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    pub fn client(&self) -> Client {
        let mut registry = Registry::new();
        kinds::register_builtins(&mut registry);
        registry
            .register(workers::Abort)
            .register(workers::Stubborn)
            .register(workers::Mark);
        registry.register(workers::Sweep::new(Arc::default()));
        Client::new(self.store.clone(), Arc::new(registry))
    }

    /// Starts `longshore <args>` on this database, its logs in the temp dir.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Proc {
        self.spawn_env(name, args, &[])
    }

    /// [`TestDb::spawn`] with more environment variables.
    pub fn spawn_env(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(BIN)
            .args(args)
            .env("DATABASE_URL", &self.url)
            .env("LONGSHORE_LOG", "warn,longshore_workers=info")
            .env("LONGSHORE_ENABLE_TEST_KINDS", "true")
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("longshore starts");
        Proc { child, log }
    }

    /// Starts `longshore serve --config <config>` with fast timings and `extra` flags on a
    /// free port; returns the process and the API's base URL.
    pub fn serve(&self, config: &Path, extra: &[&str]) -> (Proc, String) {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let config = config.to_str().unwrap();
        let args = [
            &["serve", "--config", config, "--listen", &listen],
            extra,
            FAST,
        ]
        .concat();
        (self.spawn("serve", &args), format!("http://{listen}"))
    }

    /// Starts `longshore serve` with fast timings and `extra` flags on a free port, and
    /// waits until it is ready; returns the process and the API's base URL.
    pub async fn serve_ready(&self, extra: &[&str]) -> (Proc, String) {
        let listen = format!("127.0.0.1:{}", free_port());
        let args = [&["serve", "--listen", &listen], extra, FAST].concat();
        let process = self.spawn("serve", &args);
        let base = format!("http://{listen}");
        wait_ready(&base).await;
        (process, base)
    }

    /// Creates a token in the database, as an operator's first one is made
    /// (`longshore tokens create`), and returns its secret.
    pub fn create_token(&self, name: &str, scope: &str) -> String {
        let made = Command::new(BIN)
            .args(["tokens", "create", "--name", name, "--scope", scope])
            .env("DATABASE_URL", &self.url)
            .env_remove("LONGSHORE_SERVER")
            .output()
            .unwrap();
        let token = ok(&made).trim().to_owned();
        assert!(token.starts_with("lsh_"), "{token}");
        token
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

async fn connect(url: &str) -> Store {
    Store::connect(&StoreConfig {
        url: url.to_owned(),
        ..StoreConfig::default()
    })
    .await
    .expect("store connects")
}

/// A running `longshore` process; killed if the test drops it.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child process we own; no memory is shared.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "signal {signal} delivered");
    }

    /// Waits for the process to exit, failing after `limit`.
    pub fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {limit:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        read(&self.log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub use longshore_testkit::eventually;

/// Waits until the API at `base` answers `/readyz`.
pub async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    eventually(
        Duration::from_secs(20),
        "the API answers /readyz",
        || async {
            let ok = http.get(format!("{base}/readyz")).send().await.ok()?;
            ok.status().is_success().then_some(())
        },
    )
    .await;
}

/// Fast timings for process tests: lease 2 s, heartbeat 500 ms.
pub const FAST: &[&str] = &[
    "--lease",
    "2s",
    "--heartbeat-interval",
    "500ms",
    "--rescue-interval",
    "500ms",
    "--poll-interval",
    "200ms",
];

pub use longshore_testkit::free_port;

/// Runs the CLI against the API at `base`, with `token` if any.
pub fn cli(base: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("LONGSHORE_SERVER", base)
        .env_remove("LONGSHORE_TOKEN");
    if let Some(token) = token {
        command.env("LONGSHORE_TOKEN", token);
    }
    command.output().expect("the CLI runs")
}

/// The CLI's stdout, asserting it succeeded.
#[track_caller]
pub fn ok(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
