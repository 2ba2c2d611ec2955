//! The gateway stream's contract, tried from the outside on the real binary: a gateway that
//! disconnects and comes back to another API process, after every process restarted, past
//! the retention, and one that stops reading.

use std::collections::HashSet;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Proc, TestDb, cli, free_port, ok, wait_ready};

/// One SSE message: its event name, id and data.
#[derive(Debug)]
struct Message {
    event: String,
    id: String,
    data: Value,
}

/// A gateway's connection to the push stream.
struct Gateway {
    messages: BoxStream<'static, Message>,
}

impl Gateway {
    async fn connect(base: &str, last_event_id: Option<i64>, query: &str) -> Gateway {
        let mut request = reqwest::Client::new().get(format!("{base}/api/v1/push/stream?{query}"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("the stream answers");
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let messages = response
            .bytes_stream()
            .eventsource()
            .map(|event| {
                let event = event.expect("a well-formed SSE stream");
                Message {
                    event: event.event,
                    id: event.id,
                    data: serde_json::from_str(&event.data).expect("JSON data"),
                }
            })
            .boxed();
        let mut gateway = Gateway { messages };
        // First the position the stream starts after, as its SSE id: a gateway that
        // reconnects before any push arrives resumes from there.
        let ready = gateway.next().await;
        assert_eq!(ready.event, "ready", "{ready:?}");
        assert_eq!(ready.id, ready.data["ready"].to_string());
        if let Some(id) = last_event_id {
            assert_eq!(ready.data["ready"], id);
        }
        gateway
    }

    async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(20), self.messages.next())
            .await
            .expect("a message within 20 s")
            .expect("the stream stays open")
    }

    /// The next `n` pushes: (position, event id), in the order received.
    async fn pushes(&mut self, n: usize) -> Vec<(i64, String)> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let message = self.next().await;
            assert_eq!(message.event, "push", "{message:?}");
            let position = message.data["position"].as_i64().unwrap();
            assert_eq!(message.id, position.to_string());
            got.push((
                position,
                message.data["event_id"].as_str().unwrap().to_owned(),
            ));
        }
        got
    }

    /// Nothing more arrives for a while.
    async fn quiet(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(700), self.messages.next()).await;
        assert!(
            next.is_err(),
            "expected nothing more, got {:?}",
            next.unwrap()
        );
    }
}

