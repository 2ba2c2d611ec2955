//! `longshore webhooks`: endpoints, their secrets, their delivery logs, redelivery and
//! replay.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{EndpointRef, Output, WebhooksCommand};

use super::output::{self, cut, outln, s, when};
use super::{Api, path_segment};

pub async fn webhooks(command: WebhooksCommand) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::List(client) => {
            let api = Api::new(&client)?;
            let list = api.call(Method::GET, "/webhook-endpoints", None).await?;
            api.print_list(output::items(&list), endpoint_rows);
        }
        WebhooksCommand::Get(EndpointRef { id, client }) => {
            let api = Api::new(&client)?;
            let endpoint = api.call(Method::GET, &path(&id, ""), None).await?;
            api.print(&endpoint, |e| endpoint_rows(std::slice::from_ref(e)));
        }
        WebhooksCommand::Create {
            url,
            kinds,
            rate_limit,
            ordered,
            disabled,
            client,
        } => {
            let api = Api::new(&client)?;
            let body = json!({
                "url": url, "kinds": kinds, "rate_limit": rate_limit, "ordered": ordered,
                "enabled": !disabled,
            });
            let created = api
                .call(Method::POST, "/webhook-endpoints", Some(body))
                .await?;
            match api.output {
                Output::Table => {
                    endpoint_rows(std::slice::from_ref(&created["endpoint"]));
                    outln!(
                        "secret: {}  (give it to the receiver; it is not shown again)",
                        s(&created["secret"])
                    );
                }
                Output::Json | Output::Jsonl => outln!("{created}"),
            }
        }
        WebhooksCommand::Enable(endpoint) => set_enabled(endpoint, true).await?,
        WebhooksCommand::Disable(endpoint) => set_enabled(endpoint, false).await?,
        WebhooksCommand::Delete(EndpointRef { id, client }) => {
            let api = Api::new(&client)?;
            api.call(Method::DELETE, &path(&id, ""), None).await?;
            if api.output == Output::Table {
                outln!("deleted endpoint {id} and its delivery log");
            }
        }
        WebhooksCommand::RotateSecret(EndpointRef { id, client }) => {
            let api = Api::new(&client)?;
            let rotated = api
                .call(Method::POST, &path(&id, "/rotate-secret"), None)
                .await?;
            match api.output {
                Output::Table => outln!(
                    "secret: {}  (the previous one signs beside it until {})",
                    s(&rotated["secret"]),
                    when(&rotated["previous_secret_until"])
                ),
                Output::Json | Output::Jsonl => outln!("{rotated}"),
            }
        }
        WebhooksCommand::Attempts { id, page, client } => {
            let api = Api::new(&client)?;
            api.pages_by(
                &path(&id, "/attempts"),
                &page,
                ("before", "next_before"),
                attempt_rows,
            )
            .await?;
        }
        WebhooksCommand::Redeliver { id, job, client } => {
            let api = Api::new(&client)?;
            let made = api
                .call(
                    Method::POST,
                    &path(&id, "/redeliver"),
                    Some(json!({ "job_id": job })),
                )
                .await?;
            print_made(&api, &made);
        }
        WebhooksCommand::Replay { id, since, client } => {
            let api = Api::new(&client)?;
            let since = chrono::Utc::now() - chrono::Duration::from_std(since.into())?;
            let made = api
                .call(
                    Method::POST,
                    &path(&id, "/replay"),
                    Some(json!({ "since": since.to_rfc3339() })),
                )
                .await?;
            print_made(&api, &made);
        }
    }
    Ok(())
}

fn path(id: &str, rest: &str) -> String {
    format!("/webhook-endpoints/{}{rest}", path_segment(id))
}

async fn set_enabled(EndpointRef { id, client }: EndpointRef, enabled: bool) -> anyhow::Result<()> {
    let api = Api::new(&client)?;
    let endpoint = api
        .call(
            Method::PATCH,
            &path(&id, ""),
            Some(json!({ "enabled": enabled })),
        )
        .await?;
    api.print(&endpoint, |e| endpoint_rows(std::slice::from_ref(e)));
    Ok(())
}

fn print_made(api: &Api, made: &Value) {
    match api.output {
        Output::Table => {
            let jobs = output::items(&made["job_ids"]);
            outln!("{} delivery job(s) made", jobs.len());
            for job in jobs {
                outln!("{}", s(job));
            }
        }
        Output::Json | Output::Jsonl => outln!("{made}"),
    }
}

fn endpoint_rows(endpoints: &[Value]) {
    let rows = endpoints
        .iter()
        .map(|e| {
            let kinds: Vec<String> = output::items(&e["kinds"]).iter().map(s).collect();
            vec![
                s(&e["id"]),
                cut(&s(&e["url"]), 48),
                kinds.join(","),
                if e["enabled"] == json!(true) {
                    "enabled".into()
                } else {
                    "disabled".into()
                },
                s(&e["breaker"]),
                s(&e["consecutive_failures"]),
                cut(&s(&e["disabled_reason"]), 40),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "URL",
            "KINDS",
            "STATE",
            "BREAKER",
            "FAILURES",
            "DISABLED BECAUSE",
        ],
        rows,
    );
}

fn attempt_rows(attempts: &[Value], header: bool) {
    let rows = attempts
        .iter()
        .map(|a| {
            vec![
                s(&a["id"]),
                when(&a["at"]),
                s(&a["message_id"]),
                s(&a["attempt"]),
                s(&a["status"]),
                format!("{}ms", s(&a["latency_ms"])),
                cut(&s(&a["error"]), 50),
            ]
        })
        .collect();
    output::draw(
        &[
            "ID", "AT", "MESSAGE", "ATTEMPT", "STATUS", "LATENCY", "ERROR",
        ],
        rows,
        header,
    );
}
