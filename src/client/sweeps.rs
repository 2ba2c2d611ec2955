//! `longshore sweeps`: list, show, define, and run or dry-run a pass.

use std::time::{Duration, Instant};

use anyhow::bail;
use reqwest::Method;
use serde_json::Value;

use crate::cli::{SweepsCommand, WaitArgs};

use super::{Api, path_segment, print_rows, s};

pub async fn sweeps(command: SweepsCommand) -> anyhow::Result<()> {
    match command {
        SweepsCommand::List(client) => {
            let api = Api::new(&client)?;
            let list = api.call(Method::GET, "/sweeps", None).await?;
            api.print(&list, sweep_rows);
        }
        SweepsCommand::Get { name, client } => {
            let api = Api::new(&client)?;
            let one = api
                .call(
                    Method::GET,
                    &format!("/sweeps/{}", path_segment(&name)),
                    None,
                )
                .await?;
            api.print(&one, print_sweep);
        }
        SweepsCommand::DryRun { name, wait, client } => {
            pass(&Api::new(&client)?, &name, "dry-run", &wait).await?;
        }
        SweepsCommand::Run { name, wait, client } => {
            pass(&Api::new(&client)?, &name, "run", &wait).await?;
        }
    }
    Ok(())
}

/// Starts a pass (`run` or `dry-run`) and, unless told not to, waits for it and prints its
/// counts; a pass that fails for good is an error.
async fn pass(api: &Api, name: &str, what: &str, wait: &WaitArgs) -> anyhow::Result<()> {
    let segment = path_segment(name);
    let enqueued = api
        .call(Method::POST, &format!("/sweeps/{segment}/{what}"), None)
        .await?;
    let id = s(&enqueued["id"]);
    if wait.no_wait {
        api.print(&enqueued, |e| {
            let note = if e["duplicate"] == true {
                " (a pass was already waiting or running)"
            } else {
                ""
            };
            println!("{id}{note}");
        });
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from(wait.timeout);
    let job = loop {
        let job = api.call(Method::GET, &format!("/jobs/{id}"), None).await?;
        let state = job["state"].as_str().unwrap_or_default();
        if matches!(state, "completed" | "discarded" | "cancelled") {
            break job;
        }
        if Instant::now() >= deadline {
            bail!(
                "pass {id} is still {state} after {}; it goes on",
                wait.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if job["state"] != "completed" {
        bail!(
            "pass {id} ended {}: {}",
            s(&job["state"]),
            s(&job["last_error"])
        );
    }
    let result = &job["result"];
    api.print(result, |r| {
        let mut line = format!(
            "{name}: {} matched, {} acted on in {} pages",
            s(&r["matched"]),
            s(&r["acted"]),
            s(&r["pages"])
        );
        if r["dry_run"] == true {
            line.push_str(" (dry run: nothing changed)");
        }
        if let Some(by) = r["stopped_by"].as_str() {
            line.push_str(&format!(
                "; stopped by its {by} budget, the next pass goes on"
            ));
        }
        if r["refused"].as_u64().unwrap_or(0) > 0 {
            line.push_str(&format!("; {} children refused", s(&r["refused"])));
        }
        println!("{line}");
        println!("job {id}");
    });
    Ok(())
}

fn sweep_rows(value: &Value) {
    let rows = value
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|row| {
            let d = &row["definition"];
            vec![
                s(&row["name"]),
                s(&row["source"]),
                s(&d["action"]["type"]),
                s(&d["schedule"]),
                if row["paused"] == true {
                    "paused".into()
                } else {
                    s(&row["next_run_at"])
                },
                s(&row["last_run"]["state"]),
                s(&row["last_run"]["matched"]),
                s(&row["last_run"]["acted"]),
            ]
        })
        .collect();
    print_rows(
        &[
            "name", "source", "action", "schedule", "next run", "last run", "matched", "acted",
        ],
        rows,
    );
}

fn print_sweep(sweep: &Value) {
    let d = &sweep["definition"];
    for (key, value) in [
        ("name", &sweep["name"]),
        ("source", &sweep["source"]),
        ("target", &d["target"]),
        ("retention", &d["retention"]),
        ("batch", &d["batch"]),
        ("max_rows", &d["max_rows"]),
        ("max_time", &d["max_time"]),
        ("action", &d["action"]["type"]),
        ("schedule", &d["schedule"]),
        ("next_run_at", &sweep["next_run_at"]),
        ("paused", &sweep["paused"]),
    ] {
        println!("{key:<12} {}", s(value));
    }
    for (label, run) in [
        ("last run", &sweep["last_run"]),
        ("last dry run", &sweep["last_dry_run"]),
    ] {
        if run.is_object() {
            println!(
                "{label:<12} {} {} (matched {}, acted {}, pages {}{})",
                s(&run["job_id"]),
                s(&run["state"]),
                s(&run["matched"]),
                s(&run["acted"]),
                s(&run["pages"]),
                run["stopped_by"]
                    .as_str()
                    .map(|b| format!(", stopped by {b}"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(children) = sweep["children"].as_object() {
        let counts: Vec<String> = children
            .iter()
            .filter(|(_, n)| n.as_i64() != Some(0))
            .map(|(state, n)| format!("{state} {n}"))
            .collect();
        println!("{:<12} {}", "children", counts.join(", "));
    }
    println!("query:\n{}", s(&d["query"]));
}
