//! The API and the CLI as separate processes: the event stream resumes across processes,
//! and a newcomer's first session with the CLI works as README tells it.

use std::time::Duration;

use futures::StreamExt;
use longshore_jobs::{EnqueueRequest, EventId, JobState};
use serde_json::{Value, json};

use crate::support::{FAST, TestDb, cli, eventually, free_port, ok, wait_ready};

/// Reads SSE events (id, JSON) from `response` until `n` arrive.
async fn read_sse(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    n: usize,
) -> Vec<(i64, Value)> {
    let mut events = Vec::new();
    while events.len() < n {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let (mut id, mut data) = (None, String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                }
                if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let (Some(id), false) = (id, data.is_empty()) {
                events.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
        if events.len() >= n {
            break;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("SSE data within 20 s")
            .expect("the stream stays open")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_across_processes_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _api = db.spawn("api", &["api", "--listen", &format!("127.0.0.1:{port}")]);
    let worker_args = [&["worker", "--queues", "default=32"], FAST].concat();
    let _worker = db.spawn("worker", &worker_args);
    wait_ready(&base).await;
    let client = db.client();
    for _ in 0..5 {
        client
            .enqueue(EnqueueRequest::new("noop", json!({})))
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();
    let stream_url = format!("{base}/api/v1/events/stream");
    let response = http.get(&stream_url).send().await.unwrap();
    assert!(response.status().is_success());
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let first = read_sse(&mut body, &mut buffer, 5).await;
    drop(body);
    let last_seen = first.last().unwrap().0;

    // Disconnected: 500 jobs, whose start and completion events (1,000) the worker process
    // writes; the enqueue events come from this process.
    let requests: Vec<_> = (0..500)
        .map(|_| EnqueueRequest::new("noop", json!({})))
        .collect();
    client.enqueue_many(requests).await.unwrap();
    eventually(
        Duration::from_secs(60),
        "the worker completes every job",
        || async {
            let counts = db.store.count_by_state(Some("default")).await.unwrap();
            (counts.get(&JobState::Completed) == Some(&505)).then_some(())
        },
    )
    .await;
    let mut missed = Vec::new();
    let mut after = EventId(last_seen);
    loop {
        let page = db.store.events_after(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        missed.extend(page.iter().map(|e| e.id.0));
    }
    let by_worker = db
        .store
        .events_after(EventId(last_seen), 5000)
        .await
        .unwrap();
    let worker_written = by_worker
        .iter()
        .filter(|e| e.event_type == "job.started" || e.event_type == "job.completed")
        .count();
    assert!(
        worker_written >= 1000,
        "the worker wrote {worker_written} events"
    );

    let response = http
        .get(&stream_url)
        .header("Last-Event-ID", last_seen.to_string())
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let resumed = read_sse(&mut body, &mut buffer, missed.len()).await;
    let ids: Vec<i64> = resumed.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids, missed,
        "exactly the missed events, in order, once each"
    );
    // Then live: a job enqueued now shows up on the open stream, run by the worker.
    let live = client
        .enqueue(EnqueueRequest::new("noop", json!({"live": true})))
        .await
        .unwrap();
    let next = read_sse(&mut body, &mut buffer, 3).await;
    let types: Vec<&str> = next
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["job.enqueued", "job.started", "job.completed"]);
    assert!(next.iter().all(|(_, e)| e["job_id"] == live.id.to_string()));
    assert!(next[0].0 > *ids.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_enqueues_watches_and_bulk_retries_failures_with_the_cli() {
    let db = TestDb::sqlite().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _serve = db.spawn(
        "serve",
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
    );
    wait_ready(&base).await;

    // Enqueue and watch a job finish.
    let done = ok(&cli(
        &base,
        None,
        &[
            "jobs",
            "enqueue",
            "sleep",
            "--args",
            r#"{"ms": 200}"#,
            "--wait",
        ],
    ));
    assert!(done.contains("completed"), "{done}");
    // Three jobs that fail for good.
    let mut failing = Vec::new();
    for _ in 0..3 {
        let out = ok(&cli(
            &base,
            None,
            &[
                "jobs",
                "enqueue",
                "sleep",
                "--args",
                r#"{"ms": 10, "fail": "disk full"}"#,
                "--max-attempts",
                "1",
                "-o",
                "json",
            ],
        ));
        let created: Value = serde_json::from_str(&out).unwrap();
        failing.push(created["id"].as_str().unwrap().to_owned());
    }
    // Watching a job that ends discarded shows it, and exits 10 for scripts.
    let watched = cli(
        &base,
        None,
        &["jobs", "watch", &failing[2], "--timeout", "20s"],
    );
    assert_eq!(watched.status.code(), Some(10), "{watched:?}");
    assert!(
        String::from_utf8_lossy(&watched.stdout).contains("discarded"),
        "{watched:?}"
    );
    eventually(Duration::from_secs(20), "three discarded jobs", || async {
        let counts = db.store.count_by_state(Some("default")).await.unwrap();
        (counts.get(&JobState::Discarded) == Some(&3)).then_some(())
    })
    .await;
    // List the failures.
    let listed = ok(&cli(&base, None, &["jobs", "list", "--state", "discarded"]));
    for id in &failing {
        assert!(listed.contains(id.as_str()), "{listed}");
    }
    assert!(listed.contains("disk full"), "{listed}");
    let attempts = ok(&cli(&base, None, &["jobs", "attempts", &failing[0]]));
    assert!(attempts.contains("disk full"), "{attempts}");
    // Bulk retry: a dry run first, then for real with a progress bar.
    let dry = ok(&cli(
        &base,
        None,
        &[
            "jobs",
            "retry",
            "--state",
            "discarded",
            "--since",
            "1h",
            "--dry-run",
        ],
    ));
    assert!(dry.contains("would touch 3 jobs"), "{dry}");
    assert_eq!(
        db.store
            .count_by_state(Some("default"))
            .await
            .unwrap()
            .get(&JobState::Discarded),
        Some(&3)
    );
    let retried = ok(&cli(
        &base,
        None,
        &[
            "jobs",
            "retry",
            "--state",
            "discarded",
            "--since",
            "1h",
            "--yes",
        ],
    ));
    assert!(
        retried.contains("completed: 3 done, 0 skipped of 3"),
        "{retried}"
    );
    eventually(
        Duration::from_secs(20),
        "the retried jobs ran again",
        || async {
            let attempts = db
                .store
                .attempts(failing[0].parse().unwrap())
                .await
                .unwrap();
            (attempts.len() == 2).then_some(())
        },
    )
    .await;
    // The rest of the tour.
    let events = ok(&cli(
        &base,
        None,
        &["events", "tail", "--after", "0", "--count", "3"],
    ));
    assert_eq!(events.lines().count(), 3, "{events}");
    assert!(ok(&cli(&base, None, &["queues", "list"])).contains("default"));
    assert!(ok(&cli(&base, None, &["stats"])).contains("total"));
    // Mistakes get one readable line and the exit code of their kind.
    let missing = cli(
        &base,
        None,
        &["jobs", "get", "01a20d06-1678-72a9-bb0f-6fafbef7e5c5"],
    );
    assert_eq!(missing.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.starts_with("error: no job has id") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let bad_args = cli(&base, None, &["jobs", "enqueue", "sleep", "--args", "{ms:"]);
    assert_eq!(bad_args.status.code(), Some(2));
    let down = cli("http://127.0.0.1:9", None, &["stats"]);
    assert!(String::from_utf8_lossy(&down.stderr).contains("cannot reach Longshore"));
    // Tokens: the first is made in the database; from then on the API wants one.
    let token = db.create_token("me", "admin");
    eventually(Duration::from_secs(10), "auth turns on", || async {
        let out = cli(&base, None, &["stats"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("requires a bearer token")
            .then_some(())
    })
    .await;
    assert!(ok(&cli(&base, Some(&token), &["stats"])).contains("total"));
    let listed = ok(&cli(
        &base,
        Some(&token),
        &["tokens", "list", "--server", &base],
    ));
    assert!(listed.contains("me"), "{listed}");
}
