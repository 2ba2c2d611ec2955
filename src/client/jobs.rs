//! `longshore jobs`: enqueue, list, show, wait for, edit, and act on one job or many (bulk
//! operations with a dry run, a confirmation and a progress bar).

use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::{BulkArgs, JobRef, JobSelector, JobsCommand};
use crate::exit::{Exit, fail};

use super::output::{self, cut, outln, s, when};
use super::{Api, encode_query, json_arg, time_arg};

fn job_rows(jobs: &[Value], header: bool) {
    let rows = jobs
        .iter()
        .map(|j| {
            vec![
                s(&j["id"]),
                s(&j["kind"]),
                s(&j["queue"]),
                s(&j["state"]),
                format!("{}/{}", j["attempt"], j["max_attempts"]),
                when(&j["created_at"]),
                cut(&s(&j["last_error"]), 60),
            ]
        })
        .collect();
    output::draw(
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
        header,
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
        let value = if key.ends_with("_at") {
            when(&job[key])
        } else {
            s(&job[key])
        };
        outln!("{key:<13} {value}");
    }
}

fn selector_query(select: &JobSelector) -> anyhow::Result<Vec<(String, String)>> {
    let mut query = Vec::new();
    for state in &select.states {
        query.push(("state".to_owned(), state.as_str().to_owned()));
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
    for (path, value) in arg_pairs(select)? {
        query.push((format!("args.{path}"), value));
    }
    Ok(query)
}

fn arg_pairs(select: &JobSelector) -> anyhow::Result<Vec<(String, String)>> {
    select
        .args
        .iter()
        .map(|arg| {
            arg.split_once('=')
                .map(|(p, v)| (p.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    fail(
                        Exit::Usage,
                        format!("--arg {arg:?}: expected path=value, e.g. user.id=42"),
                    )
                })
        })
        .collect()
}

/// The id of the job `id` names: a whole id as it is, or the one job whose id starts with
/// the prefix (4 hex digits at least), as git resolves a commit.
pub async fn resolve(api: &Api, id: &str) -> anyhow::Result<String> {
    if uuid::Uuid::parse_str(id).is_ok() {
        return Ok(id.to_owned());
    }
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() < 4 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(fail(
            Exit::Usage,
            format!("{id:?} is not a job id, nor a prefix of one (4 or more hex digits)"),
        ));
    }
    let query = encode_query(&[
        ("id_prefix".to_owned(), id.to_lowercase()),
        ("limit".to_owned(), "2".to_owned()),
    ]);
    let page = api
        .call(Method::GET, &format!("/jobs?{query}"), None)
        .await?;
    match output::items(&page) {
        [one] => Ok(s(&one["id"])),
        [] => Err(fail(Exit::NotFound, format!("no job id starts with {id}"))),
        [a, b, ..] => Err(fail(
            Exit::Conflict,
            format!(
                "{id} is ambiguous: {} and {} (at least) start with it; give more of the id",
                s(&a["id"]),
                s(&b["id"])
            ),
        )),
    }
}

fn terminal(state: &str) -> bool {
    matches!(state, "completed" | "cancelled" | "discarded")
}

