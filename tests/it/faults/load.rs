//! A steady enqueue load through the HTTP API, and the checks a fault test makes afterwards:
//! every acknowledged job completed, nothing refused was stored, how often jobs ran twice, and
//! how long the longest answer took.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One enqueue's answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The request's number; its job carries the tag `req-{n}`.
    pub n: usize,
    /// The HTTP status, 0 when no answer came.
    pub status: u16,
    /// When it was sent, from the start of the load.
    pub sent: Duration,
    /// How long the answer took.
    pub took: Duration,
    /// The job's id, for a 201.
    pub id: Option<String>,
}

/// Enqueues `total` jobs of kind `test.mark` at `per_second` through `POST /api/v1/jobs`, each
/// request on its own (an open loop: a slow answer does not slow the load down).
pub async fn steady(base: &str, total: usize, per_second: u32, marker: &Path) -> Vec<Answer> {
    // Idle connections are dropped before the server's 10 s idle timeout closes them, as
    // README advises: a request sent on a connection the server is closing at that moment
    // fails in transit.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let answers = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / per_second);
    let mut sent = Vec::with_capacity(total);
    for n in 0..total {
        ticker.tick().await;
        let (http, answers) = (http.clone(), Arc::clone(&answers));
        let url = format!("{base}/api/v1/jobs");
        let body = json!({
            "kind": "test.mark",
            "args": { "ms": 20, "marker": marker },
            "tags": [format!("req-{n}")],
        });
        sent.push(tokio::spawn(async move {
            let at = Instant::now();
            let response = http.post(&url).json(&body).send().await;
            let (status, id) = match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    (status, body["id"].as_str().map(str::to_owned))
                }
                Err(_) => (0, None),
            };
            answers.lock().unwrap().push(Answer {
                n,
                status,
                sent: at - started,
                took: at.elapsed(),
                id,
            });
        }));
    }
    for task in sent {
        task.await.unwrap();
    }
    let mut answers = answers.lock().unwrap().clone();
    answers.sort_by_key(|a| a.n);
    answers
}

/// What a fault test found.
#[derive(Debug, Default)]
pub struct Report {
    pub acknowledged: usize,
    pub lost: usize,
    pub refused: usize,
    pub refused_but_stored: usize,
    pub unconfirmed: usize,
    pub unconfirmed_stored: usize,
    pub unanswered: usize,
    pub other: HashMap<u16, usize>,
    pub ran_twice: usize,
    /// Jobs that started the same attempt twice: the claim was forgotten by a Postgres
    /// crash (claims commit asynchronously), so the job was available again as it was.
    pub claim_forgotten: usize,
    /// Jobs that ran twice with no attempt of theirs recorded lost and no claim forgotten
    /// (a figure to watch).
    pub reran_without_loss: usize,
    pub longest_answer: Duration,
    pub stuck_running: i64,
}

impl Report {
    pub fn print(&self, test: &str) {
        println!(
            "{test}: {} acknowledged, {} lost, {} refused (503; {} of them stored), {} unconfirmed \
             (504; {} of them stored), {} unanswered, other {:?}, {} ran more than once \
             ({} started one attempt twice, its claim forgotten; {} with neither that nor a lost \
             attempt), longest answer {:.2} s, {} left running",
            self.acknowledged,
            self.lost,
            self.refused,
            self.refused_but_stored,
            self.unconfirmed,
            self.unconfirmed_stored,
            self.unanswered,
            self.other,
            self.ran_twice,
            self.claim_forgotten,
            self.reran_without_loss,
            self.longest_answer.as_secs_f64(),
            self.stuck_running,
        );
    }
}

/// Waits until no `test.mark` job waits or runs, then checks the answers against the jobs.
pub async fn verify(url: &str, answers: &[Answer], marker: &Path, settle: Duration) -> Report {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let deadline = Instant::now() + settle;
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'test.mark' \
             AND state NOT IN ('completed', 'cancelled', 'discarded')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(String, String, Value)> =
        sqlx::query_as("SELECT id::text, state, tags FROM jobs WHERE kind = 'test.mark'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut by_tag: HashMap<String, (String, String)> = HashMap::new();
    for (id, state, tags) in rows {
        if let Some(tag) = tags
            .as_array()
            .and_then(|t| t.first())
            .and_then(Value::as_str)
        {
            by_tag.insert(tag.to_owned(), (id, state));
        }
    }
    let mut report = Report {
        stuck_running: sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'test.mark' AND state = 'running'",
        )
        .fetch_one(&pool)
        .await
        .unwrap(),
        ..Report::default()
    };
    pool.close().await;
    for answer in answers {
        report.longest_answer = report.longest_answer.max(answer.took);
        let stored = by_tag.get(&format!("req-{}", answer.n));
        match answer.status {
            201 => {
                report.acknowledged += 1;
                let completed = stored.is_some_and(|(id, state)| {
                    Some(id) == answer.id.as_ref() && state == "completed"
                });
                if !completed {
                    report.lost += 1;
                }
            }
            503 => {
                report.refused += 1;
                if stored.is_some() {
                    report.refused_but_stored += 1;
                }
            }
            504 => {
                report.unconfirmed += 1;
                if stored.is_some() {
                    report.unconfirmed_stored += 1;
                }
            }
            0 => report.unanswered += 1,
            other => *report.other.entry(other).or_default() += 1,
        }
    }
    let starts = std::fs::read_to_string(marker).unwrap_or_default();
    let mut seen = HashSet::new();
    let mut twice = HashSet::new();
    let mut attempts_seen = HashSet::new();
    let mut same_attempt = HashSet::new();
    for line in starts.lines() {
        let id = line.split_whitespace().next().unwrap_or_default();
        if !seen.insert(id) {
            twice.insert(id);
        }
        if !attempts_seen.insert(line.trim()) {
            same_attempt.insert(id);
        }
    }
    report.ran_twice = twice.len();
    report.claim_forgotten = same_attempt.len();
    // A job may run again only because an attempt of it was lost: held when the database
    // went away (running, or finished with its outcome not yet stored) and rescued after.
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    for id in twice.difference(&same_attempt) {
        let lost: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job_attempts WHERE job_id = $1::uuid AND outcome = 'lost'",
        )
        .bind(*id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if lost == 0 {
            report.reran_without_loss += 1;
        }
    }
    pool.close().await;
    report
}

/// Reads `path` every 200 ms until `stop`, returning the longest answer and the statuses seen.
pub fn probe(
    base: &str,
    path: &str,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<(Duration, HashMap<u16, usize>)> {
    let url = format!("{base}{path}");
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let (mut longest, mut statuses) = (Duration::ZERO, HashMap::new());
        while !stop.is_cancelled() {
            let at = Instant::now();
            let status = http
                .get(&url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            longest = longest.max(at.elapsed());
            *statuses.entry(status).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (longest, statuses)
    })
}
