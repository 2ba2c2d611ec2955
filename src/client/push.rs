//! `longshore push`: send a push, and follow the gateway stream as a gateway does.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{Output, PushCommand};
use crate::exit::{Exit, fail};

use super::events::{Start, follow};
use super::output::{self, cut, outln, s, when};
use super::{Api, encode_query};

pub async fn push(command: PushCommand) -> anyhow::Result<()> {
    match command {
        PushCommand::Send {
            user,
            kind,
            payload,
            event_id,
            client,
        } => {
            let api = Api::new(&client)?;
            let payload: Value = serde_json::from_str(&payload)
                .map_err(|error| fail(Exit::Usage, format!("--payload must be JSON: {error}")))?;
            let mut body = json!({ "user_id": user, "kind": kind, "payload": payload });
            if let Some(id) = event_id {
                body["event_id"] = Value::String(id);
            }
            let pushed = api.call(Method::POST, "/push", Some(body)).await?;
            match api.output {
                Output::Table => {
                    let again = if pushed["duplicate"] == true {
                        " (stored already: nothing new stored)"
                    } else {
                        ""
                    };
                    outln!(
                        "push {} at position {}{again}",
                        s(&pushed["event_id"]),
                        s(&pushed["position"])
                    );
                }
                Output::Json | Output::Jsonl => outln!("{pushed}"),
            }
            Ok(())
        }
        PushCommand::Tail {
            after,
            from_start,
            kinds,
            users,
            partition,
            count,
            client,
        } => {
            let api = Api::new(&client)?;
            let mut query: Vec<(String, String)> = Vec::new();
            query.extend(kinds.into_iter().map(|k| ("kind".to_owned(), k)));
            query.extend(users.into_iter().map(|u| ("user_id".to_owned(), u)));
            if let Some(p) = partition {
                query.push(("partition".to_owned(), p));
            }
            // Live unless asked otherwise; the first push received fixes the position, so a
            // reconnect resumes after it.
            let start = match (after, from_start) {
                (Some(position), _) => Some(position),
                (None, true) => Some(0),
                (None, false) => None,
            };
            let mut seen = 0u64;
            let first = start.map_or(Start::Latest, Start::After);
            follow(
                &api,
                first,
                |start| {
                    let mut query = query.clone();
                    if let Start::Latest = start {
                        query.push(("after".to_owned(), "latest".to_owned()));
                    }
                    format!("/push/stream?{}", encode_query(&query))
                },
                |event, value| {
                    if event == "ready" {
                        return true;
                    }
                    if event == "reset" {
                        eprintln!(
                            "pushes up to position {} were deleted by retention; continuing \
                             with the oldest kept",
                            s(&value["pruned_through"])
                        );
                        return true;
                    }
                    match api.output {
                        Output::Table => {
                            let line = format!(
                                "{:<10} {}  {:<20} {:<24} {}",
                                s(&value["position"]),
                                when(&value["at"]),
                                s(&value["kind"]),
                                s(&value["user_id"]),
                                cut(&value["payload"].to_string(), 80),
                            );
                            output::line(line.trim_end());
                        }
                        Output::Json | Output::Jsonl => outln!("{value}"),
                    }
                    seen += 1;
                    count.is_none_or(|c| seen < c)
                },
            )
            .await
        }
    }
}
