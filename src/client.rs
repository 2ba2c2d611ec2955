//! The client commands: the HTTP API from the terminal. Errors are one readable line (the
//! server's problem detail and code), and `-o json` prints the API's JSON for scripts.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::{
    BulkArgs, ClientArgs, EventsCommand, JobSelector, JobsCommand, Output, QueuesCommand,
    ScheduleFields, SchedulesCommand, SweepsCommand, WaitArgs,
};

/// The API, as a client sees it.
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    pub output: Output,
}

impl Api {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Api> {
        Api::with(&args.server, args.token.clone(), args.output)
    }

    pub fn with(server: &str, token: Option<String>, output: Output) -> anyhow::Result<Api> {
        let base = server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server must be an http:// or https:// URL, got {server:?}");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Api {
            base,
            token,
            http,
            output,
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends a request and returns its JSON body (`null` for an empty one); a problem
    /// becomes an error with its detail and code.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.request(method, path).timeout(Duration::from_secs(60));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let text = response.text().await.context("reading the response")?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).context("the server's answer is not JSON");
        }
        Err(problem(status, &text))
    }

    fn unreachable(&self, error: reqwest::Error) -> anyhow::Error {
        if error.is_connect() || error.is_timeout() {
            anyhow::anyhow!(
                "cannot reach Longshore at {} (is `longshore serve` running? set --server or LONGSHORE_SERVER)",
                self.base
            )
        } else {
            anyhow::Error::new(error).context(format!("request to {} failed", self.base))
        }
    }

    pub fn print(&self, value: &Value, table: impl FnOnce(&Value)) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Table => table(value),
        }
    }
}

fn problem(status: StatusCode, text: &str) -> anyhow::Error {
    match serde_json::from_str::<Value>(text) {
        Ok(p) if p.get("detail").is_some() => {
            let detail = p["detail"].as_str().unwrap_or_default();
            let code = p["code"].as_str().unwrap_or("error");
            anyhow::anyhow!("{detail} ({code}, HTTP {})", status.as_u16())
        }
        _ => anyhow::anyhow!(
            "the server answered HTTP {}: {}",
            status.as_u16(),
            text.trim()
        ),
    }
}

/// Prints `value` as JSON, or as `table` draws it.
pub(crate) fn print(output: Output, value: &Value, table: impl FnOnce(&Value)) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Table => table(value),
    }
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_rows(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count().min(60));
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let c: String = c.chars().take(60).collect();
                format!("{c:<width$}", width = widths[i])
            })
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

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

fn encode_query(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
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

pub async fn events(command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Tail {
        after,
        queue,
        job,
        types,
        count,
        client,
    } = command;
    let api = Api::new(&client)?;
    let mut query = Vec::new();
    if let Some(q) = queue {
        query.push(("queue".to_owned(), q));
    }
    if let Some(j) = job {
        query.push(("job_id".to_owned(), j));
    }
    for t in types {
        query.push(("type".to_owned(), t));
    }
    let path = format!("/events/stream?{}", encode_query(&query));
    let mut last = after.unwrap_or(0);
    let mut seen = 0u64;
    let mut backoff = Duration::from_millis(500);
    loop {
        let request = api
            .request(Method::GET, &path)
            .header("Last-Event-ID", last.to_string());
        let response = match request.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                return Err(problem(status, &r.text().await.unwrap_or_default()));
            }
            Err(error) => {
                eprintln!(
                    "{}; reconnecting after event {last}",
                    api.unreachable(error)
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let mut data = String::new();
                let mut name = "message".to_owned();
                for line in frame.lines() {
                    if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                    if let Some(i) = line.strip_prefix("id:") {
                        last = i.trim().parse().unwrap_or(last);
                    }
                    if let Some(e) = line.strip_prefix("event:") {
                        name = e.trim().to_owned();
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                if name == "reset" {
                    eprintln!(
                        "events up to {} were deleted by retention; continuing after them",
                        s(&value["pruned_through"])
                    );
                    continue;
                }
                api.print(&value, |e| {
                    println!(
                        "{:<20} {:<22} {:<38} {:<10} {}",
                        s(&e["id"]),
                        s(&e["type"]),
                        s(&e["job_id"]),
                        s(&e["queue"]),
                        s(&e["state"])
                    )
                });
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
        }
        eprintln!("stream ended; resuming after event {last}");
    }
}

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

/// `s` as one URL path segment: unreserved characters as they are, every other byte
/// percent-encoded.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
