//! `longshore-bench`: the workloads of BENCHMARKS.md (W1 bulk drain, W2 steady latency, W3
//! single enqueue, W3-http, W4 drain with history, W5 cron, W6 idle cost, asked for by name
//! as it needs `pg_stat_statements`, M1 memory) and of pushes (P1 batch intake, P2
//! push-to-gateway latency, P3 webhook deliveries; `push.rs`) and of lifecycle events (L1
//! stream ingestion; `lifecycle.rs`) on Postgres and SQLite. Prints one JSON line per run and
//! a Markdown table of medians.
//!
//! ```sh
//! cargo run --release --bin longshore-bench -- --runs 3
//! ```

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use longshore_jobs::{
    Client, EnqueueRequest, JobContext, JobId, JobResult, JobState, Kind, KindOptions, Registry,
    Store, StoreConfig,
};
use longshore_workers::{Pool, PoolConfig, Prefetch, QueueConfig};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod lifecycle;
mod push;

#[derive(Debug, Parser)]
#[command(about = "Runs the BENCHMARKS.md workloads against Longshore")]
struct Args {
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    backends: Vec<String>,
    /// Workloads to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "w1,w2,w3,w3-http,w4,w5,m1,p1,p2,p3,l1"
    )]
    workloads: Vec<String>,
    /// Runs of each workload; the table shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The Postgres server; each run gets a fresh schema in it.
    #[arg(
        long,
        env = "LONGSHORE_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/longshore_bench"
    )]
    pg_url: String,
    /// Jobs in W1 and M1.
    #[arg(long, default_value_t = 20_000)]
    drain_jobs: u64,
    /// Finished jobs already in the table in W4 (ten times as many in W4b, Postgres only,
    /// asked for by name).
    #[arg(long, default_value_t = 1_000_000)]
    history_jobs: u64,
    /// The Redis server L1 reads a stream of its own from.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Seconds W5's schedule runs.
    #[arg(long, default_value_t = 60)]
    w5_seconds: u64,
    /// Seconds W6 watches the idle worker (after a warm-up of 10 s).
    #[arg(long, default_value_t = 60)]
    w6_seconds: u64,
    /// Trace and record metrics as `longshore serve` does with `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// set (which this then needs): spans exported in batches, metrics every
    /// `OTEL_METRIC_EXPORT_INTERVAL`. Off, nothing subscribes to spans.
    #[arg(long)]
    telemetry: bool,
    /// Jobs each worker claims ahead of its free slots (`pool.queues.*.prefetch`), to see
    /// what a setting changes. Defaults to the pool's default.
    #[arg(long)]
    prefetch: Option<u32>,
    /// SQL run on each fresh database after its migrations and before the workload (an
    /// index tried, a setting changed), to measure a schema change without a rebuild.
    #[arg(long)]
    setup_sql: Option<String>,
}

/// The experiment knobs of [`Args`], read where the workloads connect and build pools.
static KNOBS: std::sync::OnceLock<(Option<u32>, Option<String>)> = std::sync::OnceLock::new();

/// The no-op handler of the benchmarks: counts its runs and records when each started.
#[derive(Clone, Default)]
struct Counter {
    runs: Arc<AtomicU64>,
    starts: Arc<Mutex<HashMap<JobId, Instant>>>,
    record_starts: bool,
    target: Arc<AtomicU64>,
    done: Arc<Notify>,
}

impl Kind for Counter {
    const NAME: &'static str = "noop";
    type Args = Value;

    fn options(&self) -> KindOptions {
        KindOptions {
            queue: "bench".into(),
            ..KindOptions::default()
        }
    }

    async fn run(&self, job: JobContext, _args: Value) -> JobResult {
        if self.record_starts {
            self.starts.lock().unwrap().insert(job.id, Instant::now());
        }
        if self.runs.fetch_add(1, Ordering::SeqCst) + 1 == self.target.load(Ordering::SeqCst) {
            self.done.notify_one();
        }
        Ok(Value::Null)
    }
}

