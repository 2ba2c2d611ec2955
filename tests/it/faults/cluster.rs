//! A private PostgreSQL cluster for tests that crash or freeze the server: made with `initdb`
//! in a temp dir, on a port of its own, so the shared server is never touched. Run as the
//! `postgres` user when the tests run as root (initdb refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running private cluster; stopped and removed when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

/// The newest PostgreSQL server binaries on this machine.
fn binaries() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

impl Cluster {
    /// Starts a fresh cluster, or `None` (outside CI) when this machine has no PostgreSQL
    /// server binaries. Under `CI=true` their absence fails the test.
    pub fn start() -> Option<Cluster> {
        let Some(bin) = binaries() else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true and no PostgreSQL server binaries (initdb) to start a private cluster"
            );
            eprintln!("skipping: no PostgreSQL server binaries for a private cluster");
            return None;
        };
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new()
            .prefix("longshore-pg-")
            .tempdir()
            .expect("a temp dir");
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "the cluster's dir belongs to postgres");
        }
        let port = crate::support::free_port();
        let cluster = Cluster {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.start_server();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name`.
    pub async fn create_database(&self, name: &str) -> String {
        let admin = sqlx::PgPool::connect(&self.url("postgres"))
            .await
            .expect("connect to the private cluster");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await
            .expect("create the database");
        admin.close().await;
        self.url(name)
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&self.data()),
                "-l",
                path(&log),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Kills the server at once, as a crash would: `pg_ctl stop -m immediate` (no checkpoint;
    /// what was not flushed is lost, and the restart recovers from the WAL).
    pub fn crash(&self) {
        self.run(
            "pg_ctl",
            &["-D", path(&self.data()), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Freezes every process of the server (SIGSTOP): connections stay open and nothing
    /// answers, as with a stalled disk or a paused VM.
    pub fn freeze(&self) {
        self.signal_all(libc::SIGSTOP);
    }

    /// Lets a frozen server go on.
    pub fn thaw(&self) {
        self.signal_all(libc::SIGCONT);
    }

    fn signal_all(&self, signal: i32) {
        let pids = self.pids();
        assert!(!pids.is_empty(), "the server runs");
        for pid in pids {
            // SAFETY: kill(2) on the cluster's own processes; no memory is shared.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// The postmaster and its children.
    fn pids(&self) -> Vec<i32> {
        let pidfile =
            std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap_or_default();
        let Some(postmaster) = pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": the comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// A command running one of the server's programs, as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command.current_dir(self.dir.path());
        command
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .expect("a PostgreSQL program runs");
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.thaw_quietly();
        let _ = self
            .command("pg_ctl")
            .args(["-D", path(&self.data()), "-m", "immediate", "stop"])
            .output();
    }
}

impl Cluster {
    fn thaw_quietly(&self) {
        for pid in self.pids() {
            // SAFETY: as in signal_all.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
