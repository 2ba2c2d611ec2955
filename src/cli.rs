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
    /// Apply the database schema migrations and exit.
    Migrate(RuntimeArgs),
}

/// Settings shared by the server commands; each flag can also come from its variable.
#[derive(Debug, Args)]
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
