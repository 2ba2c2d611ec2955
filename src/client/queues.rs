//! `longshore queues` (show, pause, resume, limit), `longshore workers` and
//! `longshore stats`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{ClientArgs, IngestersCommand, QueueRef, QueuesCommand, WorkersCommand};

use super::output::{self, outln, s, when};
use super::{Api, path_segment};

pub async fn queues(command: QueuesCommand) -> anyhow::Result<()> {
    let (api, path, method, body) = match command {
        QueuesCommand::List(client) => {
            let api = Api::new(&client)?;
            let list = api.call(Method::GET, "/queues", None).await?;
            api.print_list(output::items(&list), queue_rows);
            return Ok(());
        }
        QueuesCommand::Get(QueueRef { name, client }) => {
            let api = Api::new(&client)?;
            let path = format!("/queues/{}", path_segment(&name));
            (api, path, Method::GET, None)
        }
        QueuesCommand::Pause { queue, create } => action(queue, "pause", create)?,
        QueuesCommand::Resume { queue, create } => action(queue, "resume", create)?,
        QueuesCommand::Concurrency {
            queue,
            limit,
            clear: _,
            create,
        } => {
            let (api, path, _, _) = action(queue, "concurrency", create)?;
            (
                api,
                path,
                Method::PUT,
                Some(json!({ "concurrency": limit })),
            )
        }
    };
    let queue = api.call(method, &path, body).await?;
    api.print(&queue, |q| queue_rows(std::slice::from_ref(q)));
    Ok(())
}

/// The request of a queue action: `POST /queues/<name>/<what>`, with `create=true` when
/// the queue may be new.
fn action(
    queue: QueueRef,
    what: &str,
    create: bool,
) -> anyhow::Result<(Api, String, Method, Option<Value>)> {
    let api = Api::new(&queue.client)?;
    let mut path = format!("/queues/{}/{what}", path_segment(&queue.name));
    if create {
        path.push_str("?create=true");
    }
    Ok((api, path, Method::POST, None))
}

fn queue_rows(queues: &[Value]) {
    let rows = queues
        .iter()
        .map(|q| {
            let c = &q["counts"];
            let n = |k: &str| c[k].as_i64().unwrap_or(0).to_string();
            vec![
                s(&q["name"]),
                if q["paused"] == json!(true) {
                    "paused".into()
                } else {
                    "active".into()
                },
                n("available"),
                n("scheduled"),
                n("running"),
                n("retryable"),
                n("completed"),
                n("discarded"),
                s(&q["concurrency"]),
                s(&q["workers"]),
            ]
        })
        .collect();
    output::table(
        &[
            "queue",
            "status",
            "available",
            "scheduled",
            "running",
            "retryable",
            "completed",
            "discarded",
            "limit",
            "workers",
        ],
        rows,
    );
}

pub async fn workers(command: WorkersCommand) -> anyhow::Result<()> {
    let WorkersCommand::List { within, client } = command;
    let api = Api::new(&client)?;
    let within_s = std::time::Duration::from(within).as_secs().clamp(1, 86_400);
    let list = api
        .call(Method::GET, &format!("/workers?within_s={within_s}"), None)
        .await?;
    api.print_list(output::items(&list), |workers| {
        let rows = workers
            .iter()
            .map(|w| {
                vec![
                    s(&w["id"]),
                    s(&w["queue"]),
                    format!("{}:{}", s(&w["host"]), s(&w["pid"])),
                    s(&w["concurrency"]),
                    s(&w["running"]),
                    when(&w["started_at"]),
                    when(&w["last_seen_at"]),
                    if w["stopped_at"].is_null() {
                        "live".to_owned()
                    } else {
                        format!("stopped {}", when(&w["stopped_at"]))
                    },
                ]
            })
            .collect();
        output::table(
            &[
                "worker",
                "queue",
                "host:pid",
                "concurrency",
                "running",
                "started",
                "last seen",
                "status",
            ],
            rows,
        );
    });
    Ok(())
}

/// `ingesters list`: a row per ingester.
pub async fn ingesters(command: IngestersCommand) -> anyhow::Result<()> {
    let IngestersCommand::List { client } = command;
    let api = Api::new(&client)?;
    let list = api.call(Method::GET, "/ingesters", None).await?;
    api.print_list(output::items(&list), |ingesters| {
        let rows = ingesters
            .iter()
            .map(|i| {
                let oldest = match i["oldest_pending_ms"].as_u64() {
                    Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
                    None => "-".to_owned(),
                };
                let status = match (i["connected"].as_bool(), i["error"].as_str()) {
                    (Some(true), _) => "reading".to_owned(),
                    (_, Some(error)) => error.to_owned(),
                    _ => "not connected".to_owned(),
                };
                vec![
                    s(&i["stream"]),
                    s(&i["group"]),
                    i["consumers"].as_array().map_or(0, Vec::len).to_string(),
                    s(&i["lag"]),
                    s(&i["pending"]),
                    oldest,
                    s(&i["dead_lettered"]),
                    format!("{} {}", s(&i["last_entry_id"]), when(&i["last_entry_at"])),
                    status,
                ]
            })
            .collect();
        output::table(
            &[
                "stream",
                "group",
                "consumers",
                "lag",
                "pending",
                "oldest pending",
                "dead letters",
                "last entry",
                "status",
            ],
            rows,
        );
    });
    Ok(())
}

pub async fn stats(client: ClientArgs) -> anyhow::Result<()> {
    let api = Api::new(&client)?;
    let stats = api.call(Method::GET, "/stats", None).await?;
    api.print(&stats, |st| {
        let rows = st["counts"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| vec![k.clone(), s(v)])
            .collect();
        output::table(&["state", "jobs"], rows);
        outln!("total {} in {} queues", s(&st["total"]), s(&st["queues"]));
    });
    Ok(())
}
