//! `longshore queues` (pause, resume, limits, figures) and `longshore stats`.

use reqwest::Method;
use serde_json::json;

use crate::cli::{ClientArgs, QueuesCommand};

use super::{Api, print_rows, s};

pub async fn queues(command: QueuesCommand) -> anyhow::Result<()> {
    let (api, value) = match command {
        QueuesCommand::List(client) => {
            let api = Api::new(&client)?;
            let v = api.call(Method::GET, "/queues", None).await?;
            (api, v)
        }
        QueuesCommand::Pause { name, client } => {
            let api = Api::new(&client)?;
            let v = api
                .call(Method::POST, &format!("/queues/{name}/pause"), None)
                .await?;
            (api, json!([v]))
        }
        QueuesCommand::Resume { name, client } => {
            let api = Api::new(&client)?;
            let v = api
                .call(Method::POST, &format!("/queues/{name}/resume"), None)
                .await?;
            (api, json!([v]))
        }
    };
    api.print(&value, |queues| {
        let rows = queues
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
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
                    s(&q["workers"]),
                ]
            })
            .collect();
        print_rows(
            &[
                "queue",
                "status",
                "available",
                "scheduled",
                "running",
                "retryable",
                "completed",
                "discarded",
                "workers",
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
        print_rows(&["state", "jobs"], rows);
        println!("total {} in {} queues", s(&st["total"]), s(&st["queues"]));
    });
    Ok(())
}
