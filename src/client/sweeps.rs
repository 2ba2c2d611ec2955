//! `longshore sweeps`: list, show, define, and run or dry-run a pass.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::cli::{SweepsCommand, WaitArgs};
use crate::exit::{Exit, fail};

use super::output::{self, outln, s, when};
use super::{Api, path_segment};

pub async fn sweeps(command: SweepsCommand) -> anyhow::Result<()> {
    match command {
        SweepsCommand::List(client) => {
            let api = Api::new(&client)?;
            let list = api.call(Method::GET, "/sweeps", None).await?;
            api.print_list(output::items(&list), sweep_rows);
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
        SweepsCommand::Run {
            name,
            yes,
            wait,
            client,
        } => {
            let api = Api::new(&client)?;
            if !yes && !statement_confirmed(&api, &name, &wait).await? {
                outln!("nothing changed");
                return Ok(());
            }
            pass(&api, &name, "run", &wait).await?;
        }
    }
    Ok(())
}

/// A statement sweep changes another application's rows: before its pass, a dry run
/// counts them and the operator is asked, as `jobs retry` asks (`--yes` for scripts). A
/// fan-out sweep only enqueues jobs, and goes ahead.
async fn statement_confirmed(api: &Api, name: &str, wait: &WaitArgs) -> anyhow::Result<bool> {
    let sweep = api
        .call(
            Method::GET,
            &format!("/sweeps/{}", path_segment(name)),
            None,
        )
        .await?;
    let definition = &sweep["definition"];
    if definition["action"]["type"] != "statement" {
        return Ok(true);
    }
    let counted = wait_for_pass(api, name, "dry-run", wait).await?;
    let matched = s(&counted["result"]["matched"]);
    let target = s(&definition["target"]);
    super::jobs::confirm(
        &format!(
            "sweep {name} runs its statement on {matched} rows of target {target} (a dry run \
             counted them just now): go ahead?"
        ),
        &format!("sweep {name} would run its statement on {matched} rows of target {target}"),
    )
}

/// Starts a pass (`run` or `dry-run`) and, unless told not to, waits for it and prints its
/// counts; a pass that fails for good is an error.
async fn pass(api: &Api, name: &str, what: &str, wait: &WaitArgs) -> anyhow::Result<()> {
    let job = wait_for_pass(api, name, what, wait).await?;
    if wait.no_wait {
        return Ok(());
    }
    let id = s(&job["id"]);
    api.print(&job["result"], |r| {
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
        outln!("{line}");
        outln!("job {id}");
    });
    Ok(())
}

/// Enqueues a pass and waits for its job (with `--no-wait`, prints its id and returns the
/// answer); a pass that does not complete is an error.
async fn wait_for_pass(
    api: &Api,
    name: &str,
    what: &str,
    wait: &WaitArgs,
) -> anyhow::Result<Value> {
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
            outln!("{id}{note}");
        });
        return Ok(enqueued);
    }
    let deadline = Instant::now() + Duration::from(wait.timeout);
    let job = loop {
        let job = api.call(Method::GET, &format!("/jobs/{id}"), None).await?;
        let state = job["state"].as_str().unwrap_or_default();
        if matches!(state, "completed" | "discarded" | "cancelled") {
            break job;
        }
        if Instant::now() >= deadline {
            return Err(fail(
                Exit::TimedOut,
                format!(
                    "pass {id} is still {state} after {}; it goes on",
                    wait.timeout
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let exit = match job["state"].as_str() {
        Some("completed") => return Ok(job),
        Some("cancelled") => Exit::Cancelled,
        _ => Exit::Discarded,
    };
    Err(fail(
        exit,
        format!(
            "pass {id} ended {}: {}",
            s(&job["state"]),
            s(&job["last_error"])
        ),
    ))
}

fn sweep_rows(list: &[Value]) {
    let rows = list
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
                    when(&row["next_run_at"])
                },
                s(&row["last_run"]["state"]),
                s(&row["last_run"]["matched"]),
                s(&row["last_run"]["acted"]),
            ]
        })
        .collect();
    output::table(
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
        outln!("{key:<12} {}", s(value));
    }
    for (label, run) in [
        ("last run", &sweep["last_run"]),
        ("last dry run", &sweep["last_dry_run"]),
    ] {
        if run.is_object() {
            outln!(
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
        outln!("{:<12} {}", "children", counts.join(", "));
    }
    outln!("query:\n{}", s(&d["query"]));
}