/// Stores `pushes` through `POST /push/batch` at `base`, asserting it accepted them.
async fn post_batch(http: &reqwest::Client, base: &str, pushes: Vec<Value>) {
    let response = http
        .post(format!("{base}/api/v1/push/batch"))
        .json(&json!({ "pushes": pushes }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Sends pushes `from..to` (event ids `{tag}-{n}`) in batches of `batch`, four requests at a
/// time spread over `bases`, so their transactions commit out of position order.
async fn send(bases: &[&str], tag: &str, from: usize, to: usize, batch: usize) -> Vec<String> {
    let http = reqwest::Client::new();
    let ids: Vec<String> = (from..to).map(|n| format!("{tag}-{n}")).collect();
    let requests = ids.chunks(batch).enumerate().map(|(i, chunk)| {
        let base = bases[i % bases.len()].to_owned();
        let pushes: Vec<Value> = chunk
            .iter()
            .map(|id| json!({"event_id": id, "user_id": format!("user-{id}"), "kind": "note", "payload": {"n": id}}))
            .collect();
        let http = http.clone();
        async move { post_batch(&http, &base, pushes).await }
    });
    futures::stream::iter(requests)
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    ids
}

/// The pushes received are exactly `sent`, each once, in increasing position order.
#[track_caller]
fn exactly(received: &[(i64, String)], sent: &[String]) {
    assert!(
        received.windows(2).all(|w| w[0].0 < w[1].0),
        "positions increase"
    );
    let got: Vec<&str> = received.iter().map(|(_, id)| id.as_str()).collect();
    let unique: HashSet<&str> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "no push twice");
    let want: HashSet<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(unique, want, "exactly the pushes sent");
}

fn api(db: &TestDb, name: &str) -> (Proc, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let process = db.spawn(name, &["api", "--listen", &listen]);
    (process, format!("http://{listen}"))
}

#[tokio::test]
async fn a_gateway_resumes_at_another_api_process_and_after_restarts_with_no_gap() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (a, base_a) = api(&db, "api-a");
    let (b, base_b) = api(&db, "api-b");
    wait_ready(&base_a).await;
    wait_ready(&base_b).await;

    // Live from the start: the gateway sees what is sent after it subscribed.
    let mut gateway = Gateway::connect(&base_a, None, "").await;
    let first = send(&[&base_a], "first", 0, 50, 25).await;
    let received = gateway.pushes(50).await;
    exactly(&received, &first);
    let position = received.last().unwrap().0;
    drop(gateway);

    // 5,000 pushes while it is away, through both processes, committing out of order.
    let missed = send(&[&base_a, &base_b], "missed", 0, 5000, 250).await;
    let mut gateway = Gateway::connect(&base_b, Some(position), "").await;
    let received = gateway.pushes(5000).await;
    exactly(&received, &missed);
    assert!(received[0].0 > position);
    // Then live ones, sent to the other process.
    let live = send(&[&base_a], "live", 0, 20, 10).await;
    let received_live = gateway.pushes(20).await;
    exactly(&received_live, &live);
    assert!(received_live[0].0 > received.last().unwrap().0);
    gateway.quiet().await;
    let position = received_live.last().unwrap().0;
    drop(gateway);

    // Every process restarts (killed, not stopped); the position still holds.
    drop((a, b));
    let (_a, base_a) = api(&db, "api-a2");
    let (_b, base_b) = api(&db, "api-b2");
    wait_ready(&base_a).await;
    wait_ready(&base_b).await;
    let after_restart = send(&[&base_a, &base_b], "restart", 0, 300, 50).await;
    let mut gateway = Gateway::connect(&base_a, Some(position), "").await;
    exactly(&gateway.pushes(300).await, &after_restart);
    gateway.quiet().await;
}

#[tokio::test]
async fn a_position_past_the_retention_gets_a_reset_naming_the_oldest_kept() {
    for db in [TestDb::sqlite().await]
        .into_iter()
        .chain(TestDb::postgres().await)
    {
        let (_serve, base) = db.serve_ready(&[]).await;
        let sent = send(&[&base], "old", 0, 30, 10).await;
        let mut gateway = Gateway::connect(&base, Some(0), "").await;
        let received = gateway.pushes(30).await;
        exactly(&received, &sent);
        drop(gateway);
        // The first twenty grow old, and retention deletes them.
        let (old_pg, old_sqlite) = (
            "UPDATE pushes SET at = now() - interval '2 days' WHERE position <= $1::bigint",
            "UPDATE pushes SET at = at - 172800000000 WHERE position <= $1",
        );
        let cut = received[19].0.to_string();
        let aged = longshore_testkit::execute(
            &db.url,
            if db.url.starts_with("postgres") {
                old_pg
            } else {
                old_sqlite
            },
            &[&cut],
        )
        .await;
        assert_eq!(aged, 20);
        let pruned = db
            .store
            .prune_pushes(chrono::Utc::now() - chrono::Duration::hours(24), 1000)
            .await
            .unwrap();
        assert_eq!(pruned, 20);

        // A gateway that last saw the fifth push lost fifteen: it is told, in band.
        let mut gateway = Gateway::connect(&base, Some(received[4].0), "").await;
        let reset = gateway.next().await;
        assert_eq!(reset.event, "reset", "{reset:?}");
        assert_eq!(reset.data["requested"], received[4].0);
        assert_eq!(reset.data["pruned_through"], received[19].0);
        assert_eq!(reset.data["oldest_kept"], received[20].0);
        let ids = |from: usize| -> Vec<String> {
            received[from..].iter().map(|(_, id)| id.clone()).collect()
        };
        exactly(&gateway.pushes(10).await, &ids(20));
        // One that saw everything kept is not.
        let mut gateway = Gateway::connect(&base, Some(received[25].0), "").await;
        exactly(&gateway.pushes(4).await, &ids(26));
    }
}

#[tokio::test]
async fn filters_by_kind_user_and_partition_split_users_between_gateways() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    let http = reqwest::Client::new();
    let pushes: Vec<Value> = (0..200)
        .map(|n| {
            json!({"event_id": format!("p{n}"), "user_id": format!("u{}", n % 40),
                   "kind": if n % 2 == 0 { "even" } else { "odd" }, "payload": n})
        })
        .collect();
    post_batch(&http, &base, pushes).await;
    // Four gateways, one share each: every push reaches exactly one, by its user.
    let mut seen = Vec::new();
    for i in 0..4 {
        let mut gateway = Gateway::connect(&base, Some(0), &format!("partition={i}/4")).await;
        let mut count = 0;
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(700), gateway.messages.next()).await
        {
            let user = message.data["user_id"].as_str().unwrap().to_owned();
            assert_eq!(longshore_jobs::push::partition_of(&user, 4), i);
            seen.push(message.data["event_id"].as_str().unwrap().to_owned());
            count += 1;
        }
        assert!(count > 0, "share {i} has users");
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 200, "every push reached exactly one share");

    let mut gateway = Gateway::connect(&base, Some(0), "kind=odd&user_id=u1&user_id=u3").await;
    let got = gateway.pushes(10).await;
    for (_, id) in &got {
        let n: usize = id[1..].parse().unwrap();
        assert!(n % 2 == 1 && [1, 3].contains(&(n % 40)), "{id}");
    }
    gateway.quiet().await;

    for bad in ["partition=4/4", "partition=x", "after=-1", "after=1e3"] {
        let response = http
            .get(format!("{base}/api/v1/push/stream?{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{bad}");
        let problem: Value = response.json().await.unwrap();
        let field = bad.split('=').next().unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{bad}: {problem}");
    }
}

