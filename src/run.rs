//! The server commands: connect, then run until a shutdown signal.

use std::sync::Arc;

use anyhow::Context;
use longshore_api::ApiState;
use longshore_jobs::target::Targets;
use longshore_jobs::{Client, Registry, Store};
use longshore_workers::Pool;
use longshore_workers::ingest::{Ingester, IngesterSet};
use longshore_workers::kinds;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::exit::{Exit, fail};

/// What a server process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// API, workers and maintenance.
    Serve,
    /// Workers and maintenance.
    Worker,
    /// The API only.
    Api,
}

/// How often the webhook relay looks for new pushes and events.
const RELAY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// The kinds this process knows, wired to the store and the target databases.
pub fn registry(config: &Config, store: &Store, targets: &Arc<Targets>) -> Arc<Registry> {
    let mut registry = Registry::new();
    longshore_jobs::kinds::register_builtins(&mut registry);
    registry.register(kinds::Sweep::new(Arc::clone(targets)));
    registry.register(longshore_workers::pruner::Prune(
        longshore_workers::pruner::Pruner::new(store.clone(), config.pool.retention.clone())
            .keeping_activity(config.activity.longest()),
    ));
    // Checked at start (Config::validate): these cannot fail here.
    let keyring = config.secrets.keyring().unwrap_or_default();
    let egress = config.egress.guard().unwrap_or_default();
    registry.register(kinds::Http::new(
        keyring.clone(),
        egress.clone(),
        config.webhooks.timeout,
    ));
    registry.register(kinds::Deliver::new(
        config.webhooks.clone(),
        keyring,
        egress,
    ));
    let lifecycle = Arc::new(config.lifecycle.clone());
    registry.register(kinds::Lifecycle::new(Arc::clone(&lifecycle)));
    registry.register(kinds::lifecycle::Step::new(lifecycle, Arc::clone(targets)));
    if let Some(runtime) = &config.runtime {
        registry.register(kinds::RemoveContainer::new(
            runtime.clone(),
            Arc::clone(targets),
        ));
    }
    register_test_kinds(config, &mut registry);
    Arc::new(registry)
}

/// The kinds of the fault tests, when asked for: they exist in debug builds only.
#[cfg(debug_assertions)]
fn register_test_kinds(config: &Config, registry: &mut Registry) {
    if config.enable_test_kinds {
        tracing::warn!("test kinds are enabled: test.abort kills this process");
        registry
            .register(kinds::Abort)
            .register(kinds::Stubborn)
            .register(kinds::Mark);
    }
}

#[cfg(not(debug_assertions))]
fn register_test_kinds(config: &Config, _registry: &mut Registry) {
    if config.enable_test_kinds {
        tracing::warn!("test kinds exist in debug builds only; none is registered");
    }
}

/// Connects to the database (creating and migrating it when configured).
pub async fn connect(config: &Config) -> anyhow::Result<Store> {
    Store::connect(&config.database)
        .await
        .with_context(|| format!("cannot open database {}", redact(&config.database.url)))
}

