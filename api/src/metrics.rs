//! `GET /metrics`: the cluster's figures as Prometheus text, read from the store when
//! scraped, so every replica answers the same (save the few marked "this process").
//!
//! [`CATALOGUE`] is the one list of names: each comes with its type, its help and its labels,
//! and a label only ever holds a bounded value (a queue, a state, a stream, a window, a
//! breaker state, an outcome): never a job id, args, a user id or an error text.
//!
//! Without a token it answers only in local mode or when `api.public_metrics` is set;
//! otherwise a `read` token is needed, as for the API.

use std::fmt::Write as _;

use chrono::Utc;
use longshore_jobs::admin::Scope;
use poem::http::{StatusCode, header};
use poem::{Endpoint, Request, Response, Result};

use crate::ApiState;
use crate::auth::{Verdict, authenticate};
use crate::problem::{Problem, problem_response};

/// A metric: its name, Prometheus type, help and label names.
pub struct Metric {
    /// The name, `longshore_…`.
    pub name: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// Its labels, each with a bounded set of values.
    pub labels: &'static [&'static str],
}

macro_rules! catalogue {
    ($($ident:ident = $name:literal, $kind:literal, [$($label:literal),*], $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $ident: Metric = Metric {
                name: $name,
                kind: $kind,
                help: $help,
                labels: &[$($label),*],
            };
        )*
        /// Every metric `/metrics` serves.
        pub const CATALOGUE: &[Metric] = &[$($ident),*];
    };
}

catalogue! {
    JOBS = "longshore_jobs", "gauge", ["queue", "state"],
        "Jobs stored, by queue and state.";
    OLDEST_AVAILABLE = "longshore_queue_oldest_available_seconds", "gauge", ["queue"],
        "Age of the longest-waiting available job of a queue (its latency); 0 when none waits.";
    QUEUE_PAUSED = "longshore_queue_paused", "gauge", ["queue"],
        "1 while a queue is paused.";
    COMPLETED_LAST_MINUTE = "longshore_queue_completed_last_minute", "gauge", ["queue"],
        "Jobs of a queue completed in the last minute.";
    WORKERS = "longshore_workers", "gauge", ["queue"],
        "Live worker pools serving a queue, across every process.";
    SLOTS = "longshore_worker_slots", "gauge", ["queue"],
        "Job slots of the live pools of a queue (the sum of their concurrency).";
    SLOTS_USED = "longshore_worker_slots_used", "gauge", ["queue"],
        "Jobs of a queue running now in live pools.";
    ACTIVE_USERS = "longshore_active_users", "gauge", ["window"],
        "Distinct users seen over a trailing window (lifecycle events, pushes, activity reports).";
    SCHEDULE_TICKS = "longshore_schedule_ticks_total", "counter", ["outcome"],
        "Schedule ticks of all schedules, by outcome (fired, skipped, missed).";
    STREAM_LAG = "longshore_stream_lag", "gauge", ["stream"],
        "Entries of a stream not yet delivered to its ingesters' group (this process's ingesters).";
    STREAM_PENDING = "longshore_stream_pending", "gauge", ["stream"],
        "Entries delivered but not yet acknowledged (this process's ingesters).";
    STREAM_DEAD_LETTERED = "longshore_stream_dead_lettered_total", "counter", ["stream"],
        "Entries moved to the dead-letter stream by this process's ingesters.";
    WEBHOOK_ENDPOINTS = "longshore_webhook_endpoints", "gauge", ["breaker"],
        "Webhook endpoints by breaker state (closed, open, half_open, disabled).";
    PUSH_GATEWAYS = "longshore_push_gateways", "gauge", [],
        "Gateways reading the push stream of this process.";
}

/// Serves [`CATALOGUE`] as Prometheus text.
pub struct Metrics;

impl Endpoint for Metrics {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        let Some(state) = req.data::<ApiState>().cloned() else {
            return Ok(Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .finish());
        };
        if !state.shared.config.public_metrics {
            let header = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match authenticate(&state, header).await {
                Ok(Verdict::Allow(principal)) => {
                    if let Err(error) = principal.require(Scope::Read) {
                        return Ok(problem_response(error.problem()));
                    }
                }
                Ok(Verdict::Local) => {}
                Ok(Verdict::Deny(detail)) => {
                    return Ok(problem_response(&Problem::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        detail,
                    )));
                }
                Err(error) => return Ok(problem_response(error.problem())),
            }
        }
        match render(&state).await {
            Ok(text) => Ok(Response::builder()
                .content_type("text/plain; version=0.0.4; charset=utf-8")
                .header(header::CACHE_CONTROL, "no-store")
                .body(text)),
            Err(error) => Ok(problem_response(error.problem())),
        }
    }
}

