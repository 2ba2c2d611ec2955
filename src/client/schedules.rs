//! `longshore schedules`: cron schedules, defined by flags, and their history.

use std::time::Duration;

use clap::ValueEnum;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{ScheduleFields, SchedulesCommand};
use crate::exit::{Exit, fail};

use super::output::{self, outln, s, when};
use super::{Api, json_arg, path_segment};

/// A time in the schedule's zone, `2026-12-02 02:30 CET`; `when`'s form for UTC.
fn in_zone(time: &Value, zone: &Value) -> String {
    let zone = zone.as_str().and_then(|z| z.parse::<chrono_tz::Tz>().ok());
    let at = time
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    match (at, zone) {
        (Some(at), Some(zone)) if zone != chrono_tz::UTC => at
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        _ => when(time),
    }
}

fn schedule_rows(list: &[Value]) {
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
                in_zone(&row["next_fire_at"], &row["timezone"]),
                in_zone(&row["last_fire_at"], &row["timezone"]),
                s(&row["source"]),
            ]
        })
        .collect();
    output::table(
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
    if let Some(c) = fields.catch_up.and_then(|c| c.to_possible_value()) {
        body.insert("catch_up".into(), json!(c.get_name()));
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
    if let Some(o) = fields.overlap.and_then(|o| o.to_possible_value()) {
        body.insert("overlap".into(), json!(o.get_name()));
    }
    let template = fields.kind.is_some()
        || fields.args.is_some()
        || fields.queue.is_some()
        || fields.priority.is_some()
        || fields.max_attempts.is_some()
        || !fields.tags.is_empty();
    if template {
        let mut job = current_job.cloned().unwrap_or_else(|| json!({}));
        if let Some(kind) = &fields.kind {
            job["kind"] = json!(kind);
        }
        if let Some(args) = &fields.args {
            job["args"] = json_arg("--args", args)?;
        }
        if let Some(queue) = &fields.queue {
            job["queue"] = json!(queue);
        }
        if let Some(priority) = fields.priority {
            job["priority"] = json!(priority);
        }
        if let Some(max_attempts) = fields.max_attempts {
            job["max_attempts"] = json!(max_attempts);
        }
        if !fields.tags.is_empty() {
            job["tags"] = json!(fields.tags);
        }
        body.insert("job".into(), job);
    }
    Ok(Value::Object(body))
}

pub async fn schedules(command: SchedulesCommand) -> anyhow::Result<()> {
    let one =
        |api: &Api, value: &Value| api.print(value, |v| schedule_rows(std::slice::from_ref(v)));
    match command {
        SchedulesCommand::List(client) => {
            let api = Api::new(&client)?;
            let list = api.call(Method::GET, "/schedules", None).await?;
            api.print_list(output::items(&list), schedule_rows);
        }
        SchedulesCommand::Get { id, client } => {
            let api = Api::new(&client)?;
            let found = api.call(Method::GET, &at(&id, ""), None).await?;
            one(&api, &found);
        }
        SchedulesCommand::Create { id, fields, client } => {
            let api = Api::new(&client)?;
            if fields.cron.is_none() || fields.kind.is_none() {
                return Err(fail(Exit::Usage, "a new schedule needs --cron and --kind"));
            }
            let mut body = schedule_body(&fields, None)?;
            body["id"] = json!(id);
            let made = api.call(Method::POST, "/schedules", Some(body)).await?;
            one(&api, &made);
        }
        SchedulesCommand::Update { id, fields, client } => {
            let api = Api::new(&client)?;
            let current = api.call(Method::GET, &at(&id, ""), None).await?;
            let body = schedule_body(&fields, Some(&current["job"]))?;
            let changed = api.call(Method::PATCH, &at(&id, ""), Some(body)).await?;
            one(&api, &changed);
        }
        SchedulesCommand::Delete { id, client } => {
            let api = Api::new(&client)?;
            api.call(Method::DELETE, &at(&id, ""), None).await?;
            api.print(&json!({ "id": id, "deleted": true }), |_| {
                outln!("schedule {id} deleted")
            });
        }
        SchedulesCommand::Pause { id, client } => {
            let api = Api::new(&client)?;
            let paused = api.call(Method::POST, &at(&id, "/pause"), None).await?;
            one(&api, &paused);
        }
        SchedulesCommand::Resume { id, client } => {
            let api = Api::new(&client)?;
            let resumed = api.call(Method::POST, &at(&id, "/resume"), None).await?;
            one(&api, &resumed);
        }
        SchedulesCommand::Trigger { id, client } => {
            let api = Api::new(&client)?;
            let job = api.call(Method::POST, &at(&id, "/trigger"), None).await?;
            api.print(&job, |j| outln!("{} {}", s(&j["id"]), s(&j["state"])));
        }
        SchedulesCommand::Jobs { id, limit, client } => {
            let api = Api::new(&client)?;
            let jobs = api
                .call(Method::GET, &at(&id, &format!("/jobs?limit={limit}")), None)
                .await?;
            api.print_list(output::items(&jobs), |items| {
                let rows = items
                    .iter()
                    .map(|j| {
                        vec![
                            s(&j["id"]),
                            s(&j["state"]),
                            format!("{}/{}", j["attempt"], j["max_attempts"]),
                            when(&j["run_at"]),
                            when(&j["finished_at"]),
                            output::cut(&s(&j["last_error"]), 60),
                        ]
                    })
                    .collect();
                output::table(
                    &["id", "state", "attempt", "run at", "finished", "last error"],
                    rows,
                );
            });
        }
        SchedulesCommand::Upcoming { id, count, client } => {
            let api = Api::new(&client)?;
            let schedule = api.call(Method::GET, &at(&id, ""), None).await?;
            let path = at(&id, &format!("/upcoming?count={}", count.min(100)));
            let ticks = api.call(Method::GET, &path, None).await?;
            api.print_list(output::items(&ticks), |ticks| {
                for tick in ticks {
                    outln!("{}", in_zone(tick, &schedule["timezone"]));
                }
            });
        }
    }
    Ok(())
}

/// The path of schedule `id`, with `rest` after it.
fn at(id: &str, rest: &str) -> String {
    format!("/schedules/{}{rest}", path_segment(id))
}
