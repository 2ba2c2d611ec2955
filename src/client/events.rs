//! `longshore events`: the event stream, followed live or read from a cursor.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use crate::cli::EventsCommand;

use super::{Api, encode_query, problem, s};

pub async fn events(command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Tail {
        after,
        queue,
        job,
        types,
        count,
        client,
    } = command;
    let api = Api::new(&client)?;
    let mut query = Vec::new();
    if let Some(q) = queue {
        query.push(("queue".to_owned(), q));
    }
    if let Some(j) = job {
        query.push(("job_id".to_owned(), j));
    }
    for t in types {
        query.push(("type".to_owned(), t));
    }
    let path = format!("/events/stream?{}", encode_query(&query));
    let mut last = after.unwrap_or(0);
    let mut seen = 0u64;
    let mut backoff = Duration::from_millis(500);
    loop {
        let request = api
            .request(Method::GET, &path)
            .header("Last-Event-ID", last.to_string());
        let response = match request.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                return Err(problem(status, &r.text().await.unwrap_or_default()));
            }
            Err(error) => {
                eprintln!(
                    "{}; reconnecting after event {last}",
                    api.unreachable(error)
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let mut data = String::new();
                let mut name = "message".to_owned();
                for line in frame.lines() {
                    if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                    if let Some(i) = line.strip_prefix("id:") {
                        last = i.trim().parse().unwrap_or(last);
                    }
                    if let Some(e) = line.strip_prefix("event:") {
                        name = e.trim().to_owned();
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                if name == "reset" {
                    eprintln!(
                        "events up to {} were deleted by retention; continuing after them",
                        s(&value["pruned_through"])
                    );
                    continue;
                }
                api.print(&value, |e| {
                    println!(
                        "{:<20} {:<22} {:<38} {:<10} {}",
                        s(&e["id"]),
                        s(&e["type"]),
                        s(&e["job_id"]),
                        s(&e["queue"]),
                        s(&e["state"])
                    )
                });
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
        }
        eprintln!("stream ended; resuming after event {last}");
    }
}
