//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

/// Longshore: durable jobs with retries, leases, uniqueness and schedules.
#[derive(Debug, Parser)]
#[command(name = "longshore", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API, the workers and maintenance in one process.
    Serve(RuntimeArgs),
    /// Run the workers and maintenance only.
    Worker(RuntimeArgs),
    /// Run the API only (add replicas behind a load balancer on Postgres).
    Api(RuntimeArgs),
    /// Apply the database schema migrations and exit.
    Migrate(RuntimeArgs),
    /// Enqueue, list, inspect, retry, cancel and delete jobs (over the HTTP API).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Follow the event stream (over the HTTP API).
    #[command(subcommand)]
    Events(EventsCommand),
    /// List, pause and resume queues (over the HTTP API).
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Counts of jobs by state (over the HTTP API).
    Stats(ClientArgs),
    /// Cron schedules: list, create, update, pause, trigger, upcoming ticks (over the HTTP API).
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Sweeps: list them with last and next run, start a pass or a dry run (over the HTTP API).
    #[command(subcommand)]
    Sweeps(SweepsCommand),
    /// Create, list and revoke API tokens: over the HTTP API with `--server`, else directly
    /// in the database (how the first token is made).
    #[command(subcommand)]
    Tokens(TokensCommand),
}

/// Where the API is and how to talk to it.
#[derive(Clone, Debug, Args)]
pub struct ClientArgs {
    /// The API's base URL.
    #[arg(
        long,
        env = "LONGSHORE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// A bearer token.
    #[arg(long, env = "LONGSHORE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output: a table for people, or JSON for scripts.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

/// Output format of client commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns.
    Table,
    /// The API's JSON.
    Json,
}

