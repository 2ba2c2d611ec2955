//! `longshore`: a thin command line over the crates. It loads the config, starts logging,
//! and calls `run(config, shutdown)`.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

mod cli;
mod client;
mod config;
mod exit;
mod logging;
mod run;
mod tokens;

use cli::{Cli, Command, RuntimeArgs};
use config::Config;

/// The version and the commit it was built from, e.g. `0.1.0 (1a2b3c4d5e)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LONGSHORE_COMMIT"),
    ")"
);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match &cli.command {
        Command::Serve(args)
        | Command::Worker(args)
        | Command::Api(args)
        | Command::Migrate(args) => args,
        _ => return client_main(cli.command),
    };
    let config = match Config::load(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    let role = match cli.command {
        Command::Serve(_) => "serve",
        Command::Worker(_) => "worker",
        Command::Api(_) => "api",
        _ => "migrate",
    };
    let otel = {
        let _inside = runtime.enter();
        match longshore_workers::otel::Otel::from_env("longshore", role) {
            Ok(otel) => otel,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        }
    };
    logging::init(&config, &otel);
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(_) => run::run(config, run::Role::Serve, shutdown_signal()).await,
            Command::Worker(_) => run::run(config, run::Role::Worker, shutdown_signal()).await,
            Command::Api(_) => run::run(config, run::Role::Api, shutdown_signal()).await,
            Command::Migrate(_) => migrate(&config).await,
            _ => unreachable!("client commands return earlier"),
        }
    });
    // What is left of the traces and metrics goes out while the runtime still runs.
    otel.shutdown();
    // The pool has already given up on handlers that would not stop; dropping the runtime
    // would wait for their threads forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    finish(result)
}

/// The client commands: quiet logs, one line per error, the exit code README lists.
fn client_main(command: Command) -> ExitCode {
    use std::io::IsTerminal;
    let filter = std::env::var("LONGSHORE_LOG").unwrap_or_else(|_| "warn".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if let Command::Completions { shell } = command {
        client::completions(shell);
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    let result = runtime.block_on(async {
        match command {
            Command::Jobs(c) => client::jobs(c).await,
            Command::Events(c) => client::events(c).await,
            Command::Push(c) => client::push(c).await,
            Command::Webhooks(c) => client::webhooks(c).await,
            Command::Queues(c) => client::queues(c).await,
            Command::Workers(c) => client::workers(c).await,
            Command::Ingesters(c) => client::ingesters(c).await,
            Command::Stats(c) => client::stats(c).await,
            Command::Schedules(c) => client::schedules(c).await,
            Command::Sweeps(c) => client::sweeps(c).await,
            Command::Operations(c) => client::operations(c).await,
            Command::Audit { page, client } => client::audit(page, client).await,
            Command::Tokens(c) => tokens::run(c).await,
            Command::Health { server, timeout } => client::health(&server, timeout.into()).await,
            _ => unreachable!("server commands are handled in main"),
        }
    });
    finish(result)
}

/// One line per error on stderr, and the error's exit code.
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(exit::code(&error))
        }
    }
}

/// The runtime args of a command that only needs the database.
fn database_args(database_url: Option<String>, config: Option<std::path::PathBuf>) -> RuntimeArgs {
    RuntimeArgs {
        database_url,
        config,
        ..RuntimeArgs::default()
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let mut database = config.database.clone();
    database.migrate = false;
    let store = longshore_jobs::Store::connect(&database).await?;
    store.migrate().await?;
    tracing::info!(database = %run::redact(&database.url), "migrations applied");
    Ok(())
}

/// Fires on the first SIGTERM or Ctrl-C; a second one exits at once.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fired = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; send the signal again to exit at once");
        fired.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
