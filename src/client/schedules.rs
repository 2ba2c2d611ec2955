//! `longshore schedules`: cron schedules, defined by flags, and their history.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{ScheduleFields, SchedulesCommand};

use super::{Api, print_rows, s};

fn schedule_rows(value: &Value) {
    let list = match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let rows = list
        .iter()
        .map(|row| {
            vec![
                s(&row["id"]),
                s(&row["cron"]),
                s(&row["timezone"]),
                s(&row["job"]["kind"]),
                if row["enabled"] == json!(true) {
                    "active".into()
                } else {
                    "paused".into()
                },
                s(&row["next_fire_at"]),
                s(&row["last_fire_at"]),
                s(&row["source"]),
            ]
        })
        .collect();
    print_rows(
        &[
            "id",
            "cron",
            "timezone",
            "kind",
            "status",
            "next tick",
            "last tick",
            "source",
        ],
        rows,
    );
}

/// The JSON body of a schedule's flags; `job` is merged over `current_job` when given.
fn schedule_body(fields: &ScheduleFields, current_job: Option<&Value>) -> anyhow::Result<Value> {
    let mut body = serde_json::Map::new();
    if let Some(cron) = &fields.cron {
        body.insert("cron".into(), json!(cron));
    }
    if let Some(tz) = &fields.timezone {
        body.insert("timezone".into(), json!(tz));
    }
    if let Some(c) = &fields.catch_up {
        body.insert("catch_up".into(), json!(c));
    }
    if let Some(w) = fields.catch_up_window {
        body.insert(
            "catch_up_window_s".into(),
            json!(Duration::from(w).as_secs()),
        );
    }
    if let Some(c) = fields.catch_up_cap {
        body.insert("catch_up_cap".into(), json!(c));
    }
    if let Some(o) = &fields.overlap {
        body.insert("overlap".into(), json!(o));
    }
    if fields.kind.is_some() || fields.args.is_some() || fields.queue.is_some() {
        let mut job = current_job.cloned().unwrap_or_else(|| json!({}));
        if let Some(kind) = &fields.kind {
            job["kind"] = json!(kind);
        }
        if let Some(args) = &fields.args {
            job["args"] = serde_json::from_str(args)
                .with_context(|| format!("--args is not valid JSON: {args}"))?;
        }
        if let Some(queue) = &fields.queue {
            job["queue"] = json!(queue);
        }
        body.insert("job".into(), job);
    }
    Ok(Value::Object(body))
}

pub async fn schedules(command: SchedulesCommand) -> anyhow::Result<()> {
    match command {
        SchedulesCommand::List(client) => {
            let api = Api::new(&client)?;
            let list = api.call(Method::GET, "/schedules", None).await?;
            api.print(&list, schedule_rows);
        }
        SchedulesCommand::Get { id, client } => {
            let api = Api::new(&client)?;
            let one = api
                .call(Method::GET, &format!("/schedules/{id}"), None)
                .await?;
            api.print(&one, schedule_rows);
        }
        SchedulesCommand::Create { id, fields, client } => {
            let api = Api::new(&client)?;
            if fields.cron.is_none() || fields.kind.is_none() {
                bail!("a new schedule needs --cron and --kind");
            }
            let mut body = schedule_body(&fields, None)?;
            body["id"] = json!(id);
            let made = api.call(Method::POST, "/schedules", Some(body)).await?;
            api.print(&made, schedule_rows);
        }
        SchedulesCommand::Update { id, fields, client } => {
            let api = Api::new(&client)?;
            let current = api
                .call(Method::GET, &format!("/schedules/{id}"), None)
                .await?;
            let body = schedule_body(&fields, Some(&current["job"]))?;
            let changed = api
                .call(Method::PATCH, &format!("/schedules/{id}"), Some(body))
                .await?;
            api.print(&changed, schedule_rows);
        }
        SchedulesCommand::Delete { id, client } => {
            let api = Api::new(&client)?;
            api.call(Method::DELETE, &format!("/schedules/{id}"), None)
                .await?;
            println!("schedule {id} deleted");
        }
        SchedulesCommand::Pause { id, client } => {
            let api = Api::new(&client)?;
            let s = api
                .call(Method::POST, &format!("/schedules/{id}/pause"), None)
                .await?;
            api.print(&s, schedule_rows);
        }
        SchedulesCommand::Resume { id, client } => {
            let api = Api::new(&client)?;
            let s = api
                .call(Method::POST, &format!("/schedules/{id}/resume"), None)
                .await?;
            api.print(&s, schedule_rows);
        }
        SchedulesCommand::Trigger { id, client } => {
            let api = Api::new(&client)?;
            let job = api
                .call(Method::POST, &format!("/schedules/{id}/trigger"), None)
                .await?;
            api.print(&job, |j| println!("{} {}", s(&j["id"]), s(&j["state"])));
        }
        SchedulesCommand::Upcoming { id, count, client } => {
            let api = Api::new(&client)?;
            let ticks = api
                .call(
                    Method::GET,
                    &format!("/schedules/{id}/upcoming?count={}", count.min(100)),
                    None,
                )
                .await?;
            api.print(&ticks, |t| {
                for tick in t.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    println!("{}", s(tick));
                }
            });
        }
    }
    Ok(())
}