/// The resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test]
async fn a_gateway_that_stops_reading_is_cut_off_and_resumes_while_memory_stays_flat() {
    let db = TestDb::sqlite().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let serve = db.spawn_env(
        "serve",
        &["serve", "--listen", &listen],
        &[
            ("LONGSHORE_API__SLOW_CLIENT", "15s"),
            ("LONGSHORE_LOG", "warn,longshore_api=info"),
        ],
    );
    wait_ready(&base).await;

    // A gateway with a small receive buffer that reads its headers and then nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(listen.parse().unwrap()).await.unwrap();
    stalled
        .write_all(format!("GET /api/v1/push/stream HTTP/1.1\r\nhost: {listen}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = vec![0u8; 256];
    let n = stalled.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));

    // Three rounds of 32 MB of pushes for it, 4 KB each: the first warms the server's
    // caches, the next two must not grow its memory by much (a server that buffered for
    // the gateway would grow by 64 MB).
    let filler = "x".repeat(4000);
    let http = reqwest::Client::new();
    let mut resident = Vec::new();
    for round in 0..3 {
        for batch in 0..16 {
            let pushes: Vec<Value> = (0..500)
                .map(|n| json!({"event_id": format!("big-{round}-{batch}-{n}"), "user_id": "u", "kind": "big", "payload": filler}))
                .collect();
            post_batch(&http, &base, pushes).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        resident.push(rss(serve.pid()));
    }
    let grown = resident[2].saturating_sub(resident[0]);

    // The server closes its connection once a write has waited the stall.
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(40), async {
        tokio::time::sleep(Duration::from_secs(16)).await;
        let mut chunk = vec![0u8; 65536];
        loop {
            match stalled.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server cut the stalled gateway off");
    assert!(
        grown < 16 << 20,
        "the server grew by {grown} bytes while 64 MB more were sent to a stalled gateway"
    );
    assert!(
        received.len() < 32 << 20,
        "cut off long before everything was written"
    );

    // It resumes from the last push it received whole, and misses nothing.
    let text = String::from_utf8_lossy(&received);
    let last_id: i64 = text
        .split("\n\n")
        .filter(|block| block.contains("event: push") && block.ends_with('}'))
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("id: ")))
        .filter_map(|id| id.trim().parse().ok())
        .last()
        .unwrap_or(0);
    let mut gateway = Gateway::connect(&base, Some(last_id), "").await;
    let rest = gateway.pushes(24_000 - last_id as usize).await;
    assert_eq!(rest.first().map(|r| r.0), Some(last_id + 1));
    assert_eq!(rest.last().map(|r| r.0), Some(24_000));
}

#[tokio::test]
async fn the_cli_sends_pushes_once_by_event_id_and_tails_them_as_a_gateway() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    let send = |event_id: &str| {
        cli(
            &base,
            None,
            &[
                "push",
                "send",
                "--user",
                "alice",
                "--kind",
                "friend.request",
                "--payload",
                r#"{"from":"bob"}"#,
                "--event-id",
                event_id,
            ],
        )
    };
    assert_eq!(ok(&send("e-1")).trim(), "push e-1 at position 1");
    assert_eq!(
        ok(&send("e-1")).trim(),
        "push e-1 at position 1 (stored already: nothing new stored)"
    );
    ok(&send("e-2"));

    let tail = cli(
        &base,
        None,
        &[
            "push",
            "tail",
            "--from-start",
            "--count",
            "2",
            "-o",
            "jsonl",
        ],
    );
    let lines: Vec<Value> = ok(&tail)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["event_id"], "e-1");
    assert_eq!(lines[0]["payload"], json!({"from": "bob"}));
    assert_eq!(lines[1]["event_id"], "e-2");
    assert!(lines[1]["position"].as_i64() > lines[0]["position"].as_i64());

    let bad = cli(
        &base,
        None,
        &[
            "push",
            "send",
            "--user",
            "u",
            "--kind",
            "k",
            "--payload",
            "{not json",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--payload must be JSON"), "{stderr}");
    let bad = cli(
        &base,
        None,
        &["push", "send", "--user", "u", "--kind", "no spaces"],
    );
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("kind"), "{stderr}");
}

