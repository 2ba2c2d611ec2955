//! `/events` and `/events/stream`: pages, filters, SSE resume without gaps or duplicates,
//! and the in-band reset after retention.

use std::time::Duration;

use futures::StreamExt;
use poem::http::Method;
use serde_json::{Value, json};

use crate::TestApi;

crate::per_backend!(
    crate::TestApi::new =>
    pages_events_with_filters,
    streams_and_resumes_without_gaps,
    resets_when_events_were_pruned,
    names_each_stream_event_by_its_type,
    starts_after_the_latest_event_or_from_a_time
);

async fn pages_events_with_filters(api: TestApi) {
    for queue in ["a", "b", "a"] {
        api.post("/api/v1/jobs", json!({"kind": "noop", "queue": queue}))
            .await
            .expect(201);
    }
    let all = longshore_testkit::eventually(Duration::from_secs(10), "the events", || async {
        let all = api.get("/api/v1/events?after=0").await.expect(200).clone();
        (all["items"].as_array().unwrap().len() == 3).then_some(all)
    })
    .await;
    assert_eq!(all["reset"], false);
    let only_a = api
        .get("/api/v1/events?queue=a&type=job.*")
        .await
        .expect(200)
        .clone();
    assert_eq!(only_a["items"].as_array().unwrap().len(), 2);
    let first = all["items"][0]["id"].as_i64().unwrap();
    let rest = api
        .get(&format!("/api/v1/events?after={first}&limit=1"))
        .await
        .expect(200)
        .clone();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["id"], all["items"][1]["id"]);
    assert_eq!(rest["next_after"], all["items"][1]["id"]);
    let bad = api.get("/api/v1/events?after=yesterday").await;
    assert_eq!(
        bad.problem(422, "invalid_field")["errors"][0]["field"],
        "after"
    );
    api.get("/api/v1/events?job_id=42")
        .await
        .problem(422, "invalid_field");
}

/// Reads SSE frames as (id, event name, JSON data) until `n` arrive.
async fn read_frames(
    stream: &mut (impl futures::Stream<Item = poem::web::sse::Event> + Unpin),
    n: usize,
) -> Vec<(i64, String, Value)> {
    let mut frames = Vec::new();
    while frames.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("an event within 20 s")
            .expect("the stream goes on");
        if let poem::web::sse::Event::Message {
            id, event, data, ..
        } = event
        {
            frames.push((
                id.parse().unwrap(),
                event,
                serde_json::from_str(&data).unwrap(),
            ));
        }
    }
    frames
}