struct Database {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn fresh_database(backend: &str, pg_url: &str) -> anyhow::Result<Database> {
    if backend == "sqlite" {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite:{}", dir.path().join("bench.db").display());
        return Ok(Database {
            url,
            _dir: Some(dir),
        });
    }
    let (server, name) = pg_url
        .rsplit_once('/')
        .context("a database name in --pg-url")?;
    let admin = sqlx::PgPool::connect(&format!("{server}/postgres")).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&admin)
            .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await?;
    }
    let pool = sqlx::PgPool::connect(pg_url).await?;
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await?;
    Ok(Database {
        url: format!("{pg_url}?options=-c%20search_path%3D{schema}"),
        _dir: None,
    })
}

async fn connect(url: &str) -> anyhow::Result<Store> {
    let store = Store::connect(&StoreConfig {
        url: url.to_owned(),
        ..StoreConfig::default()
    })
    .await?;
    if let Some(Some(sql)) = KNOBS.get().map(|k| &k.1) {
        match url.starts_with("sqlite:") {
            true => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&sqlx::SqlitePool::connect(url).await?)
                .await
                .map(drop)?,
            false => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&sqlx::PgPool::connect(url).await?)
                .await
                .map(drop)?,
        }
    }
    Ok(store)
}

fn pool_config(concurrency: u32) -> PoolConfig {
    PoolConfig {
        queues: [(
            "bench".to_owned(),
            QueueConfig {
                concurrency,
                prefetch: KNOBS
                    .get()
                    .and_then(|k| k.0)
                    .map_or(QueueConfig::default().prefetch, Prefetch::Fixed),
            },
        )]
        .into(),
        ..PoolConfig::default()
    }
}

fn noop_requests(n: u64) -> Vec<EnqueueRequest> {
    (0..n)
        .map(|_| EnqueueRequest {
            queue: Some("bench".into()),
            ..EnqueueRequest::new("noop", json!({}))
        })
        .collect()
}

async fn wait_all_completed(store: &Store, n: u64) -> anyhow::Result<()> {
    wait_settled(store).await?;
    let counts = store.count_by_state(Some("bench")).await?;
    let completed = counts.get(&JobState::Completed).copied().unwrap_or(0) as u64;
    if completed != n || counts.len() != 1 {
        bail!("expected {n} completed jobs, found {counts:?}");
    }
    Ok(())
}

