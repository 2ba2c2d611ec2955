//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::LogFormat;

/// Longshore: durable jobs with retries, leases, uniqueness and schedules.
#[derive(Debug, Parser)]
#[command(name = "longshore", version = crate::VERSION, about)]
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
    /// Enqueue, list, inspect, wait for, edit, retry, cancel and delete jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Follow the event stream, live or from a point in the past.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Send pushes to users, and follow the gateway stream that delivers them.
    #[command(subcommand)]
    Push(PushCommand),
    /// Webhook endpoints: create, list, change, rotate their secret, read their delivery
    /// log, redeliver and replay.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// List, inspect, pause and resume queues, and limit their concurrency.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// The worker processes seen lately, with what they run.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// The Redis Streams read into lifecycle jobs: lag, pending and dead-lettered entries.
    #[command(subcommand)]
    Ingesters(IngestersCommand),
    /// Counts of jobs by state.
    Stats(ClientArgs),
    /// Cron schedules: list, create, update, pause, trigger, their ticks and their jobs.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Sweeps: list them with last and next run, start a pass or a dry run.
    #[command(subcommand)]
    Sweeps(SweepsCommand),
    /// Bulk operations started by `jobs retry|cancel|delete` with a selector.
    #[command(subcommand)]
    Operations(OperationsCommand),
    /// The audit log of changes made through the API, newest first (admin scope).
    Audit {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create, list and revoke API tokens, over the API (`--server`) or in the database
    /// (`--database-url`, how the first token is made).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Exit 0 when the server is ready (its database answers), 6 when it is not: for
    /// container health checks.
    Health {
        /// The API's base URL.
        #[arg(
            long,
            env = "LONGSHORE_SERVER",
            default_value = "http://127.0.0.1:8080"
        )]
        server: String,
        /// Give up after this long.
        #[arg(long, default_value = "5s")]
        timeout: humantime::Duration,
    },
    /// Print a shell completion script, e.g. `longshore completions bash > /etc/bash_completion.d/longshore`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
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
    /// Output: a table for people, JSON, or one JSON object per line for scripts.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    /// Show times relative to now ("3m ago").
    #[arg(long)]
    pub relative: bool,
}

/// Output format of client commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Columns that fit the terminal.
    Table,
    /// The API's JSON.
    Json,
    /// One JSON object per line (a list's items, a stream's events).
    Jsonl,
}

/// A job's state by its name; clap lists the names when one is wrong.
fn job_state() -> impl clap::builder::TypedValueParser<Value = longshore_jobs::JobState> {
    use clap::builder::TypedValueParser;
    use longshore_jobs::JobState;
    clap::builder::PossibleValuesParser::new(JobState::ALL.map(JobState::as_str))
        .try_map(|name| name.parse::<JobState>())
}