/// Runs `role` until `shutdown` fires.
pub async fn run(config: Config, role: Role, shutdown: CancellationToken) -> anyhow::Result<()> {
    // The port first: a port in use stops the process before anything has started.
    let listener = match role {
        Role::Worker => None,
        Role::Serve | Role::Api => Some(
            longshore_api::bind(&config.api)
                .await
                .with_context(|| format!("cannot listen on {}", config.api.listen))?,
        ),
    };
    let store = connect(&config).await?;
    let targets = Arc::new(Targets::new(config.targets.clone()));
    let registry = registry(&config, &store, &targets);
    reconcile_sweeps(&config, &store, &registry, &targets).await?;
    reconcile_schedules(&config, &store, &registry).await?;
    let client = Client::new(store.clone(), Arc::clone(&registry));
    check_cascades(&config, &client)?;
    if role != Role::Worker {
        longshore_api::check_exposure(&config.api, &store)
            .await
            .map_err(|message| anyhow::anyhow!(message))?;
    }
    let mut pool_config = config.pool.clone();
    pool_config
        .queues
        .entry(longshore_workers::pruner::MAINTENANCE_QUEUE.to_owned())
        .or_insert(longshore_workers::QueueConfig {
            concurrency: 1,
            prefetch: longshore_workers::Prefetch::Fixed(0),
        });
    pool_config
        .queues
        .entry(kinds::webhook::QUEUE.to_owned())
        .or_insert(longshore_workers::QueueConfig {
            concurrency: config.webhooks.concurrency,
            prefetch: longshore_workers::Prefetch::Fixed(0),
        });
    // Lifecycle jobs exist only for the event types of the cascades.
    if !config.lifecycle.cascades.is_empty() {
        pool_config
            .queues
            .entry(config.lifecycle.queue.clone())
            .or_insert(longshore_workers::QueueConfig {
                concurrency: config.lifecycle.concurrency,
                prefetch: longshore_workers::Prefetch::Fixed(0),
            });
    }
    announce(&config, role, listener.as_ref(), &pool_config);
    tokio::spawn(release_freed_memory(shutdown.clone()));
    let ingesters = start_ingesters(&config, role, &client, &shutdown);
    let workers = (role != Role::Api).then(|| {
        let relay = kinds::webhook::relay::Relay::new(client.clone(), RELAY_INTERVAL);
        tokio::spawn(relay.run(shutdown.clone()));
        let pool = Pool::new(pool_config, store.clone(), Arc::clone(&registry));
        tokio::spawn(pool.run(shutdown.clone()))
    });
    if let Some(listener) = listener {
        let state = ApiState::new(client, config.api.clone())
            .with_targets(targets)
            .with_webhooks(
                config.secrets.keyring().unwrap_or_default(),
                config.webhooks.rotation_grace,
            )
            .with_lifecycle(config.lifecycle.event_types(), Arc::new(ingesters))
            .with_activity(config.activity.windows().unwrap_or_default());
        let served = longshore_api::serve_on(listener, &config.api, state, shutdown.clone()).await;
        if let Err(error) = served {
            shutdown.cancel();
            if let Some(workers) = workers {
                let _ = workers.await;
            }
            return Err(error)
                .with_context(|| format!("cannot serve the API on {}", config.api.listen));
        }
    }
    if let Some(workers) = workers {
        workers.await.context("worker pool task")??;
    }
    Ok(())
}

/// How long after the start, and then how often, memory freed to the allocator is handed
/// back to the system.
const TRIM_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Hands memory that glibc's allocator keeps after it is freed back to the system: what the
/// start built and dropped (the configuration, the API's document, the migrations; about
/// 3 MiB of an idle process's 30), and later what a burst of jobs left. glibc returns only
/// the free top of each arena on its own; an idle process would otherwise hold the rest.
async fn release_freed_memory(shutdown: CancellationToken) {
    let mut wait = TRIM_AFTER;
    while tokio::time::timeout(wait, shutdown.cancelled())
        .await
        .is_err()
    {
        // On a thread of its own: after a burst, walking a large heap takes a while.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        let _ = tokio::task::spawn_blocking(|| {
            // SAFETY: malloc_trim takes the allocator's own locks; it frees no memory in use.
            unsafe { libc::malloc_trim(0) }
        })
        .await;
        wait = TRIM_EVERY;
    }
}

/// Starts the ingesters of `[[ingesters]]` (not in an API-only process, which only reports
/// on them from Redis).
fn start_ingesters(
    config: &Config,
    role: Role,
    client: &Client,
    shutdown: &CancellationToken,
) -> IngesterSet {
    let process = longshore_jobs::ProcessId::current().to_string();
    let lifecycle = Arc::new(config.lifecycle.clone());
    let known: Arc<dyn Fn(&str) -> bool + Send + Sync> = Arc::new(move |t| lifecycle.knows(t));
    let mut reporters = Vec::new();
    for def in &config.ingesters {
        let ingester = Ingester::new(def.clone(), &process, client.clone(), Arc::clone(&known));
        let runs = role != Role::Api;
        reporters.push(ingester.reporter(runs));
        if runs {
            tokio::spawn(ingester.run(shutdown.clone()));
        }
    }
    IngesterSet::new(reporters)
}

/// Prepares each cascade step for a sample event, so that a step that could never be enqueued
/// (an unknown kind, args its kind refuses, a bad URL) stops the start naming it.
fn check_cascades(config: &Config, client: &Client) -> anyhow::Result<()> {
    for (at, request) in config.lifecycle.sample_requests() {
        if let Err(error) = client.prepare(request) {
            return Err(fail(
                Exit::Usage,
                format!("invalid configuration: lifecycle.{at}: {error}"),
            ));
        }
    }
    Ok(())
}