/// Waits until no job of the queue waits or runs: every completion is stored. (It counts
/// only unfinished jobs, so a table full of history does not slow the wait itself.)
async fn wait_settled(store: &Store) -> anyhow::Result<()> {
    let unfinished = longshore_jobs::admin::JobFilter {
        queue: Some("bench".to_owned()),
        states: JobState::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect(),
        ..Default::default()
    };
    while store.count_jobs(&unfinished).await? > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// W1: enqueue N jobs with the batch API, then time a pool of concurrency 16 draining them.
async fn w1(db: &Database, jobs: u64) -> anyhow::Result<Value> {
    drain(db, jobs, 0).await
}

/// W4: W1 on a table that already holds `history` finished jobs of the same queue, as a
/// table does between retention passes.
async fn w4(db: &Database, jobs: u64, history: u64) -> anyhow::Result<Value> {
    connect(&db.url).await?; // creates the schema
    let started = Instant::now();
    seed_history(&db.url, history).await?;
    let seed_s = started.elapsed().as_secs_f64();
    let mut figures = drain(db, jobs, history).await?;
    figures["history"] = json!(history);
    figures["seed_s"] = json!(seed_s);
    Ok(figures)
}

/// Inserts `n` completed jobs of queue `bench`, finished over the last hour, straight into
/// the table (no events or attempts: only the jobs table's size matters here). Their ids
/// are UUIDv7 made before the run's jobs, as real history's are.
async fn seed_history(url: &str, n: u64) -> anyhow::Result<()> {
    const CHUNK: u64 = 20_000;
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::now_v7()).collect();
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let at = (chrono::Utc::now() - chrono::Duration::hours(1)).timestamp_micros();
        for chunk in ids.chunks(CHUNK as usize) {
            let hex: Vec<String> = chunk.iter().map(|id| id.simple().to_string()).collect();
            sqlx::query(
                "INSERT INTO jobs (id, queue, kind, args, state, attempt, max_attempts, run_at, \
                                   created_at, attempted_at, finished_at) \
                 SELECT unhex(value), 'bench', 'noop', '{}', 'completed', 1, 20, ?2, ?2, ?2, ?2 \
                 FROM json_each(?1)",
            )
            .bind(serde_json::to_string(&hex)?)
            .bind(at)
            .execute(&pool)
            .await?;
        }
        sqlx::query("ANALYZE").execute(&pool).await?;
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        for chunk in ids.chunks(CHUNK as usize) {
            sqlx::query(
                "INSERT INTO jobs (id, queue, kind, args, state, attempt, max_attempts, run_at, \
                                   created_at, attempted_at, finished_at) \
                 SELECT id, 'bench', 'noop', '{}', 'completed', 1, 20, t, t, t, t \
                 FROM unnest($1::uuid[]) AS u(id), (SELECT now() - interval '1 hour') x(t)",
            )
            .bind(chunk)
            .execute(&pool)
            .await?;
        }
        sqlx::query("VACUUM ANALYZE jobs").execute(&pool).await?;
    }
    Ok(())
}

/// Enqueues `jobs` jobs with the batch API, then times a pool of concurrency 16 draining
/// them; `history` finished jobs of the queue are already there.
async fn drain(db: &Database, jobs: u64, history: u64) -> anyhow::Result<Value> {
    let store = connect(&db.url).await?;
    let counter = Counter::default();
    counter.target.store(jobs, Ordering::SeqCst);
    let mut registry = Registry::new();
    registry.register(counter.clone());
    let registry = Arc::new(registry);
    let client = Client::new(store.clone(), Arc::clone(&registry));
    let started = Instant::now();
    for chunk in noop_requests(jobs).chunks(1000) {
        for result in client.enqueue_many(chunk.to_vec()).await? {
            result?;
        }
    }
    let enqueue_s = started.elapsed().as_secs_f64();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let pool =
        tokio::spawn(Pool::new(pool_config(16), store.clone(), registry).run(shutdown.clone()));
    counter.done.notified().await;
    wait_settled(&store).await?;
    let drain_s = started.elapsed().as_secs_f64();
    wait_all_completed(&store, history + jobs).await?;
    shutdown.cancel();
    pool.await??;
    let runs = counter.runs.load(Ordering::SeqCst);
    if runs != jobs {
        bail!("handler ran {runs} times for {jobs} jobs");
    }
    Ok(json!({ "drain_jobs_per_s": jobs as f64 / drain_s, "enqueue_s": enqueue_s, "jobs": jobs }))
}

