//! `longshore jobs`: enqueue, list, show, wait for, and act on one job or many (bulk
//! operations with a dry run, a confirmation and a progress bar).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{BulkArgs, JobSelector, JobsCommand};

use super::{Api, encode_query, print_rows, s};

fn job_rows(jobs: &[Value]) {
    let rows = jobs
        .iter()
        .map(|j| {
            vec![
                s(&j["id"]),
                s(&j["kind"]),
                s(&j["queue"]),
                s(&j["state"]),
                format!("{}/{}", j["attempt"], j["max_attempts"]),
                s(&j["created_at"]),
                s(&j["last_error"]),
            ]
        })
        .collect();
    print_rows(
        &[
            "id",
            "kind",
            "queue",
            "state",
            "attempt",
            "created",
            "last error",
        ],
        rows,
    );
}

fn print_job(job: &Value) {
    for key in [
        "id",
        "kind",
        "queue",
        "state",
        "priority",
        "attempt",
        "max_attempts",
        "run_at",
        "created_at",
        "attempted_at",
        "finished_at",
        "locked_by",
        "unique_key",
        "tags",
        "args",
        "result",
        "last_error",
    ] {
        println!("{key:<13} {}", s(&job[key]));
    }
}

fn selector_query(select: &JobSelector) -> anyhow::Result<Vec<(String, String)>> {
    let mut query = Vec::new();
    for state in &select.states {
        query.push(("state".to_owned(), state.clone()));
    }
    for (name, value) in [
        ("queue", &select.queue),
        ("kind", &select.kind),
        ("tag", &select.tag),
    ] {
        if let Some(value) = value {
            query.push((name.to_owned(), value.clone()));
        }
    }
    if let Some(since) = select.since {
        let from = chrono::Utc::now() - chrono::Duration::from_std(since.into())?;
        query.push(("created_after".to_owned(), from.to_rfc3339()));
    }
    for arg in &select.args {
        let (path, value) = arg
            .split_once('=')
            .with_context(|| format!("--arg {arg:?}: expected path=value, e.g. user.id=42"))?;
        query.push((format!("args.{path}"), value.to_owned()));
    }
    Ok(query)
}

fn terminal(state: &str) -> bool {
    matches!(state, "completed" | "cancelled" | "discarded")
}