/// One sample line: `name{labels} value`.
fn sample(out: &mut String, metric: &Metric, labels: &[&str], value: f64) {
    out.push_str(metric.name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (name, value)) in metric.labels.iter().zip(labels).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let escaped = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{name}=\"{escaped}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn head(out: &mut String, metric: &Metric) {
    let _ = writeln!(out, "# HELP {} {}", metric.name, metric.help);
    let _ = writeln!(out, "# TYPE {} {}", metric.name, metric.kind);
}

/// Reads the figures and writes them out, each metric's samples under its HELP and TYPE.
pub async fn render(state: &ApiState) -> Result<String, crate::problem::ApiError> {
    let store = state.store();
    let now = Utc::now();
    let queues = store.queues().await?;
    let workers = store.workers(now - chrono::Duration::seconds(60)).await?;
    let schedules = store.schedules().await?;
    let endpoints = store.endpoints().await?;
    let active = crate::routes::activity::active_users(state).await?;
    let ingesters = state.lifecycle.ingesters.reports().await;

    let mut out = String::new();
    head(&mut out, &JOBS);
    for q in &queues {
        for s in longshore_jobs::JobState::ALL {
            let n = q.counts.get(&s).copied().unwrap_or(0);
            sample(&mut out, &JOBS, &[&q.name, s.as_str()], n as f64);
        }
    }
    head(&mut out, &OLDEST_AVAILABLE);
    for q in &queues {
        let age = q.oldest_available_s.unwrap_or(0.0);
        sample(&mut out, &OLDEST_AVAILABLE, &[&q.name], age);
    }
    head(&mut out, &QUEUE_PAUSED);
    for q in &queues {
        sample(
            &mut out,
            &QUEUE_PAUSED,
            &[&q.name],
            f64::from(u8::from(q.paused)),
        );
    }
    head(&mut out, &COMPLETED_LAST_MINUTE);
    for q in &queues {
        let n = q.completed_last_minute as f64;
        sample(&mut out, &COMPLETED_LAST_MINUTE, &[&q.name], n);
    }
    let live: Vec<_> = workers.iter().filter(|w| w.stopped_at.is_none()).collect();
    let mut by_queue: std::collections::BTreeMap<&str, (i64, i64, i64)> = Default::default();
    for q in &queues {
        by_queue.entry(q.name.as_str()).or_default();
    }
    for w in &live {
        let entry = by_queue.entry(w.queue.as_str()).or_default();
        entry.0 += 1;
        entry.1 += i64::from(w.concurrency);
        entry.2 += w.running;
    }
    for (metric, pick) in [(&WORKERS, 0usize), (&SLOTS, 1), (&SLOTS_USED, 2)] {
        head(&mut out, metric);
        for (queue, figures) in &by_queue {
            let value = [figures.0, figures.1, figures.2][pick];
            sample(&mut out, metric, &[queue], value as f64);
        }
    }
    head(&mut out, &ACTIVE_USERS);
    for (window, n) in &active {
        sample(&mut out, &ACTIVE_USERS, &[window], *n as f64);
    }
    head(&mut out, &SCHEDULE_TICKS);
    let (fired, skipped, missed) = schedules.iter().fold((0, 0, 0), |acc, s| {
        (
            acc.0 + s.counts.fired,
            acc.1 + s.counts.skipped,
            acc.2 + s.counts.missed,
        )
    });
    for (outcome, n) in [("fired", fired), ("skipped", skipped), ("missed", missed)] {
        sample(&mut out, &SCHEDULE_TICKS, &[outcome], n as f64);
    }
    for (metric, pick) in [
        (&STREAM_LAG, 0usize),
        (&STREAM_PENDING, 1),
        (&STREAM_DEAD_LETTERED, 2),
    ] {
        head(&mut out, metric);
        for i in &ingesters {
            let value = [i.lag.unwrap_or(0), i.pending, i.dead_lettered][pick];
            sample(&mut out, metric, &[&i.stream], value as f64);
        }
    }
    head(&mut out, &WEBHOOK_ENDPOINTS);
    let mut breakers = [
        ("closed", 0u64),
        ("open", 0),
        ("half_open", 0),
        ("disabled", 0),
    ];
    for e in &endpoints {
        let state = match (e.enabled, e.breaker_until) {
            (false, _) => "disabled",
            (true, None) => "closed",
            (true, Some(until)) if until > now => "open",
            (true, Some(_)) => "half_open",
        };
        if let Some(slot) = breakers.iter_mut().find(|(name, _)| *name == state) {
            slot.1 += 1;
        }
    }
    for (breaker, n) in breakers {
        sample(&mut out, &WEBHOOK_ENDPOINTS, &[breaker], n as f64);
    }
    head(&mut out, &PUSH_GATEWAYS);
    let gateways = state.shared.gateways.count();
    sample(&mut out, &PUSH_GATEWAYS, &[], gateways as f64);
    Ok(out)
}