/// The one start-up line: what runs, where to open it, the version, the database (its
/// password hidden) and the queues worked.
fn announce(
    config: &Config,
    role: Role,
    listener: Option<&tokio::net::TcpListener>,
    pool: &longshore_workers::PoolConfig,
) {
    let queues: Vec<String> = pool
        .queues
        .iter()
        .map(|(name, queue)| format!("{name}={}", queue.concurrency))
        .collect();
    let queues = match role {
        Role::Api => "none (api only)".to_owned(),
        Role::Serve | Role::Worker => queues.join(","),
    };
    let database = redact(&config.database.url);
    let address = listener.and_then(|l| l.local_addr().ok());
    match address {
        Some(mut address) => {
            // An address that listens everywhere is opened at loopback on this machine.
            if address.ip().is_unspecified() {
                address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let api = format!("http://{address}/api/v1");
            tracing::info!(
                version = crate::VERSION,
                database = %database,
                queues = %queues,
                "Longshore is up: the API at {api}, its docs at {api}/docs"
            );
        }
        None => tracing::info!(
            version = crate::VERSION,
            database = %database,
            queues = %queues,
            "Longshore worker is up"
        ),
    }
}

/// Makes the database's config-declared sweeps match the config file; a sweep that was
/// declared through the API under the same name becomes the config's.
pub async fn reconcile_sweeps(
    config: &Config,
    store: &Store,
    registry: &Registry,
    targets: &Targets,
) -> anyhow::Result<()> {
    use longshore_jobs::schedule::Source;
    // Checked as `PUT /sweeps` checks a definition: fields, kind, and statements prepared
    // on the target. A bad one stops the start (exit 2) naming its field, rather than the
    // first pass failing hours later.
    for def in &config.sweeps {
        if let Err((field, mut message)) =
            longshore_jobs::sweep::check(def, targets, registry).await
        {
            if field == "target" {
                // Unreachable now, maybe not for long: the passes report it if it stays so.
                tracing::warn!(sweep = %def.name, error = %message, "cannot check a sweep on its target");
                continue;
            }
            if field == "action.kind" && message.contains("runtime.remove") {
                message.push_str(" (declare [runtime])");
            }
            return Err(fail(
                Exit::Usage,
                format!(
                    "invalid configuration: sweeps.{}.{field}: {message}",
                    def.name
                ),
            ));
        }
    }
    if let Some(runtime) = &config.runtime {
        match runtime.check_statements(targets).await {
            Ok(()) => {}
            Err((field, message)) if field == "target" => {
                tracing::warn!(error = %message, "cannot check [runtime] on its target");
            }
            Err((field, message)) => {
                return Err(fail(
                    Exit::Usage,
                    format!("invalid configuration: runtime.{field}: {message}"),
                ));
            }
        }
    }
    for def in &config.sweeps {
        store.put_sweep(def, Source::Config).await?;
    }
    for stored in store.sweeps().await? {
        let still = config.sweeps.iter().any(|d| d.name == stored.def.name);
        if stored.source == Source::Config && !still {
            store.delete_sweep(&stored.def.name).await?;
            tracing::info!(sweep = %stored.def.name, "sweep no longer in the config file; deleted");
        }
    }
    Ok(())
}

/// Makes the database's config-declared schedules match the config file: creates and
/// updates those declared, deletes those no longer declared. A schedule paused by an
/// operator stays paused; an API schedule with the same id becomes the config's.
pub async fn reconcile_schedules(
    config: &Config,
    store: &Store,
    registry: &Registry,
) -> anyhow::Result<()> {
    use longshore_jobs::schedule::Source;
    let now = chrono::Utc::now();
    let mut declared = config.schedules.clone();
    declared.extend(config.sweeps.iter().filter_map(|sweep| sweep.schedule()));
    declared.push(longshore_workers::pruner::schedule(&config.pool.retention));
    for def in &declared {
        if registry.get(&def.job.kind).is_none() {
            return Err(fail(
                Exit::Usage,
                format!(
                    "invalid configuration: schedules.{}.job.kind: no kind {:?} is registered",
                    def.id, def.job.kind
                ),
            ));
        }
        let existing = store.schedule(&def.id).await?;
        let mut def = def.clone();
        if let Some(e) = existing.as_ref().filter(|e| e.source == Source::Config) {
            def.enabled = def.enabled && e.enabled;
        }
        let mut schedule = def
            .into_schedule(Source::Config, now, existing.as_ref())
            .map_err(|e| {
                fail(
                    Exit::Usage,
                    format!(
                        "invalid configuration: schedules.{}: {}",
                        e.field, e.message
                    ),
                )
            })?;
        if !schedule.enabled {
            schedule.next_fire_at = None;
        }
        store.put_schedule(&schedule).await?;
    }
    for stored in store.schedules().await? {
        let still = declared.iter().any(|d| d.id == stored.id);
        if stored.source == Source::Config && !still {
            store.delete_schedule(&stored.id).await?;
            tracing::info!(schedule = %stored.id, "schedule no longer in the config file; deleted");
        }
    }
    Ok(())
}

/// The URL with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db/x"),
            "postgres://app:***@db/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("sqlite:longshore.db"), "sqlite:longshore.db");
    }
}