/// Which jobs a list or a bulk action concerns.
#[derive(Clone, Debug, Default, Args)]
pub struct JobSelector {
    /// Only jobs in this state (repeatable).
    #[arg(long = "state", value_parser = job_state())]
    pub states: Vec<longshore_jobs::JobState>,
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

/// Paging through a list.
#[derive(Clone, Debug, Args)]
pub struct PageArgs {
    /// How many per page, 1–500.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: u32,
    /// Continue where a page ended (the cursor it printed).
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Every page, printed as it arrives.
    #[arg(long)]
    pub all: bool,
}

/// How long to wait for a job.
#[derive(Clone, Debug, Args)]
pub struct JobWait {
    /// Wait for the job to finish, with a spinner; the exit code tells how it ended.
    #[arg(long)]
    pub wait: bool,
    /// With `--wait`: give up after this long (exit 12; the job goes on).
    #[arg(long, default_value = "10m", requires = "wait")]
    pub timeout: humantime::Duration,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Enqueue a job.
    Enqueue {
        /// The kind, e.g. `sleep`.
        kind: String,
        /// The args: JSON, `@file.json`, or `-` to read them from stdin.
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
        #[arg(long, conflicts_with = "at")]
        delay: Option<humantime::Duration>,
        /// Run at this time (RFC 3339, e.g. 2026-12-24T18:00:00Z).
        #[arg(long)]
        at: Option<String>,
        /// A unique key: at most one waiting or running job has it.
        #[arg(long)]
        unique: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Sent as `Idempotency-Key`: the same key again returns the first job, not a new one.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        wait: JobWait,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List jobs, newest first.
    List {
        #[command(flatten)]
        select: JobSelector,
        /// Only the job enqueued with this unique key: which job a stream entry
        /// (`{stream}:{entry_id}`) or a lifecycle event (`lifecycle:{event_id}`) became.
        #[arg(long)]
        unique_key: Option<String>,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a job (by id, or a unique prefix of it).
    Get(JobRef),
    /// Show a job's attempts.
    Attempts(JobRef),
    /// Show a job's events, oldest first.
    Events(JobRef),
    /// Run a scheduled or retrying job now.
    Run(JobRef),
    /// Change a waiting job: its priority, time, attempts, tags or args.
    Edit {
        #[command(flatten)]
        job: JobRef,
        /// New priority, 0–9.
        #[arg(long)]
        priority: Option<i64>,
        /// New time to run (RFC 3339).
        #[arg(long)]
        at: Option<String>,
        /// New attempt limit.
        #[arg(long)]
        max_attempts: Option<i64>,
        /// New tags, replacing the old (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// New args: JSON, `@file.json` or `-`.
        #[arg(long)]
        args: Option<String>,
    },
    /// Retry one job, or (with a selector) every matching job in the time range.
    Retry(BulkArgs),
    /// Cancel one job, or (with a selector) every matching job in the time range.
    Cancel(BulkArgs),
    /// Delete one job, or (with a selector) every matching job in the time range.
    Delete(BulkArgs),
    /// Wait for a job to finish, showing its state; the exit code tells how it ended.
    Watch {
        #[command(flatten)]
        job: JobRef,
        /// Give up after this long (exit 12; the job goes on).
        #[arg(long, default_value = "10m")]
        timeout: humantime::Duration,
    },
}

/// One job, by id or by a unique prefix of it (as git takes commits).
#[derive(Debug, Args)]
pub struct JobRef {
    /// The job's id, or a unique prefix of it (at least 4 hex digits).
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// One job by id, or many by a selector.
#[derive(Debug, Args)]
pub struct BulkArgs {
    /// The job's id (or a unique prefix); omit it to act on every job the selector matches.
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
    /// Print events as they happen, from now on (as `tail -f`); `--after`, `--since` or
    /// `--from-start` replay the past first. Reconnects resume with no gap.
    Tail {
        /// Start after this event id.
        #[arg(long, conflicts_with_all = ["since", "from_start"])]
        after: Option<i64>,
        /// Start with the events of the last `10m`, `2h`, …
        #[arg(long, conflicts_with = "from_start")]
        since: Option<humantime::Duration>,
        /// Replay every event still kept, then follow.
        #[arg(long)]
        from_start: bool,
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
pub enum PushCommand {
    /// Store a push for a user and deliver it to the gateway stream; prints its position.
    /// Idempotent by `--event-id`.
    Send {
        /// The user it is for.
        #[arg(long)]
        user: String,
        /// What happened, e.g. `friend.request`.
        #[arg(long)]
        kind: String,
        /// The payload, as JSON.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// The event's id (a push with an id stored already is not stored again); a UUID
        /// when absent.
        #[arg(long)]
        event_id: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow the gateway stream as a gateway does, from now on; `--after` or
    /// `--from-start` replay the pushes kept first. Reconnects resume with no gap.
    Tail {
        /// Start after this position.
        #[arg(long, conflicts_with = "from_start")]
        after: Option<i64>,
        /// Replay every push still kept, then follow.
        #[arg(long)]
        from_start: bool,
        /// Only this kind (repeatable).
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Only this user (repeatable).
        #[arg(long = "user")]
        users: Vec<String>,
        /// Only the users of this share, `index/count` (e.g. `3/8`).
        #[arg(long)]
        partition: Option<String>,
        /// Stop after this many pushes.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A webhook endpoint by id.
#[derive(Debug, Args)]
pub struct EndpointRef {
    /// The endpoint's id.
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Every endpoint with its breaker's state.
    List(ClientArgs),
    /// One endpoint.
    Get(EndpointRef),
    /// Create an endpoint; prints its signing secret, this once.
    Create {
        /// Where deliveries are POSTed.
        #[arg(long)]
        url: String,
        /// What it receives: a push kind or event type, `prefix.*`, or `*` (repeatable).
        #[arg(long = "kind", required = true)]
        kinds: Vec<String>,
        /// The most deliveries per second.
        #[arg(long)]
        rate_limit: Option<i32>,
        /// Deliver one key's messages one after another.
        #[arg(long)]
        ordered: bool,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Enable an endpoint (forgetting its failures).
    Enable(EndpointRef),
    /// Disable an endpoint.
    Disable(EndpointRef),
    /// Delete an endpoint and its delivery log.
    Delete(EndpointRef),
    /// A new signing secret; the old one signs beside it for the rotation grace.
    RotateSecret(EndpointRef),
    /// The delivery log, newest first.
    Attempts {
        /// The endpoint's id.
        id: String,
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make one delivery again.
    Redeliver {
        /// The endpoint's id.
        id: String,
        /// The delivery job (from the delivery log).
        #[arg(long)]
        job: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make again every delivery first attempted in the last `--since` (`1h`, `30m`).
    Replay {
        /// The endpoint's id.
        id: String,
        /// How far back.
        #[arg(long)]
        since: humantime::Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A queue by name.
#[derive(Debug, Args)]
pub struct QueueRef {
    /// The queue.
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// Every queue with its counts.
    List(ClientArgs),
    /// One queue: counts, limit, workers, oldest waiting job.
    Get(QueueRef),
    /// Stop workers from claiming a queue's jobs.
    Pause {
        #[command(flatten)]
        queue: QueueRef,
        /// Pause a queue nothing knows yet (no jobs, no workers), e.g. before deploying it.
        #[arg(long)]
        create: bool,
    },
    /// Let workers claim a queue's jobs again.
    Resume {
        #[command(flatten)]
        queue: QueueRef,
        /// Accept a queue nothing knows yet.
        #[arg(long)]
        create: bool,
    },
    /// Limit how many of a queue's jobs run at once across all workers.
    Concurrency {
        #[command(flatten)]
        queue: QueueRef,
        /// The limit, 0–100000; omit it with `--clear`.
        #[arg(required_unless_present = "clear")]
        limit: Option<u32>,
        /// Remove the limit.
        #[arg(long, conflicts_with = "limit")]
        clear: bool,
        /// Accept a queue nothing knows yet.
        #[arg(long)]
        create: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Workers seen lately, with their queue, host, concurrency and running jobs.
    List {
        /// Seen within this long.
        #[arg(long, default_value = "5m")]
        within: humantime::Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum IngestersCommand {
    /// Each ingester's stream, group, consumers, lag, pending entries (and the oldest's
    /// wait), dead letters, and last entry.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperationsCommand {
    /// The latest bulk operations, newest first.
    List {
        #[command(flatten)]
        page: PageArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One operation and its progress.
    Get {
        /// The operation's id.
        id: String,
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

/// Tokens are managed over the API when `--server` is given, else in the database named by
/// `--database-url`, the config file or `./longshore.db`; a database is never made up on
/// the spot.
#[derive(Debug, Args)]
pub struct TokenTarget {
    /// Over the API at this base URL (with an admin `--token`).
    #[arg(long)]
    pub server: Option<String>,
    /// A bearer token with the admin scope (with `--server`).
    #[arg(long, env = "LONGSHORE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// In this database: postgres://… or sqlite:… (it must exist and be migrated).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// A TOML config file naming the database (without `--server`).
    #[arg(long, env = "LONGSHORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output: a table for people, JSON, or JSON lines.
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
    /// `sec min hour day month weekday`, e.g. '0 30 2 * * *', or @hourly, @daily, @weekly…
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
    /// The job's priority, 0–9.
    #[arg(long)]
    pub priority: Option<i64>,
    /// The job's attempts allowed.
    #[arg(long)]
    pub max_attempts: Option<i64>,
    /// A tag of the job (repeatable; replaces the template's tags).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Missed ticks after downtime.
    #[arg(long, value_enum)]
    pub catch_up: Option<CatchUp>,
    /// With `--catch-up all`: how far back, e.g. 6h.
    #[arg(long)]
    pub catch_up_window: Option<humantime::Duration>,
    /// With `--catch-up all`: most ticks back-filled at once.
    #[arg(long)]
    pub catch_up_cap: Option<u32>,
    /// While the previous job runs.
    #[arg(long, value_enum)]
    pub overlap: Option<Overlap>,
}

/// Missed ticks after downtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CatchUp {
    /// Fire none of them.
    Skip,
    /// Fire the latest once.
    Latest,
    /// Fire each (within the window and cap).
    All,
}

/// A tick while the previous job still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Overlap {
    /// Fire anyway.
    Allow,
    /// Skip the tick.
    Skip,
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
    /// The jobs a schedule fired, newest first.
    Jobs {
        /// The schedule's id.
        id: String,
        /// How many, 1–500.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The next ticks, in the schedule's time zone.
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
    /// Start a pass; waits and prints its counts. A statement sweep (which deletes or
    /// changes another application's rows) first shows what it matches and asks.
    Run {
        /// The sweep's name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
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