async fn streams_and_resumes_without_gaps(api: TestApi) {
    for _ in 0..5 {
        api.post("/api/v1/jobs", json!({"kind": "noop", "queue": "s"}))
            .await
            .expect(201);
    }
    let response = api.cli.get("/api/v1/events/stream").send().await;
    response.assert_status_is_ok();
    response.assert_content_type("text/event-stream");
    let mut stream = response.sse_stream();
    let first = read_frames(&mut stream, 3).await;
    drop(stream);
    let last_seen = first[2].0;
    // While disconnected, 200 more events are written, from many tasks at once.
    let mut writers = Vec::new();
    for _ in 0..8 {
        let client = api.state.client.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..25 {
                client
                    .enqueue(longshore_jobs::EnqueueRequest::new("noop", json!({})))
                    .await
                    .unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let response = api
        .cli
        .get("/api/v1/events/stream")
        .header("last-event-id", last_seen.to_string())
        .send()
        .await;
    let mut stream = response.sse_stream();
    let resumed = read_frames(&mut stream, 202).await;
    let ids: Vec<i64> = resumed.iter().map(|f| f.0).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "in order, no duplicates");
    assert!(ids[0] > last_seen);
    let stored = api
        .store
        .events_after(longshore_jobs::EventId(last_seen), 1000)
        .await
        .unwrap();
    let stored_ids: Vec<i64> = stored.iter().map(|e| e.id.0).collect();
    assert_eq!(ids, stored_ids, "exactly the missed events");
    assert_eq!(resumed[0].2["type"], "job.enqueued");
    // Then live: a new event arrives on the open stream.
    api.post("/api/v1/jobs", json!({"kind": "noop", "queue": "live"}))
        .await
        .expect(201);
    let live = read_frames(&mut stream, 1).await;
    assert_eq!(live[0].2["queue"], "live");
    assert!(live[0].0 > *ids.last().unwrap());
    // Filters apply to the stream too.
    let response = api.cli.get("/api/v1/events/stream?queue=live").send().await;
    let mut filtered = response.sse_stream();
    let only = read_frames(&mut filtered, 1).await;
    assert_eq!(only[0].2["queue"], "live");
    let bad = api
        .call(
            Method::GET,
            "/api/v1/events/stream?after=abc",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(
        bad.problem(422, "invalid_field")["errors"][0]["field"],
        "after"
    );
}

async fn resets_when_events_were_pruned(api: TestApi) {
    for _ in 0..4 {
        api.post("/api/v1/jobs", json!({"kind": "noop"}))
            .await
            .expect(201);
    }
    // On Postgres a reader sees them once no older transaction runs.
    let events = longshore_testkit::eventually(Duration::from_secs(10), "the events", || async {
        let events = api.store.events_after(longshore_jobs::EventId(0), 10).await;
        events.ok().filter(|e| e.len() == 4)
    })
    .await;
    let first = events[0].id.0;
    api.store
        .prune(longshore_jobs::store::PruneLimits {
            finished_before: chrono::Utc::now() - chrono::Duration::days(1),
            discarded_before: chrono::Utc::now() - chrono::Duration::days(1),
            events_before: chrono::Utc::now() + chrono::Duration::seconds(1),
            batch: 2,
        })
        .await
        .unwrap();
    let page = api
        .get(&format!("/api/v1/events?after={first}"))
        .await
        .expect(200)
        .clone();
    assert_eq!(page["reset"], true);
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        2,
        "the two events left"
    );
    let response = api
        .cli
        .get("/api/v1/events/stream")
        .header("last-event-id", first.to_string())
        .send()
        .await;
    let mut stream = response.sse_stream();
    let frames = read_frames(&mut stream, 3).await;
    assert_eq!(frames[0].1, "reset");
    assert_eq!(frames[0].2["requested"], first);
    assert_eq!(frames[1].0, events[2].id.0);
    assert_eq!(frames[2].0, events[3].id.0);
}

/// Claims and completes every available job of `queue`.
async fn complete_all(api: &TestApi, queue: &str) {
    let worker = longshore_jobs::WorkerId(format!("{queue}@test"));
    let claimed = api
        .store
        .claim(queue, &worker, 100, Duration::from_secs(30))
        .await
        .unwrap();
    let completions: Vec<_> = claimed
        .iter()
        .map(|job| longshore_jobs::Completion {
            lease: job.lease(&worker),
            queue: queue.to_owned(),
            outcome: longshore_jobs::Outcome::Completed { result: None },
        })
        .collect();
    api.store.complete(&completions).await.unwrap();
}

/// The raw text of an SSE response, read until `done` holds of it.
async fn read_raw(response: poem::test::TestResponse, done: impl Fn(&str) -> bool) -> String {
    let mut body = response.0.into_body().into_bytes_stream();
    let mut text = String::new();
    while !done(&text) {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .unwrap_or_else(|_| panic!("the stream goes on within 20 s; so far:\n{text}"))
            .expect("the stream goes on")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}

async fn names_each_stream_event_by_its_type(api: TestApi) {
    for _ in 0..2 {
        api.post("/api/v1/jobs", json!({"kind": "noop", "queue": "named"}))
            .await
            .expect(201);
    }
    complete_all(&api, "named").await;
    let response = api.cli.get("/api/v1/events/stream").send().await;
    response.assert_status_is_ok();
    let completed = |text: &str| text.matches("\nevent: job.completed\n").count();
    let text = read_raw(response, |text| completed(text) >= 2).await;
    assert_eq!(text.matches("\nevent: job.enqueued\n").count(), 2, "{text}");
    // Each frame: its id, its name, then its data of the same type.
    for frame in text
        .split("\n\n")
        .filter(|f| f.contains("event: job.completed"))
    {
        let lines: Vec<&str> = frame.trim_start().lines().collect();
        assert!(lines[0].starts_with("id: "), "{frame}");
        assert_eq!(lines[1], "event: job.completed", "{frame}");
        let data: Value = serde_json::from_str(lines[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], "job.completed");
        assert_eq!(lines[0], format!("id: {}", data["id"]));
    }
}

/// Sets the time event `id` was written, to `at` (RFC 3339).
async fn set_event_time(api: &TestApi, id: i64, at: &str) {
    let micros = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp_micros()
        .to_string();
    let (sql, time) = if api.url.starts_with("postgres") {
        (
            "UPDATE events SET at = $1::timestamptz WHERE id = $2::bigint",
            at,
        )
    } else {
        (
            "UPDATE events SET at = CAST($1 AS INTEGER) WHERE id = CAST($2 AS INTEGER)",
            micros.as_str(),
        )
    };
    let id = id.to_string();
    assert_eq!(
        longshore_testkit::execute(&api.url, sql, &[time, &id]).await,
        1
    );
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

async fn starts_after_the_latest_event_or_from_a_time(api: TestApi) {
    let mut all = Vec::new();
    for (i, queue) in ["old", "old", "old", "new", "new"].iter().enumerate() {
        let id = enqueued_event(&api, queue).await;
        let day = if *queue == "old" { 1 } else { 2 };
        set_event_time(&api, id, &format!("2020-01-0{day}T00:00:0{i}Z")).await;
        all.push(id);
    }
    // On Postgres a reader sees them once no older transaction runs.
    longshore_testkit::eventually(Duration::from_secs(10), "the events", || async {
        (ids(api.get("/api/v1/events").await.expect(200)) == all).then_some(())
    })
    .await;

    // `latest`: nothing of the past, then what comes next.
    let live = api
        .get("/api/v1/events?after=latest")
        .await
        .expect(200)
        .clone();
    assert_eq!(ids(&live), Vec::<i64>::new());
    let later = enqueued_event(&api, "later").await;
    let path = format!("/api/v1/events?after={}", live["next_after"]);
    let next = longshore_testkit::eventually(Duration::from_secs(10), "the next", || async {
        let page = api.get(&path).await.expect(200).clone();
        (!ids(&page).is_empty()).then_some(page)
    })
    .await;
    assert_eq!(ids(&next), [later]);

    // `since`: the first event written at or after the time.
    assert_eq!(
        since(&api, "2020-01-02T00:00:00Z").await,
        [all[3], all[4], later]
    );
    assert_eq!(
        since(&api, "2020-01-01T00:00:01Z").await[..2],
        [all[1], all[2]],
        "at or after"
    );
    assert_eq!(
        since(&api, "2020-01-01T01:00:01+01:00").await[0],
        all[1],
        "any offset"
    );
    assert_eq!(since(&api, "2019-12-31T00:00:00Z").await[0], all[0]);
    assert_eq!(since(&api, "2999-01-01T00:00:00Z").await, Vec::<i64>::new());

    // The stream starts the same ways; `Last-Event-ID` wins over both.
    let stream = |query: &str, last: Option<i64>| {
        let mut request = api.cli.get(format!("/api/v1/events/stream?{query}"));
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        request.send()
    };
    let mut from_time = stream("since=2020-01-02T00:00:00Z", None)
        .await
        .sse_stream();
    let frames = read_frames(&mut from_time, 3).await;
    assert_eq!(frames[0].0, all[3]);
    assert_eq!(frames[0].1, "job.enqueued");
    let mut resumed = stream("after=latest", Some(all[3])).await.sse_stream();
    assert_eq!(read_frames(&mut resumed, 1).await[0].0, all[4]);
    let response = stream("after=latest", None).await;
    response.assert_status_is_ok();
    let mut live = response.sse_stream();
    api.post("/api/v1/jobs", json!({"kind": "noop", "queue": "live"}))
        .await
        .expect(201);
    let first = read_frames(&mut live, 1).await;
    assert_eq!(first[0].2["queue"], "live", "nothing of the past first");

    // Bad values name their field, on both routes.
    for path in ["/api/v1/events", "/api/v1/events/stream"] {
        for (query, field) in [
            ("after=newest", "after"),
            ("after=-1", "after"),
            ("since=yesterday", "since"),
            ("since=2020-01-01", "since"),
            ("after=1&since=2020-01-01T00:00:00Z", "since"),
        ] {
            let bad = api.get(&format!("{path}?{query}")).await;
            let problem = bad.problem(422, "invalid_field");
            assert_eq!(
                problem["errors"][0]["field"], field,
                "{path}?{query}: {problem}"
            );
        }
    }
}

/// The ids of the events `since` (RFC 3339) finds.
async fn since(api: &TestApi, at: &str) -> Vec<i64> {
    let path = format!("/api/v1/events?since={}", at.replace('+', "%2B"));
    ids(api.get(&path).await.expect(200))
}

/// Enqueues a job on `queue`; returns the id of its `job.enqueued` event.
async fn enqueued_event(api: &TestApi, queue: &str) -> i64 {
    let job = api
        .post("/api/v1/jobs", json!({"kind": "noop", "queue": queue}))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .parse::<longshore_jobs::JobId>()
        .unwrap();
    api.store.job_events(job).await.unwrap()[0].id.0
}