/// Polls a job until it is finished, showing its state on a spinner; a job that ends other
/// than completed, or outlasts `timeout`, is an error with its own exit code.
async fn wait_for(api: &Api, id: &str, timeout: Duration) -> anyhow::Result<Value> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
    spinner.enable_steady_tick(Duration::from_millis(120));
    let deadline = Instant::now() + timeout;
    let job = loop {
        let job = api.call(Method::GET, &format!("/jobs/{id}"), None).await?;
        let state = job["state"].as_str().unwrap_or("?").to_owned();
        spinner.set_message(format!("job {id}: {state} (attempt {})", job["attempt"]));
        if terminal(&state) {
            spinner.finish_and_clear();
            break job;
        }
        if Instant::now() > deadline {
            spinner.finish_and_clear();
            return Err(fail(
                Exit::TimedOut,
                format!(
                    "job {id} is still {state} after {}; it goes on",
                    humantime::format_duration(timeout)
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    api.print(&job, print_job);
    let ended = |exit, how: &str| {
        let mut message = format!("job {id} ended {how}");
        if let Some(error) = job["last_error"].as_str() {
            message.push_str(&format!(": {}", cut(error, 200)));
        }
        Err(fail(exit, message))
    };
    match job["state"].as_str() {
        Some("discarded") => ended(Exit::Discarded, "discarded"),
        Some("cancelled") => ended(Exit::Cancelled, "cancelled"),
        _ => Ok(job),
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
            at,
            unique,
            tags,
            idempotency_key,
            wait,
            client,
        } => {
            let api = Api::new(&client)?;
            let args = json_arg("--args", &args)?;
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
            if let Some(at) = at {
                body["run_at"] = json!(time_arg("--at", &at)?);
            }
            if let Some(u) = unique {
                body["unique"] = json!({ "key": u });
            }
            let mut request = api.request(Method::POST, "/jobs");
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            let created = api.send(request, Some(body)).await?;
            let id = s(&created["id"]);
            if wait.wait {
                wait_for(&api, &id, wait.timeout.into()).await?;
            } else {
                api.print(&created, |c| {
                    let note = if c["duplicate"] == json!(true) {
                        " (duplicate of an existing unique job)"
                    } else {
                        ""
                    };
                    outln!("{} {}{note}", s(&c["id"]), s(&c["state"]));
                });
            }
        }
        JobsCommand::List {
            select,
            unique_key,
            page,
            client,
        } => {
            let api = Api::new(&client)?;
            let mut query = selector_query(&select)?;
            if let Some(key) = unique_key {
                query.push(("unique_key".to_owned(), key));
            }
            let path = format!("/jobs?{}", encode_query(&query));
            api.pages(&path, &page, job_rows).await?;
        }
        JobsCommand::Get(JobRef { id, client }) => {
            let api = Api::new(&client)?;
            let id = resolve(&api, &id).await?;
            let job = api.call(Method::GET, &format!("/jobs/{id}"), None).await?;
            api.print(&job, print_job);
        }
        JobsCommand::Attempts(JobRef { id, client }) => {
            let api = Api::new(&client)?;
            let id = resolve(&api, &id).await?;
            let attempts = api
                .call(Method::GET, &format!("/jobs/{id}/attempts"), None)
                .await?;
            api.print_list(output::items(&attempts), |items| {
                let rows = items
                    .iter()
                    .map(|a| {
                        vec![
                            s(&a["attempt"]),
                            s(&a["outcome"]),
                            when(&a["started_at"]),
                            when(&a["finished_at"]),
                            s(&a["worker"]),
                            cut(&s(&a["error"]), 80),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "attempt", "outcome", "started", "finished", "worker", "error",
                    ],
                    rows,
                );
            });
        }
        JobsCommand::Events(JobRef { id, client }) => {
            let api = Api::new(&client)?;
            let id = resolve(&api, &id).await?;
            let events = api
                .call(Method::GET, &format!("/jobs/{id}/events"), None)
                .await?;
            api.print_list(output::items(&events), super::events::event_rows);
        }
        JobsCommand::Run(JobRef { id, client }) => {
            let api = Api::new(&client)?;
            let id = resolve(&api, &id).await?;
            let job = api
                .call(Method::POST, &format!("/jobs/{id}/run"), None)
                .await?;
            api.print(&job, |j| outln!("{} {}", s(&j["id"]), s(&j["state"])));
        }
        JobsCommand::Edit {
            job,
            priority,
            at,
            max_attempts,
            tags,
            args,
        } => {
            let api = Api::new(&job.client)?;
            let mut body = serde_json::Map::new();
            if let Some(p) = priority {
                body.insert("priority".into(), json!(p));
            }
            if let Some(at) = at {
                body.insert("run_at".into(), json!(time_arg("--at", &at)?));
            }
            if let Some(m) = max_attempts {
                body.insert("max_attempts".into(), json!(m));
            }
            if !tags.is_empty() {
                body.insert("tags".into(), json!(tags));
            }
            if let Some(args) = args {
                body.insert("args".into(), json_arg("--args", &args)?);
            }
            if body.is_empty() {
                return Err(fail(
                    Exit::Usage,
                    "nothing to change: give --priority, --at, --max-attempts, --tag or --args",
                ));
            }
            let id = resolve(&api, &job.id).await?;
            let edited = api
                .call(Method::PATCH, &format!("/jobs/{id}"), Some(body.into()))
                .await?;
            api.print(&edited, print_job);
        }
        JobsCommand::Retry(args) => bulk(args, "retry").await?,
        JobsCommand::Cancel(args) => bulk(args, "cancel").await?,
        JobsCommand::Delete(args) => bulk(args, "delete").await?,
        JobsCommand::Watch { job, timeout } => {
            let api = Api::new(&job.client)?;
            let id = resolve(&api, &job.id).await?;
            wait_for(&api, &id, timeout.into()).await?;
        }
    }
    Ok(())
}

/// Asks `question` on the terminal; without one, refuses and says how to go ahead.
pub fn confirm(question: &str, refusal: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(fail(
            Exit::Usage,
            format!("{refusal}; pass --yes to go ahead without a terminal"),
        ));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `1 job`, `3 jobs`.
fn count(n: i64) -> String {
    if n == 1 {
        "1 job".to_owned()
    } else {
        format!("{n} jobs")
    }
}

/// One job by id, or a bulk operation with a dry run, a confirmation and a progress bar.
async fn bulk(args: BulkArgs, action: &str) -> anyhow::Result<()> {
    let api = Api::new(&args.client)?;
    if let Some(id) = &args.id {
        let id = resolve(&api, id).await?;
        let (method, path) = match action {
            "delete" => (Method::DELETE, format!("/jobs/{id}")),
            _ => (Method::POST, format!("/jobs/{id}/{action}")),
        };
        let job = api.call(method, &path, None).await?;
        let job = if job.is_null() {
            json!({ "id": id, "deleted": true })
        } else {
            job
        };
        api.print(&job, |j| {
            if j["deleted"] == json!(true) {
                outln!("{id} deleted");
            } else {
                outln!("{} {}", s(&j["id"]), s(&j["state"]));
            }
        });
        return Ok(());
    }
    let select = &args.select;
    let Some(since) = select.since else {
        return Err(fail(
            Exit::Usage,
            "give a job id, or a selector with --since (e.g. --state discarded --since 24h)",
        ));
    };
    let now = chrono::Utc::now();
    let states: Vec<&str> = select.states.iter().map(|s| s.as_str()).collect();
    let mut filter = json!({
        "states": states,
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
    let arg_map: serde_json::Map<String, Value> = arg_pairs(select)?
        .into_iter()
        .map(|(path, value)| (path, json!(value)))
        .collect();
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
            outln!(
                "{action} would touch {} (dry run; nothing changed)",
                count(matched)
            )
        });
        return Ok(());
    }
    if matched == 0 {
        api.print(&dry, |_| outln!("no jobs match; nothing to {action}"));
        return Ok(());
    }
    if !args.yes
        && !confirm(
            &format!("{action} {}?", count(matched)),
            &format!("{action} would touch {}", count(matched)),
        )?
    {
        outln!("nothing changed");
        return Ok(());
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
    api.print(&op, super::operations::print_operation);
    if op["state"] == json!("failed") {
        return Err(anyhow::anyhow!("the operation failed: {}", s(&op["error"])))
            .context(format!("operation {id}"));
    }
    Ok(())
}
