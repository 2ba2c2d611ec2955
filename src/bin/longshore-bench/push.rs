//! The push workloads, each against real `longshore` processes over HTTP:
//! - P1: pushes accepted per second by `POST /api/v1/push/batch` (500 a batch, 4 senders).
//! - P2: push-to-gateway latency, p50 and p99, at 1,000 pushes/s for 10 s with 10 gateways
//!   reading `GET /api/v1/push/stream` (each push carries its send time).
//! - P3: webhook deliveries per second to a local receiver that answers 200 at once, with
//!   16 deliveries at a time (`webhooks.concurrency`).

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Database, spawn_longshore};

/// A `longshore` process of the benchmark, stopped when dropped.
pub struct Running {
    child: Child,
    pub base: String,
}

impl Running {
    /// Starts `longshore <role>` on `db` with `env`, and waits until it is ready.
    pub async fn start(db: &Database, role: &str, env: &[(&str, &str)]) -> anyhow::Result<Running> {
        let (child, port) = spawn_longshore(db, role, &[], env)?;
        let running = Running {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        while !http
            .get(format!("{}/readyz", running.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "longshore {role} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(running)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

async fn send_batch(http: &reqwest::Client, base: &str, pushes: Vec<Value>) -> anyhow::Result<()> {
    let response = http
        .post(format!("{base}/api/v1/push/batch"))
        .json(&json!({ "pushes": pushes }))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "push batch answered {}",
        response.status()
    );
    Ok(())
}

/// P1: 50,000 pushes in batches of 500 from 4 senders.
pub async fn p1(db: &Database) -> anyhow::Result<Value> {
    const PUSHES: usize = 50_000;
    const BATCH: usize = 500;
    const SENDERS: usize = 4;
    let api = Running::start(db, "api", &[]).await?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let (http, base) = (http.clone(), api.base.clone());
        tasks.push(tokio::spawn(async move {
            for batch in 0..PUSHES / BATCH / SENDERS {
                let pushes = (0..BATCH)
                    .map(|n| {
                        json!({"event_id": format!("p1-{sender}-{batch}-{n}"),
                               "user_id": format!("user-{n}"), "kind": "bench",
                               "payload": {"n": n}})
                    })
                    .collect();
                send_batch(&http, &base, pushes).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(json!({ "pushes_per_s": PUSHES as f64 / started.elapsed().as_secs_f64() }))
}

/// P2: 10 gateways, 1,000 pushes/s for 10 s (10 pushes every 10 ms), latency from send to
/// each gateway's receipt.
pub async fn p2(db: &Database) -> anyhow::Result<Value> {
    const GATEWAYS: usize = 10;
    const SECONDS: u64 = 10;
    const PER_TICK: usize = 10;
    let api = Running::start(db, "api", &[]).await?;
    let total = (SECONDS * 1000 / 10) as usize * PER_TICK;
    let mut readers = Vec::new();
    for _ in 0..GATEWAYS {
        let response = reqwest::Client::new()
            .get(format!("{}/api/v1/push/stream", api.base))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "the stream answered {}",
            response.status()
        );
        readers.push(tokio::spawn(async move {
            let mut stream = response.bytes_stream().eventsource();
            let mut latencies = Vec::with_capacity(total);
            while latencies.len() < total {
                let Some(event) = stream.next().await else {
                    break;
                };
                let event = event?;
                if event.event != "push" {
                    continue;
                }
                let push: Value = serde_json::from_str(&event.data)?;
                let sent = push["payload"]["sent_us"].as_i64().unwrap_or(0);
                latencies.push((now_us() - sent) as f64 / 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let http = reqwest::Client::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut sends = Vec::new();
    for tick in 0..total / PER_TICK {
        ticker.tick().await;
        let pushes = (0..PER_TICK)
            .map(|n| {
                json!({"event_id": format!("p2-{tick}-{n}"), "user_id": format!("user-{n}"),
                       "kind": "bench", "payload": {"sent_us": now_us()}})
            })
            .collect();
        let (http, base) = (http.clone(), api.base.clone());
        sends.push(tokio::spawn(async move {
            send_batch(&http, &base, pushes).await
        }));
    }
    for send in sends {
        send.await??;
    }
    let mut latencies = Vec::with_capacity(total * GATEWAYS);
    for reader in readers {
        let got = tokio::time::timeout(Duration::from_secs(30), reader).await???;
        anyhow::ensure!(
            got.len() == total,
            "a gateway got {} of {total} pushes",
            got.len()
        );
        latencies.extend(got);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(json!({ "p50_ms": at(0.5), "p99_ms": at(0.99) }))
}

/// A receiver that answers every request with 200 at once and counts them.
async fn receiver() -> anyhow::Result<(u16, Arc<AtomicU64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    // One request: its head, then as many body bytes as it says.
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buffer.len() < end + 4 + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buffer.drain(..end + 4 + length);
                    count.fetch_add(1, Ordering::Relaxed);
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, count))
}

/// P3: 5,000 pushes, each delivered to one endpoint on loopback.
pub async fn p3(db: &Database) -> anyhow::Result<Value> {
    const DELIVERIES: u64 = 5_000;
    let (port, received) = receiver().await?;
    let serve = Running::start(
        db,
        "serve",
        &[
            (
                "LONGSHORE_SECRETS__KEYS",
                "bench:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
            ("LONGSHORE_EGRESS__ALLOW", "[\"127.0.0.1\"]"),
            ("LONGSHORE_WEBHOOKS__CONCURRENCY", "16"),
        ],
    )
    .await?;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/api/v1/webhook-endpoints", serve.base))
        .json(&json!({"url": format!("http://127.0.0.1:{port}/hook"), "kinds": ["bench"]}))
        .send()
        .await?;
    anyhow::ensure!(
        created.status() == 201,
        "creating the endpoint answered {}",
        created.status()
    );
    let started = Instant::now();
    for batch in 0..DELIVERIES / 500 {
        let pushes = (0..500)
            .map(|n| {
                json!({"event_id": format!("p3-{batch}-{n}"), "user_id": format!("user-{n}"),
                       "kind": "bench", "payload": {"n": n}})
            })
            .collect();
        send_batch(&http, &serve.base, pushes).await?;
    }
    while received.load(Ordering::Relaxed) < DELIVERIES {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {DELIVERIES} deliveries arrived",
            received.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(json!({ "deliveries_per_s": DELIVERIES as f64 / started.elapsed().as_secs_f64() }))
}