#[tokio::test]
async fn a_bad_push_is_refused_naming_its_field_and_stores_nothing() {
    let db = TestDb::sqlite().await;
    let (_serve, base) = db.serve_ready(&[]).await;
    let http = reqwest::Client::new();
    let post = |path: &'static str, body: Value| {
        let http = http.clone();
        let url = format!("{base}/api/v1{path}");
        async move {
            let response = http.post(url).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let good = json!({"user_id": "u", "kind": "k", "payload": {}});
    let (status, problem) = post(
        "/push/batch",
        json!({"pushes": [good, {"user_id": "u\u{0}", "kind": "a b", "payload": {"x": "\u{0}"}}]}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        problem["errors"][0]["field"], "pushes[1].user_id",
        "{problem}"
    );
    let (status, problem) = post("/push/batch", json!({"pushes": vec![good.clone(); 1001]})).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].clone()),
        (422, json!("pushes"))
    );
    let big = json!({"user_id": "u", "kind": "k", "payload": "x".repeat(70_000)});
    let (status, problem) = post("/push", big).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].clone()),
        (413, json!("payload"))
    );
    let (status, problem) = post("/push", json!({"kind": "k", "payload": 1})).await;
    assert_eq!(status, 422, "a missing user_id: {problem}");
    assert_eq!(problem["errors"][0]["field"], "user_id", "{problem}");
    assert!(
        db.store.pushes_after(0, 10).await.unwrap().is_empty(),
        "nothing was stored"
    );
}