/// W2: idle workers; 2,000 jobs enqueued one at a time at 200/s. On Postgres the producer
/// is another store (another process's connections), so the wake-up crosses by NOTIFY; on
/// SQLite, the embedded single-process setup, it is the same store.
async fn w2(db: &Database, backend: &str) -> anyhow::Result<Value> {
    const JOBS: u64 = 2000;
    let store = connect(&db.url).await?;
    let counter = Counter {
        record_starts: true,
        ..Counter::default()
    };
    counter.target.store(JOBS, Ordering::SeqCst);
    let mut registry = Registry::new();
    registry.register(counter.clone());
    let registry = Arc::new(registry);
    let shutdown = CancellationToken::new();
    let pool = tokio::spawn(
        Pool::new(pool_config(16), store.clone(), Arc::clone(&registry)).run(shutdown.clone()),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The host's own scheduling stalls bound what a p99 can show: measure them alongside.
    let stall = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (stall, watching) = (Arc::clone(&stall), Arc::clone(&watching));
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                let before = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                let late = before.elapsed().as_micros() as u64;
                stall.fetch_max(late.saturating_sub(1000), Ordering::Relaxed);
            }
        })
    };
    let producer = match backend {
        "sqlite" => Client::new(store.clone(), registry),
        _ => Client::new(connect(&db.url).await?, registry),
    };
    let mut sent = HashMap::with_capacity(JOBS as usize);
    let mut commits = Vec::with_capacity(JOBS as usize);
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for request in noop_requests(JOBS) {
        ticker.tick().await;
        let at = Instant::now();
        let id = producer.enqueue(request).await?.id;
        commits.push(at.elapsed().as_secs_f64() * 1000.0);
        sent.insert(id, at);
    }
    tokio::time::timeout(Duration::from_secs(30), counter.done.notified())
        .await
        .context("W2 jobs did not all run")?;
    wait_all_completed(&store, JOBS).await?;
    shutdown.cancel();
    pool.await??;
    let starts = counter.starts.lock().unwrap();
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.join();
    let mut latencies: Vec<f64> = sent
        .iter()
        .map(|(id, at)| starts[id].saturating_duration_since(*at).as_secs_f64() * 1000.0)
        .collect();
    let pct = |values: &mut Vec<f64>, p: f64| {
        values.sort_by(f64::total_cmp);
        values[((values.len() as f64 * p) as usize).min(values.len() - 1)]
    };
    Ok(json!({
        "p50_ms": pct(&mut latencies, 0.50),
        "p95_ms": pct(&mut latencies, 0.95),
        "p99_ms": pct(&mut latencies, 0.99),
        "enqueue_p50_ms": pct(&mut commits, 0.50),
        "enqueue_p99_ms": pct(&mut commits, 0.99),
        "host_stall_max_ms": stall.load(Ordering::Relaxed) as f64 / 1000.0,
    }))
}

