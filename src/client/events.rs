//! `longshore events`: the event stream, followed live (as `tail -f`) or replayed from a
//! point in the past, resuming after the last id seen when the connection drops.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use crate::cli::{EventsCommand, Output};

use super::output::{self, cut, outln, s, when};
use super::{Api, encode_query, problem};

/// Where the first connection starts; later ones resume after the last id seen.
pub(super) enum Start {
    After(i64),
    Since(String),
    /// From now on (the stream's first message names the position it starts after).
    Latest,
}

pub async fn events(command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Tail {
        after,
        since,
        from_start,
        queue,
        job,
        types,
        count,
        client,
    } = command;
    let api = Api::new(&client)?;
    let mut filters = Vec::new();
    if let Some(q) = queue {
        filters.push(("queue".to_owned(), q));
    }
    if let Some(j) = job {
        filters.push(("job_id".to_owned(), j));
    }
    for t in types {
        filters.push(("type".to_owned(), t));
    }
    let start = match (after, since, from_start) {
        (Some(id), _, _) => Start::After(id),
        (_, Some(since), _) => {
            let from = chrono::Utc::now() - chrono::Duration::from_std(since.into())?;
            Start::Since(from.to_rfc3339())
        }
        (_, _, true) => Start::After(0),
        // Live: the newest id now, so a reconnect before the first event misses nothing.
        _ => {
            let head = api
                .call(Method::GET, "/events?after=latest&limit=1", None)
                .await?;
            Start::After(head["next_after"].as_i64().unwrap_or(0))
        }
    };
    let mut seen = 0u64;
    follow(
        &api,
        start,
        |start| {
            let mut query = filters.clone();
            if let Start::Since(time) = start {
                query.push(("since".to_owned(), time.clone()));
            }
            format!("/events/stream?{}", encode_query(&query))
        },
        |event, value| {
            if event == "reset" {
                eprintln!(
                    "events up to {} were deleted by retention; continuing after them",
                    s(&value["pruned_through"])
                );
                return true;
            }
            match api.output {
                Output::Table => event_rows(std::slice::from_ref(&value)),
                // A stream is one JSON document per event, whatever the format asked.
                Output::Json | Output::Jsonl => outln!("{value}"),
            }
            seen += 1;
            count.is_none_or(|c| seen < c)
        },
    )
    .await
}

/// Follows the SSE stream at `path(start)`, resuming after the last id seen whenever the
/// connection drops, with backoff while the server is unreachable. `handle` gets each
/// message's event name and data, and returns false to stop.
pub(super) async fn follow(
    api: &Api,
    mut start: Start,
    path: impl Fn(&Start) -> String,
    mut handle: impl FnMut(&str, Value) -> bool,
) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut request = api.request(Method::GET, &path(&start));
        if let Start::After(id) = &start {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = match request.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                return Err(problem(status, &r.text().await.unwrap_or_default()));
            }
            Err(error) => {
                eprintln!("{}; reconnecting", api.unreachable(error));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        let mut stream = response.bytes_stream().eventsource();
        while let Some(message) = stream.next().await {
            let Ok(message) = message else { break };
            if let Ok(id) = message.id.parse::<i64>() {
                start = Start::After(id);
            }
            let value: Value =
                serde_json::from_str(&message.data).unwrap_or(Value::String(message.data));
            if message.event == "cutoff" {
                eprintln!(
                    "the server cut the stream off ({}); resuming",
                    s(&value["cutoff"])
                );
                continue;
            }
            if !handle(&message.event, value) {
                return Ok(());
            }
        }
        let after = match &start {
            Start::After(id) => id.to_string(),
            Start::Since(time) => time.clone(),
            Start::Latest => "the newest".to_owned(),
        };
        eprintln!("stream ended; resuming after {after}");
    }
}

/// Events as rows: when, what, where, which job, and the error it carries.
pub fn event_rows(events: &[Value]) {
    for e in events {
        let error = e["data"]["error"]
            .as_str()
            .map(|error| cut(error, 80))
            .unwrap_or_default();
        let line = format!(
            "{:<8} {}  {:<16} {:<10} {:<14} {:<36} {:<10} {error}",
            s(&e["id"]),
            when(&e["at"]),
            s(&e["type"]),
            s(&e["queue"]),
            s(&e["kind"]),
            s(&e["job_id"]),
            s(&e["state"]),
        );
        output::line(line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;

    /// The stream as the tail reads it, from `chunks` as the network cut them.
    async fn frames(chunks: Vec<&'static [u8]>) -> Vec<(String, String, String)> {
        let body = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(c))),
        );
        body.eventsource()
            .map(|e| {
                let e = e.unwrap();
                (e.id, e.event, e.data)
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn frames_survive_crlf_split_utf8_and_multi_line_data() {
        let read = frames(vec![
            b"id: 7\r\nevent: job.failed\r\ndata: {\"error\":\"caf\xc3",
            b"\xa9\"}\r\n\r\n",
            b": heartbeat\n\nid: 8\ndata: line one\ndata: line two\n\n",
        ])
        .await;
        assert_eq!(
            read,
            [
                (
                    "7".into(),
                    "job.failed".into(),
                    "{\"error\":\"café\"}".into()
                ),
                ("8".into(), "message".into(), "line one\nline two".into()),
            ]
        );
    }
}