/// Which jobs a list or a bulk action concerns.
#[derive(Clone, Debug, Default, Args)]
pub struct JobSelector {
    /// Only jobs in this state (repeatable).
    #[arg(long = "state")]
    pub states: Vec<String>,
    /// Only this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only jobs with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Only jobs created within this long, e.g. `1h` or `2d`.
    #[arg(long)]
    pub since: Option<humantime::Duration>,
    /// A value inside the args, `path=value`, e.g. `user.id=42` (repeatable).
    #[arg(long = "arg")]
    pub args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Enqueue a job.
    Enqueue {
        /// The kind, e.g. `sleep`.
        kind: String,
        /// The args as JSON, e.g. '{"ms": 500}'.
        #[arg(long, default_value = "{}")]
        args: String,
        /// The queue (default: the kind's).
        #[arg(long)]
        queue: Option<String>,
        /// 0 (first) to 9 (last).
        #[arg(long)]
        priority: Option<i64>,
        /// Attempts allowed.
        #[arg(long)]
        max_attempts: Option<i64>,
        /// Wait this long before the first attempt, e.g. `10s`.
        #[arg(long)]
        delay: Option<humantime::Duration>,
        /// A unique key: at most one waiting or running job has it.
        #[arg(long)]
        unique: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Wait for the job to finish, with a spinner.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List jobs, newest first.
    List {
        #[command(flatten)]
        select: JobSelector,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a job.
    Get {
        /// The job's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a job's attempts.
    Attempts {
        /// The job's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Retry one job, or (with a selector) every matching job in the time range.
    Retry(BulkArgs),
    /// Cancel one job, or (with a selector) every matching job in the time range.
    Cancel(BulkArgs),
    /// Delete one job, or (with a selector) every matching job in the time range.
    Delete(BulkArgs),
    /// Wait for a job to finish, showing its state changes.
    Watch {
        /// The job's id.
        id: String,
        /// Give up after this long.
        #[arg(long, default_value = "10m")]
        timeout: humantime::Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// One job by id, or many by a selector.
#[derive(Debug, Args)]
pub struct BulkArgs {
    /// The job's id; omit it to act on every job the selector matches.
    pub id: Option<String>,
    #[command(flatten)]
    pub select: JobSelector,
    /// Only count the jobs that would be touched.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events as they happen; resumes after `--after` (or the last id seen).
    Tail {
        /// Resume after this event id.
        #[arg(long)]
        after: Option<i64>,
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Only this type, e.g. `job.failed` or `job.*` (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Every queue with its counts.
    List(ClientArgs),
    /// Stop workers from claiming a queue's jobs.
    Pause {
        /// The queue.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Let workers claim a queue's jobs again.
    Resume {
        /// The queue.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; it is printed once.
    Create {
        /// A name for people, e.g. `ci`.
        #[arg(long, default_value = "admin")]
        name: String,
        /// Scope: read, enqueue, operate or admin (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[command(flatten)]
        target: TokenTarget,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        target: TokenTarget,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id.
        id: String,
        #[command(flatten)]
        target: TokenTarget,
    },
}

/// Tokens are managed over the API (`--server`) or directly in the database.
#[derive(Debug, Args)]
pub struct TokenTarget {
    /// The API's base URL; without it, the database is used directly.
    #[arg(long, env = "LONGSHORE_SERVER")]
    pub server: Option<String>,
    /// A bearer token with the admin scope (with `--server`).
    #[arg(long, env = "LONGSHORE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// postgres://… or sqlite:… (without `--server`; default: sqlite:longshore.db).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// A TOML config file (without `--server`).
    #[arg(long, env = "LONGSHORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output: a table for people, or JSON for scripts.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

/// Settings shared by the server commands; each flag can also come from its variable.
#[derive(Debug, Default, Args)]
pub struct RuntimeArgs {
    /// A TOML config file.
    #[arg(long, env = "LONGSHORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// postgres://… or sqlite:… (default: sqlite:longshore.db in the working directory).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Queues to work with their concurrency, e.g. `default=10,mail=4`.
    #[arg(long, env = "LONGSHORE_QUEUES")]
    pub queues: Option<String>,
    /// Lease of a claimed job, e.g. `30s`.
    #[arg(long, env = "LONGSHORE_LEASE")]
    pub lease: Option<humantime::Duration>,
    /// How often leases are renewed, e.g. `5s`.
    #[arg(long, env = "LONGSHORE_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<humantime::Duration>,
    /// How often an idle worker looks for due jobs, e.g. `1s`.
    #[arg(long, env = "LONGSHORE_POLL_INTERVAL")]
    pub poll_interval: Option<humantime::Duration>,
    /// How long in-flight jobs may run on after SIGTERM, e.g. `30s`.
    #[arg(long, env = "LONGSHORE_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<humantime::Duration>,
    /// How long a handler asked to stop may take before it is aborted, e.g. `5s`.
    #[arg(long, env = "LONGSHORE_CANCEL_GRACE")]
    pub cancel_grace: Option<humantime::Duration>,
    /// How often expired leases are rescued, e.g. `5s`.
    #[arg(long, env = "LONGSHORE_RESCUE_INTERVAL")]
    pub rescue_interval: Option<humantime::Duration>,
    /// Address of the API, e.g. `127.0.0.1:8080`.
    #[arg(long, env = "LONGSHORE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Port of the API (on the configured host).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// Log format.
    #[arg(long, env = "LONGSHORE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info,longshore_workers=debug`.
    #[arg(long, env = "LONGSHORE_LOG")]
    pub log: Option<String>,
    /// Register the fault-test kinds. Never in production.
    #[arg(long, env = "LONGSHORE_ENABLE_TEST_KINDS")]
    pub enable_test_kinds: bool,
}

/// A schedule's fields, as flags.
#[derive(Debug, Default, Args)]
pub struct ScheduleFields {
    /// `sec min hour day month weekday`, e.g. '0 30 2 * * *'.
    #[arg(long)]
    pub cron: Option<String>,
    /// An IANA time zone, e.g. Europe/Berlin (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// The kind each tick enqueues.
    #[arg(long)]
    pub kind: Option<String>,
    /// The job's args as JSON.
    #[arg(long)]
    pub args: Option<String>,
    /// The job's queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Missed ticks after downtime: skip, latest or all.
    #[arg(long)]
    pub catch_up: Option<String>,
    /// With `--catch-up all`: how far back, e.g. 6h.
    #[arg(long)]
    pub catch_up_window: Option<humantime::Duration>,
    /// With `--catch-up all`: most ticks back-filled at once.
    #[arg(long)]
    pub catch_up_cap: Option<u32>,
    /// While the previous job runs: allow or skip.
    #[arg(long)]
    pub overlap: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Every schedule with its next tick.
    List(ClientArgs),
    /// One schedule.
    Get {
        /// The schedule's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a schedule (`--cron` and `--kind` required).
    Create {
        /// A stable id, e.g. nightly-cleanup.
        id: String,
        #[command(flatten)]
        fields: ScheduleFields,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a schedule made through the API.
    Update {
        /// The schedule's id.
        id: String,
        #[command(flatten)]
        fields: ScheduleFields,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a schedule made through the API (its jobs stay).
    Delete {
        /// The schedule's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a schedule from firing.
    Pause {
        /// The schedule's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Let a paused schedule fire again.
    Resume {
        /// The schedule's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Fire now, once.
    Trigger {
        /// The schedule's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The next ticks.
    Upcoming {
        /// The schedule's id.
        id: String,
        /// How many.
        #[arg(long, default_value_t = 10)]
        count: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SweepsCommand {
    /// Every sweep with its last run and next run.
    List(ClientArgs),
    /// One sweep: its definition, last run, next run and, for fan-out, its children.
    Get {
        /// The sweep's name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Count what a pass would touch, changing nothing; waits and prints the counts.
    DryRun {
        /// The sweep's name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a pass; waits and prints its counts.
    Run {
        /// The sweep's name.
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Waiting for a pass to end.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Print the pass's job id and return at once.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this long (the pass goes on), e.g. `30m`.
    #[arg(long, default_value = "1h")]
    pub timeout: humantime::Duration,
}