/// W3: 10,000 single enqueues from 16 concurrent producers, no workers.
async fn w3(db: &Database) -> anyhow::Result<Value> {
    const JOBS: u64 = 10_000;
    const PRODUCERS: u64 = 16;
    let store = connect(&db.url).await?;
    let mut registry = Registry::new();
    registry.register(Counter::default());
    let client = Client::new(store.clone(), Arc::new(registry));
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for request in noop_requests(JOBS / PRODUCERS) {
                    client.enqueue(request).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for producer in producers {
        producer.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counts = store.count_by_state(Some("bench")).await?;
    if counts.get(&JobState::Available).copied() != Some(JOBS as i64) {
        bail!("expected {JOBS} available jobs, found {counts:?}");
    }
    Ok(json!({ "jobs_per_s": JOBS as f64 / elapsed }))
}

/// Starts `longshore <role>` from beside this binary on `db`, listening on a free port.
fn spawn_longshore(
    db: &Database,
    role: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(Child, u16)> {
    let binary = std::env::current_exe()?.with_file_name("longshore");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(&binary)
        .arg(role)
        .args(["--listen", &listen])
        .args(extra)
        .env("DATABASE_URL", &db.url)
        .env("LONGSHORE_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it first: cargo build --release)",
                binary.display()
            )
        })?;
    Ok((child, port))
}

/// W3-http: W3 through `POST /api/v1/jobs` of a `longshore api` process, 16 connections.
async fn w3_http(db: &Database) -> anyhow::Result<Value> {
    const JOBS: usize = 10_000;
    const CONNECTIONS: usize = 16;
    let api = push::Running::start(db, "api", &[]).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    {
        let url = format!("{}/api/v1/jobs", api.base);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (http, url) = (http.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(JOBS / CONNECTIONS);
                for _ in 0..JOBS / CONNECTIONS {
                    let at = Instant::now();
                    let response = http
                        .post(&url)
                        .json(&json!({"kind": "noop", "queue": "bench"}))
                        .send()
                        .await?;
                    anyhow::ensure!(
                        response.status() == 201,
                        "enqueue answered {}",
                        response.status()
                    );
                    latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::with_capacity(JOBS);
        for task in tasks {
            latencies.extend(task.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let p99 = latencies[(latencies.len() as f64 * 0.99) as usize];
        Ok(json!({ "jobs_per_s": latencies.len() as f64 / elapsed, "p99_ms": p99 }))
    }
}

/// W5: a one-second schedule for `seconds` with three `longshore worker` processes on
/// Postgres: ticks fired, duplicates, gaps, and the insert delay after each tick.
async fn w5(db: &Database, seconds: u64) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("w5.toml");
    std::fs::write(
        &config,
        "[pool.queues.w5]\nconcurrency = 4\n\n[[schedules]]\nid = \"w5\"\ncron = \"* * * * * *\"\njob = { kind = \"noop\", queue = \"w5\" }\n",
    )?;
    let config = config.to_string_lossy().into_owned();
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(spawn_longshore(db, "worker", &["--config", &config], &[])?.0);
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    for child in &mut children {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    for mut child in children {
        let _ = child.wait();
    }
    let store = connect(&db.url).await?;
    let filter = longshore_jobs::admin::JobFilter {
        tag: Some("schedule:w5".to_owned()),
        ..Default::default()
    };
    let jobs = store.list_jobs(&filter, None, 100_000).await?;
    let mut ticks: Vec<_> = jobs.iter().map(|j| j.run_at).collect();
    ticks.sort();
    let fired = ticks.len();
    ticks.dedup();
    let gaps = ticks
        .windows(2)
        .filter(|w| w[1] - w[0] != chrono::Duration::seconds(1))
        .count();
    let mut delays: Vec<f64> = jobs
        .iter()
        .map(|j| (j.created_at - j.run_at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .collect();
    delays.sort_by(f64::total_cmp);
    let pct =
        |p: f64| delays[((delays.len() as f64 * p) as usize).min(delays.len().saturating_sub(1))];
    anyhow::ensure!(!delays.is_empty(), "W5 fired nothing");
    Ok(json!({
        "fires": fired,
        "duplicates": fired - ticks.len(),
        "gaps": gaps,
        "insert_delay_p50_ms": pct(0.5),
        "insert_delay_p99_ms": pct(0.99),
    }))
}

/// W6: the idle cost of one `longshore worker` process working 10 queues with nothing to
/// do, on Postgres: the statements it sends per minute (`pg_stat_statements`, this
/// database's only, the bench's own reads of it left out) and the CPU it uses.
async fn w6(db: &Database, seconds: u64) -> anyhow::Result<Value> {
    const QUEUES: usize = 10;
    anyhow::ensure!(seconds > 0, "--w6-seconds must be at least 1");
    drop(connect(&db.url).await?); // creates the schema, then leaves the database alone
    let pool = sqlx::PgPool::connect(&db.url).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&pool)
        .await
        .context("W6 counts statements with the pg_stat_statements extension")?;
    // The extension lives in whichever schema it was created in, not the bench's own.
    let schema: String = sqlx::query_scalar(
        "SELECT extnamespace::regnamespace::text FROM pg_extension \
         WHERE extname = 'pg_stat_statements'",
    )
    .fetch_one(&pool)
    .await?;
    let count = format!(
        "SELECT coalesce(sum(calls), 0)::bigint FROM {schema}.pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND query NOT LIKE '%pg_stat_statements%'"
    );
    let statements = || async {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count.clone()))
            .fetch_one(&pool)
            .await
            .context(
                "W6 needs pg_stat_statements loaded by the server \
                 (shared_preload_libraries = 'pg_stat_statements', then a restart)",
            )
    };
    // Each statement's calls, to print what the idle process still asks.
    let by_query = format!(
        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 70), sum(calls)::bigint \
         FROM {schema}.pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND query NOT LIKE '%pg_stat_statements%' GROUP BY 1"
    );
    let breakdown = || async {
        let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(by_query.clone()))
            .fetch_all(&pool)
            .await?;
        anyhow::Ok(rows.into_iter().collect::<HashMap<String, i64>>())
    };
    statements().await?;
    let queues: Vec<String> = (0..QUEUES).map(|i| format!("w6_{i}=4")).collect();
    let (mut child, _port) = spawn_longshore(db, "worker", &["--queues", &queues.join(",")], &[])?;
    let pid = child.id();
    let result = async {
        tokio::time::sleep(Duration::from_secs(10)).await; // start-up: migrations, workers
        let (before, cpu_before, queries) = (
            statements().await?,
            cpu_ticks(pid).context("worker exited")?,
            breakdown().await?,
        );
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (after, cpu_after) = (
            statements().await?,
            cpu_ticks(pid).context("worker exited")?,
        );
        let mut asked: Vec<(i64, String)> = breakdown()
            .await?
            .into_iter()
            .map(|(q, calls)| (calls - queries.get(&q).copied().unwrap_or(0), q))
            .filter(|(calls, _)| *calls > 0)
            .collect();
        asked.sort_by(|a, b| b.cmp(a));
        for (calls, query) in asked.iter().take(12) {
            eprintln!(
                "W6 {:>8.1}/min  {query}",
                *calls as f64 * 60.0 / seconds as f64
            );
        }
        // SAFETY: sysconf(3) has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let cpu_s = (cpu_after - cpu_before) as f64 / hz;
        anyhow::Ok(json!({
            "statements_per_min": (after - before) as f64 * 60.0 / seconds as f64,
            "cpu_percent": cpu_s * 100.0 / seconds as f64,
            "queues": QUEUES,
        }))
    }
    .await;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    result
}

/// User and system CPU a process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// M1: resident memory of `longshore serve` idle, and its peak while it drains W1's jobs.
async fn m1(db: &Database, jobs: u64) -> anyhow::Result<Value> {
    let (mut child, _port) = spawn_longshore(db, "serve", &["--queues", "default=16"], &[])?;
    let pid = child.id();
    let store = connect(&db.url).await?;
    let result = async {
        while store.ping().await.is_err() || rss_mib(pid).is_none() {
            if let Some(status) = child.try_wait()? {
                bail!("longshore serve exited at start ({status})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = rss_mib(pid).context("serve exited")?;
        let mut registry = Registry::new();
        longshore_jobs::kinds::register_builtins(&mut registry);
        let client = Client::new(store.clone(), Arc::new(registry));
        let requests: Vec<_> = (0..jobs)
            .map(|_| EnqueueRequest::new("noop", json!({})))
            .collect();
        for chunk in requests.chunks(1000) {
            client.enqueue_many(chunk.to_vec()).await?;
        }
        let mut peak = idle;
        loop {
            peak = peak.max(rss_mib(pid).context("serve exited")?);
            let counts = store.count_by_state(Some("default")).await?;
            if counts.get(&JobState::Completed).copied() == Some(jobs as i64) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok(json!({ "idle_mib": idle, "peak_mib": peak }))
    }
    .await;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    result
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = KNOBS.set((args.prefetch, args.setup_sql.clone()));
    let otel = match args.telemetry {
        true => Some(telemetry()?),
        false => None,
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut results: Vec<(String, String, Value)> = Vec::new();
    for backend in &args.backends {
        for workload in &args.workloads {
            for run in 1..=args.runs {
                let db = fresh_database(backend, &args.pg_url).await?;
                let figures = match workload.as_str() {
                    "w1" => w1(&db, args.drain_jobs).await?,
                    "w2" => w2(&db, backend).await?,
                    "w3" => w3(&db).await?,
                    "w3-http" => w3_http(&db).await?,
                    "w4" => w4(&db, args.drain_jobs, args.history_jobs).await?,
                    // Ten times W4's history: a table of a busy week on Postgres.
                    "w4b" if backend == "sqlite" => continue,
                    "w4b" => w4(&db, args.drain_jobs, args.history_jobs * 10).await?,
                    // One process on an embedded file is not what W5 measures.
                    "w5" if backend == "sqlite" => continue,
                    "w5" => w5(&db, args.w5_seconds).await?,
                    "w6" if backend == "sqlite" => continue,
                    "w6" => w6(&db, args.w6_seconds).await?,
                    "m1" => m1(&db, args.drain_jobs).await?,
                    "p1" => push::p1(&db).await?,
                    "p2" => push::p2(&db).await?,
                    "p3" => push::p3(&db).await?,
                    "l1" => lifecycle::l1(&db, &args.redis_url).await?,
                    other => bail!("unknown workload {other}"),
                };
                let line = json!({
                    "workload": workload.to_uppercase(), "backend": backend, "run": run,
                    "cores": cores, "load_average": load_average(), "figures": figures,
                });
                println!("{line}");
                results.push((backend.clone(), workload.clone(), figures));
            }
        }
    }
    print_table(&results, cores);
    if let Some(otel) = otel {
        tokio::task::spawn_blocking(move || otel.shutdown()).await?;
    }
    Ok(())
}

/// Exports spans and metrics over OTLP, as the server does when configured to.
fn telemetry() -> anyhow::Result<longshore_workers::otel::Otel> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    if std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_err() {
        bail!(
            "--telemetry needs OTEL_EXPORTER_OTLP_ENDPOINT (scripts/bench-telemetry starts a sink)"
        );
    }
    let otel = longshore_workers::otel::Otel::from_env("longshore-bench", "bench")
        .map_err(anyhow::Error::msg)?;
    let ours = [
        "longshore",
        "longshore_jobs",
        "longshore_workers",
        "longshore_api",
    ];
    let spans = otel.layer().map(|layer| {
        layer.with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_targets(ours.map(|target| (target, tracing::Level::INFO))),
        )
    });
    tracing_subscriber::registry().with(spans).init();
    Ok(otel)
}

fn print_table(results: &[(String, String, Value)], cores: usize) {
    println!(
        "\nMedians of the runs above; {cores} cores, load average {}.\n",
        load_average()
    );
    println!("| backend | workload | figure | median |");
    println!("|---|---|---|---:|");
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for (backend, workload, figures) in results {
        for name in figures.as_object().into_iter().flat_map(|o| o.keys()) {
            let key = (backend.clone(), workload.clone(), name.clone());
            if !keys.contains(&key) && name != "jobs" {
                keys.push(key);
            }
        }
    }
    let ratios: Vec<String> = ["postgres", "sqlite"]
        .iter()
        .filter_map(|backend| {
            let median_of = |workload: &str| {
                let mut values: Vec<f64> = results
                    .iter()
                    .filter(|(b, w, _)| b == backend && w == workload)
                    .filter_map(|(_, _, f)| f["drain_jobs_per_s"].as_f64())
                    .collect();
                (!values.is_empty()).then(|| median(&mut values))
            };
            let ratio = median_of("w4")? / median_of("w1")?;
            Some(format!("| {backend} | W4 | ratio to W1 | {ratio:.2} |"))
        })
        .collect();
    for (backend, workload, name) in keys {
        let mut values: Vec<f64> = results
            .iter()
            .filter(|(b, w, _)| *b == backend && *w == workload)
            .filter_map(|(_, _, f)| f[&name].as_f64())
            .collect();
        let value = median(&mut values);
        let shown = if value >= 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.2}")
        };
        println!(
            "| {backend} | {} | {name} | {shown} |",
            workload.to_uppercase()
        );
    }
    for line in ratios {
        println!("{line}");
    }
}