/// Polls a job until it is finished, showing its state on a spinner.
async fn wait_for(api: &Api, id: &str, timeout: Duration) -> anyhow::Result<Value> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
    spinner.enable_steady_tick(Duration::from_millis(120));
    let deadline = Instant::now() + timeout;
    loop {
        let job = api.call(Method::GET, &format!("/jobs/{id}"), None).await?;
        let state = job["state"].as_str().unwrap_or("?").to_owned();
        spinner.set_message(format!("job {id}: {state} (attempt {})", job["attempt"]));
        if terminal(&state) {
            spinner.finish_with_message(format!("job {id}: {state}"));
            return Ok(job);
        }
        if Instant::now() > deadline {
            spinner.abandon();
            bail!(
                "job {id} is still {state} after {}",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn jobs(command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::Enqueue {
            kind,
            args,
            queue,
            priority,
            max_attempts,
            delay,
            unique,
            tags,
            wait,
            client,
        } => {
            let api = Api::new(&client)?;
            let args: Value = serde_json::from_str(&args)
                .with_context(|| format!("--args is not valid JSON: {args}"))?;
            let mut body = json!({ "kind": kind, "args": args, "tags": tags });
            if let Some(q) = queue {
                body["queue"] = json!(q);
            }
            if let Some(p) = priority {
                body["priority"] = json!(p);
            }
            if let Some(m) = max_attempts {
                body["max_attempts"] = json!(m);
            }
            if let Some(d) = delay {
                body["delay_ms"] = json!(Duration::from(d).as_millis() as u64);
            }
            if let Some(u) = unique {
                body["unique"] = json!({ "key": u });
            }
            let created = api.call(Method::POST, "/jobs", Some(body)).await?;
            let id = s(&created["id"]);
            if wait {
                let job = wait_for(&api, &id, Duration::from_secs(600)).await?;
                api.print(&job, print_job);
            } else {
                api.print(&created, |c| {
                    let note = if c["duplicate"] == json!(true) {
                        " (duplicate of an existing unique job)"
                    } else {
                        ""
                    };
                    println!("{} {}{note}", s(&c["id"]), s(&c["state"]));
                });
            }
        }
        JobsCommand::List {
            select,
            limit,
            client,
        } => {
            let api = Api::new(&client)?;
            let mut query = selector_query(&select)?;
            query.push(("limit".to_owned(), limit.min(500).to_string()));
            let page = api
                .call(
                    Method::GET,
                    &format!("/jobs?{}", encode_query(&query)),
                    None,
                )
                .await?;
            api.print(&page, |p| {
                job_rows(p["items"].as_array().map(Vec::as_slice).unwrap_or(&[]))
            });
        }
        JobsCommand::Get { id, client } => {
            let api = Api::new(&client)?;
            let job = api.call(Method::GET, &format!("/jobs/{id}"), None).await?;
            api.print(&job, print_job);
        }
        JobsCommand::Attempts { id, client } => {
            let api = Api::new(&client)?;
            let attempts = api
                .call(Method::GET, &format!("/jobs/{id}/attempts"), None)
                .await?;
            api.print(&attempts, |a| {
                let rows = a
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|a| {
                        vec![
                            s(&a["attempt"]),
                            s(&a["outcome"]),
                            s(&a["started_at"]),
                            s(&a["finished_at"]),
                            s(&a["worker"]),
                            s(&a["error"]),
                        ]
                    })
                    .collect();
                print_rows(
                    &[
                        "attempt", "outcome", "started", "finished", "worker", "error",
                    ],
                    rows,
                );
            });
        }
        JobsCommand::Retry(args) => bulk(args, "retry").await?,
        JobsCommand::Cancel(args) => bulk(args, "cancel").await?,
        JobsCommand::Delete(args) => bulk(args, "delete").await?,
        JobsCommand::Watch {
            id,
            timeout,
            client,
        } => {
            let api = Api::new(&client)?;
            let job = wait_for(&api, &id, timeout.into()).await?;
            api.print(&job, print_job);
        }
    }
    Ok(())
}

/// One job by id, or a bulk operation with a dry run, a confirmation and a progress bar.
async fn bulk(args: BulkArgs, action: &str) -> anyhow::Result<()> {
    let api = Api::new(&args.client)?;
    if let Some(id) = &args.id {
        let (method, path) = match action {
            "delete" => (Method::DELETE, format!("/jobs/{id}")),
            _ => (Method::POST, format!("/jobs/{id}/{action}")),
        };
        let job = api.call(method, &path, None).await?;
        if job.is_null() {
            println!("{id} deleted");
        } else {
            api.print(&job, |j| println!("{} {}", s(&j["id"]), s(&j["state"])));
        }
        return Ok(());
    }
    let select = &args.select;
    let Some(since) = select.since else {
        bail!("give a job id, or a selector with --since (e.g. --state discarded --since 24h)");
    };
    let now = chrono::Utc::now();
    let mut filter = json!({
        "states": select.states,
        "created_after": (now - chrono::Duration::from_std(since.into())?).to_rfc3339(),
        "created_before": (now + chrono::Duration::seconds(1)).to_rfc3339(),
    });
    for (name, value) in [
        ("queue", &select.queue),
        ("kind", &select.kind),
        ("tag", &select.tag),
    ] {
        if let Some(value) = value {
            filter[name] = json!(value);
        }
    }
    let mut arg_map = serde_json::Map::new();
    for arg in &select.args {
        let (path, value) = arg
            .split_once('=')
            .with_context(|| format!("--arg {arg:?}: expected path=value"))?;
        arg_map.insert(path.to_owned(), json!(value));
    }
    filter["args"] = Value::Object(arg_map);
    let dry = api
        .call(
            Method::POST,
            "/operations",
            Some(json!({ "action": action, "filter": filter, "dry_run": true })),
        )
        .await?;
    let matched = dry["matched"].as_i64().unwrap_or(0);
    if args.dry_run {
        api.print(&dry, |_| {
            println!("{action} would touch {matched} jobs (dry run; nothing changed)")
        });
        return Ok(());
    }
    if matched == 0 {
        println!("no jobs match; nothing to {action}");
        return Ok(());
    }
    if !args.yes {
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            bail!("{action} would touch {matched} jobs; pass --yes to go ahead without a terminal");
        }
        print!("{action} {matched} jobs? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("nothing changed");
            return Ok(());
        }
    }
    let op = api
        .call(
            Method::POST,
            "/operations",
            Some(json!({ "action": action, "filter": filter })),
        )
        .await?;
    let id = s(&op["id"]);
    let bar = ProgressBar::new(op["total"].as_u64().unwrap_or(0));
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")?);
    let op = loop {
        let op = api
            .call(Method::GET, &format!("/operations/{id}"), None)
            .await?;
        bar.set_length(op["total"].as_u64().unwrap_or(0).max(1));
        bar.set_position(
            (op["done"].as_u64().unwrap_or(0) + op["skipped"].as_u64().unwrap_or(0))
                .min(bar.length().unwrap_or(0)),
        );
        if op["state"] != json!("running") {
            break op;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    api.print(&op, |o| {
        println!(
            "operation {} {}: {} done, {} skipped of {}{}",
            s(&o["id"]),
            s(&o["state"]),
            o["done"],
            o["skipped"],
            o["total"],
            o["error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )
    });
    if op["state"] == json!("failed") {
        bail!("the operation failed: {}", s(&op["error"]));
    }
    Ok(())
}
