//! Redis for tests: the shared server (`LONGSHORE_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`; tests keep to keys of their own), and a private `redis-server`
//! on a port of its own for the tests that stop and restart it. As for Postgres, a missing
//! server skips the test, except under `CI=true`, where it fails it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;

/// The shared Redis server's URL, or `None` when it does not answer outside CI.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("LONGSHORE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let address = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    if answers(&address) {
        return Some(url);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("Redis at {url} does not answer, and CI=true");
    }
    eprintln!("skipping: Redis at {url} does not answer");
    None
}

/// A connection for a test's own commands. redis-rs gives up on a reply after 500 ms by
/// default, which a long read (`XRANGE` of a 10,000-entry stream) can take on a loaded CI
/// machine; a test waits longer rather than fail for the machine's load.
pub async fn redis_connection(url: &str) -> ::redis::RedisResult<MultiplexedConnection> {
    let config = ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(60)));
    ::redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Whether a Redis server at `host:port` answers `PING`.
fn answers(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// A `redis-server` of the test's own, keeping nothing on disk; stopped when dropped.
pub struct PrivateRedis {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    dir: Option<std::path::PathBuf>,
}

impl PrivateRedis {
    /// A server on `port`, not started yet.
    pub fn on(port: u16) -> PrivateRedis {
        PrivateRedis {
            port,
            child: None,
            dir: None,
        }
    }

    /// A server on `port` that keeps its data in `dir` (an append-only file, synced on every
    /// write), so that its streams, groups and pending entries survive a restart.
    pub fn persistent(port: u16, dir: &std::path::Path) -> PrivateRedis {
        PrivateRedis {
            port,
            child: None,
            dir: Some(dir.to_owned()),
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (empty) and waits until it answers. Panics when `redis-server` cannot run
    /// (the test needs one, in CI and out of it).
    pub fn start(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"]);
        match &self.dir {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(&format!("127.0.0.1:{}", self.port)) {
            assert!(
                Instant::now() < deadline,
                "the private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it at once, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
