//! A transaction held open elsewhere on the Postgres server for two minutes, under a steady
//! load. Readers of the event outbox stop below the oldest running transaction (so that an
//! event committing late is never skipped), so the event stream stalls while it is open: jobs
//! must still run at the pace they arrive, nothing may be lost, Longshore must say what holds
//! the stream back, and the stream must catch up, with no gap, once the transaction ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::Connection;

use super::cluster::Cluster;
use super::load::{steady, verify};
use crate::support::{TestDb, eventually};

const RATE: u32 = 60;
const TOTAL: usize = 150 * RATE as usize;
const HOLD_FROM: Duration = Duration::from_secs(10);
const HOLD_FOR: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_held_open_for_two_minutes_stalls_only_the_event_stream() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("long").await;
    let db = TestDb::at(&url).await;
    let config = db.path("longshore.toml");
    std::fs::write(&config, "").unwrap();
    let (serve, base) = db.serve(
        &config,
        &["--queues", "default=20", "--log", "warn,longshore_api=info"],
    );
    eventually(Duration::from_secs(20), "serve answers", || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let arrivals = follow_completions(&base).await;
    let marker = db.path("starts");
    let started = Instant::now();
    let load = {
        let (base, marker) = (base.clone(), marker.clone());
        tokio::spawn(async move { steady(&base, TOTAL, RATE, &marker).await })
    };

    tokio::time::sleep(HOLD_FROM).await;
    let mut holder = sqlx::PgConnection::connect(&format!("{url}?application_name=long-report"))
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut holder)
        .await
        .unwrap();
    let held = Utc::now();
    tokio::time::sleep(HOLD_FOR).await;
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let released = Utc::now();
    let answers = load.await.unwrap();
    let report = verify(&url, &answers, &marker, Duration::from_secs(60)).await;
    report.print("long transaction");

    // Every acknowledged job's completion reached the stream, once the transaction ended.
    let acknowledged: Vec<String> = answers.iter().filter_map(|a| a.id.clone()).collect();
    eventually(Duration::from_secs(60), "the stream catches up", || async {
        let seen = arrivals.lock().unwrap();
        acknowledged
            .iter()
            .all(|id| seen.contains_key(id))
            .then_some(())
    })
    .await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let finished: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id::text, finished_at FROM jobs WHERE kind = 'test.mark' AND state = 'completed'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let seen = arrivals.lock().unwrap().clone();
    let mut most_late = chrono::Duration::zero();
    // When the last of the events hidden by the transaction arrived.
    let mut caught_up = released;
    let mut per_window: HashMap<&str, (i64,)> = HashMap::new();
    for (id, at) in &finished {
        if let Some(arrived) = seen.get(id) {
            most_late = most_late.max(*arrived - *at);
            if *at < released {
                caught_up = caught_up.max(*arrived);
            }
        }
        let window = if *at < held {
            "before"
        } else if *at < released {
            "during"
        } else {
            "after"
        };
        per_window.entry(window).or_default().0 += 1;
    }
    let rate = |window: &str, seconds: Duration| {
        per_window.get(window).map_or(0, |w| w.0) as f64 / seconds.as_secs_f64()
    };
    let (before, during) = (rate("before", HOLD_FROM), rate("during", HOLD_FOR));
    println!(
        "long transaction: held {:.0} s; jobs completed per second before {before:.0}, while \
         held {during:.0} (arriving at {RATE}/s); completion events arrived up to {:.1} s late, \
         and the last hidden one arrived {:.1} s after it ended; the test ran {:.0} s",
        (released - held).num_milliseconds() as f64 / 1000.0,
        most_late.num_milliseconds() as f64 / 1000.0,
        (caught_up - released).num_milliseconds() as f64 / 1000.0,
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(
        report.refused, 0,
        "the database was up throughout: {report:?}"
    );
    assert_eq!(report.stuck_running, 0, "{report:?}");
    assert!(
        during >= 0.8 * f64::from(RATE),
        "jobs kept running at the pace they arrived while the transaction was open"
    );
    assert!(
        most_late > chrono::Duration::seconds(60),
        "the stream was held back (it cannot see past the open transaction)"
    );
    assert!(
        caught_up - released < chrono::Duration::seconds(10),
        "the stream caught up within 10 s of the transaction's end"
    );
    let log = serve.log_text();
    assert!(
        log.contains("held back by a long-running transaction") && log.contains("long-report"),
        "Longshore said what held the stream back:\n{log}"
    );
    assert!(log.contains("the event stream moves again"), "{log}");
}

/// Follows the event stream's `job.completed` events: when each job's arrived.
async fn follow_completions(base: &str) -> Arc<Mutex<HashMap<String, DateTime<Utc>>>> {
    let arrivals = Arc::new(Mutex::new(HashMap::new()));
    let mut response = reqwest::get(format!("{base}/api/v1/events/stream?type=job.completed"))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let seen = Arc::clone(&arrivals);
    tokio::spawn(async move {
        let mut pending = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\n\n") {
                let frame: String = pending.drain(..end + 2).collect();
                for line in frame.lines() {
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let event: serde_json::Value =
                        serde_json::from_str(data.trim()).unwrap_or_default();
                    if let Some(id) = event["job_id"].as_str() {
                        seen.lock().unwrap().insert(id.to_owned(), Utc::now());
                    }
                }
            }
        }
    });
    arrivals
}
