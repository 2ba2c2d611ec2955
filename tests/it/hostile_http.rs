//! Hostile HTTP against the real server: slow and idle connections are cut off, nothing of a
//! body is read before its sender is known, an over-long request gets a problem, and in
//! local mode (no token yet) a request from another site or addressed by another name is
//! refused. Long-lived event streams are not cut off.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestDb, cli, eventually};

const CONFIG: &str = "[api]\nheader_timeout = \"2s\"\nbody_timeout = \"2s\"\n";

/// Reads until the server closes the connection, or `limit` passes; the bytes read and when
/// the connection closed (`None`: still open).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Instant>) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, Some(Instant::now())),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (seen, None),
        }
    }
}

fn status_and_body(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim())
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

async fn send(addr: &str, request: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let (raw, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    status_and_body(&raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_oversized_requests_are_cut_off_and_local_mode_refuses_other_sites() {
    let db = TestDb::sqlite().await;
    let config = db.path("longshore.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let (_serve, base) = db.serve(&config, &[]);
    let addr = base.trim_start_matches("http://").to_owned();
    eventually(Duration::from_secs(20), "serve answers", || async {
        reqwest::get(format!("{base}/healthz"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    // Headers sent one byte a second never finish: cut off after the 2 s header timeout.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let opened = Instant::now();
    let dribble = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaa" {
            if slow.write_all(&[*byte]).await.is_err() {
                return (Instant::now(), true);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
        (closed.unwrap_or_else(Instant::now), closed.is_some())
    });
    // A connection that sends nothing at all.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    let (_, idle_closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    let idle_after = idle_closed.map(|at| at - opened);
    let (slow_at, slow_closed) = dribble.await.unwrap();
    println!(
        "hostile http: idle connection closed after {idle_after:?}, slow headers after {:?}",
        slow_at - opened
    );
    assert!(
        idle_after.is_some_and(|d| d < Duration::from_secs(5)),
        "idle: {idle_after:?}"
    );
    assert!(
        slow_closed && slow_at - opened < Duration::from_secs(6),
        "slow headers"
    );

    // A body that stalls: 408 after the body timeout.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"kind\":",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let (raw, _) = read_until_closed(&mut stalled, Duration::from_secs(8)).await;
    let (status, body) = status_and_body(&raw);
    assert_eq!(
        (status, body["code"].as_str()),
        (408, Some("body_timeout")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Over-long targets and headers: problems, not bare statuses.
    let long = "x".repeat(9000);
    let (status, body) = send(
        &addr,
        &format!(
            "GET /api/v1/jobs?q={long} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (414, Some("uri_too_long")),
        "{body}"
    );
    let big = "y".repeat(70 * 1024);
    let (status, body) = send(
        &addr,
        &format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (431, Some("headers_too_large")),
        "{body}"
    );

    // Local mode: no token exists, so only this machine's own tools may act.
    let http = reqwest::Client::new();
    let pause = format!("{base}/api/v1/queues/default/pause");
    for (header, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "null"),
    ] {
        let answer = http
            .post(&pause)
            .header(header, value)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("a=b")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 403, "{header}: {value}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "cross_site");
    }
    let (status, body) = send(
        &addr,
        "GET /api/v1/jobs HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("cross_site")),
        "rebinding: {body}"
    );
    let queues = http
        .get(format!("{base}/api/v1/queues"))
        .send()
        .await
        .unwrap();
    let paused = queues.json::<Value>().await.unwrap()["items"]
        .as_array()
        .map(|q| q.iter().any(|q| q["paused"] == true))
        .unwrap_or(false);
    assert!(!paused, "no cross-site request paused a queue");
    // The same origin (the dashboard's) and tools that send no Origin pass.
    let same = http
        .post(&pause)
        .header("origin", &base)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(same.status().as_u16(), 200);
    let output = cli(&base, None, &["queues", "resume", "default"]);
    assert!(output.status.success(), "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_not_read_before_its_sender_is_known_and_streams_outlive_the_header_timeout() {
    let db = TestDb::sqlite().await;
    let config = db.path("longshore.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let token = db.create_token("admin", "admin");
    let (_serve, base) = db.serve(&config, &[]);
    let addr = base.trim_start_matches("http://").to_owned();
    eventually(Duration::from_secs(20), "serve answers", || async {
        reqwest::get(format!("{base}/healthz"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;

    // 4 MB announced, nothing sent: without a token the answer is 401 at once.
    let mut anonymous = TcpStream::connect(&addr).await.unwrap();
    anonymous
        .write_all(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 4000000\r\n\r\n",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(1), anonymous.read(&mut buf))
        .await
        .expect("answered before any of the body arrived")
        .unwrap();
    assert_eq!(status_and_body(&buf[..n]).0, 401);
    println!(
        "hostile http: 401 before the body in {:?}",
        started.elapsed()
    );

    // An event stream stays open past the header timeout and still delivers.
    let http = reqwest::Client::new();
    let mut stream = http
        .get(format!("{base}/api/v1/events/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let enqueued = http
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "kind": "noop" }))
        .send()
        .await
        .unwrap();
    assert_eq!(enqueued.status().as_u16(), 201);
    let id = enqueued.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains(&id) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "the stream delivered the job's events: {seen}"
    );
}
