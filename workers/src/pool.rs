//! The pool: one apalis worker per queue, run by an apalis `Monitor`, with the background
//! roles (completer, heartbeat, rescuer, scheduler) beside them.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use apalis::layers::catch_panic::CatchPanicLayer;
use apalis::layers::tracing::TraceLayer;
use apalis::prelude::{Monitor, WorkerBuilder, WorkerBuilderExt};
use apalis_core::task::Task;
use longshore_jobs::store::WorkerInfo;
use longshore_jobs::{ClaimedJob, Client, ProcessId, Registry, Store, StoreError, WorkerId};
use tokio_util::sync::CancellationToken;

use crate::ack::HandlerPanicked;
use crate::backend::{QueueBackend, Shared};
use crate::completer::Completer;
use crate::config::PoolConfig;
use crate::dispatch::{Dispatch, panic_message};
use crate::heartbeat::Heartbeat;
use crate::held::{HeldAttempts, StopReason};
use crate::rescuer::Rescuer;
use crate::scheduler::Scheduler;

/// The pool failed to start or to run.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A worker could not be registered.
    #[error("cannot register worker {worker}")]
    Register {
        /// The worker.
        worker: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The apalis monitor ended with an error.
    #[error("worker monitor failed: {0}")]
    Monitor(String),
}

/// The worker pool of one process.
pub struct Pool {
    config: PoolConfig,
    store: Store,
    registry: Arc<Registry>,
    held: HeldAttempts,
}

impl Pool {
    /// A pool working the queues of `config`, running the kinds of `registry`.
    pub fn new(config: PoolConfig, store: Store, registry: Arc<Registry>) -> Self {
        Pool {
            config,
            store,
            registry,
            held: HeldAttempts::default(),
        }
    }

    /// The attempts this pool holds now.
    pub fn held(&self) -> &HeldAttempts {
        &self.held
    }

    /// Works until `shutdown` fires, then stops claiming, lets in-flight jobs finish within
    /// the shutdown grace, hands back claimed jobs that never started, stores every outcome
    /// and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PoolError> {
        let process = ProcessId::current();
        let (completer, completer_task) = Completer::start(self.store.clone(), self.held.clone());
        let mut shared = Vec::new();
        for (queue, settings) in &self.config.queues {
            let worker = WorkerId::new(queue, &process);
            let info = WorkerInfo {
                id: worker.clone(),
                queue: queue.clone(),
                host: process.host.clone(),
                pid: process.pid,
                concurrency: settings.concurrency,
                kinds: self.registry.kinds().map(|k| k.name().to_owned()).collect(),
            };
            self.store
                .register_worker(&info)
                .await
                .map_err(|source| PoolError::Register {
                    worker: worker.to_string(),
                    source,
                })?;
            shared.push(Arc::new(Shared {
                store: self.store.clone(),
                queue: queue.clone(),
                worker,
                concurrency: settings.concurrency,
                prefetch: settings.prefetch,
                lease: self.config.lease,
                poll_interval: self.config.poll_interval,
                notify: self.store.wakeups().queue(queue),
                completer: completer.clone(),
                registry: Arc::clone(&self.registry),
                held: self.held.clone(),
            }));
        }
        let roles = self.start_roles(shared.iter().map(|s| s.worker.clone()).collect());
        let mut monitor = Monitor::new().should_restart(|worker, error| {
            tracing::error!(worker.id = worker.name(), %error, "worker failed; restarting it");
            true
        });
        for worker in &shared {
            let worker = Arc::clone(worker);
            let (registry, held) = (Arc::clone(&self.registry), self.held.clone());
            let grace = self.config.cancel_grace;
            monitor = monitor.register(move |_restarts| {
                let dispatch = Dispatch::new(
                    Arc::clone(&registry),
                    held.clone(),
                    worker.worker.clone(),
                    grace,
                );
                WorkerBuilder::new(worker.worker.as_str())
                    .backend(QueueBackend::new(Arc::clone(&worker)))
                    .layer(TraceLayer::new().make_span_with(process_span))
                    .concurrency(worker.concurrency as usize)
                    .layer(CatchPanicLayer::with_panic_handler(
                        |panic: &Box<dyn Any + Send>| HandlerPanicked(panic_message(panic)),
                    ))
                    .build(dispatch)
            });
        }
        tracing::info!(
            process = %process, queues = ?self.config.queues.keys().collect::<Vec<_>>(),
            "pool started"
        );
        let grace = tokio::spawn(stop_after_grace(
            shutdown.clone(),
            self.held.clone(),
            self.config.shutdown_grace,
        ));
        let signal = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                tracing::info!("shutdown: no new jobs are claimed; in-flight jobs may finish");
                Ok(())
            }
        };
        // However a handler behaves (one that blocks its thread cannot be aborted), shutdown
        // ends on time: past the grace and the cancel grace, whatever still runs is abandoned
        // and its lease runs out, so another process rescues it.
        let limit = self.config.shutdown_grace + self.config.cancel_grace + ABANDON_AFTER;
        // The monitor runs the handlers in its own task, so one that blocks a thread cannot
        // hold up this one.
        let mut monitor = tokio::spawn(monitor.run_with_signal(signal));
        let result = tokio::select! {
            joined = &mut monitor => match joined {
                Ok(result) => result.map_err(|e| PoolError::Monitor(e.to_string())),
                Err(error) => Err(PoolError::Monitor(error.to_string())),
            },
            () = after_shutdown(&shutdown, limit) => {
                monitor.abort();
                let running = self.held.running();
                tracing::error!(
                    jobs = ?running.iter().map(|(id, attempt)| format!("{id}#{attempt}")).collect::<Vec<_>>(),
                    "shutdown: handlers did not stop within the grace periods; abandoning them \
                     (their leases run out and they are rescued)"
                );
                Ok(())
            }
        };
        grace.abort();
        if tokio::time::timeout(FINAL_FLUSH, completer.flush())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: outcomes not stored in time; their jobs will be rescued");
        }
        roles.cancel();
        drop(shared);
        drop(completer);
        let _ = tokio::time::timeout(FINAL_FLUSH, completer_task).await;
        tracing::info!("pool stopped");
        result
    }

    fn start_roles(&self, workers: Vec<WorkerId>) -> CancellationToken {
        let stop = CancellationToken::new();
        let config = &self.config;
        let heartbeat = Heartbeat::new(
            self.store.clone(),
            workers,
            self.held.clone(),
            config.lease,
            config.heartbeat_interval,
        );
        tokio::spawn(heartbeat.run(stop.clone()));
        tokio::spawn(Rescuer::new(self.store.clone(), config.rescue_interval).run(stop.clone()));
        if config.scheduler.enabled {
            let client = Client::new(self.store.clone(), Arc::clone(&self.registry));
            let mut scheduler = Scheduler::new(client, config.scheduler.interval);
            if let Some(offset) = clock_offset() {
                tracing::warn!(
                    offset_ms = offset.num_milliseconds(),
                    "the scheduler reads a skewed clock (LONGSHORE_TEST_CLOCK_OFFSET_MS)"
                );
                scheduler = scheduler.with_clock_offset(offset);
            }
            tokio::spawn(scheduler.run(stop.clone()));
        }
        stop
    }
}

/// A clock skew for the scheduler, for tests of skewed hosts only.
fn clock_offset() -> Option<chrono::Duration> {
    let ms: i64 = std::env::var("LONGSHORE_TEST_CLOCK_OFFSET_MS")
        .ok()?
        .parse()
        .ok()?;
    Some(chrono::Duration::milliseconds(ms))
}

/// How long past the shutdown grace and the cancel grace a pool waits for stopped handlers'
/// outcomes to reach the completer before it abandons what still runs.
const ABANDON_AFTER: Duration = Duration::from_millis(500);
/// How long a stopping pool waits for the last outcomes to be stored.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// Resolves `limit` after `shutdown` fires.
async fn after_shutdown(shutdown: &CancellationToken, limit: Duration) {
    shutdown.cancelled().await;
    tokio::time::sleep(limit).await;
}

/// After the shutdown grace, asks every job still running to stop; each is handed back
/// (not counting the attempt) once it stops or its cancel grace runs out.
async fn stop_after_grace(shutdown: CancellationToken, held: HeldAttempts, grace: Duration) {
    shutdown.cancelled().await;
    tokio::time::sleep(grace).await;
    let running = held.running();
    if !running.is_empty() {
        tracing::warn!(
            jobs = running.len(),
            "shutdown grace is over; interrupting running jobs"
        );
    }
    held.stop_all(StopReason::Shutdown);
}

/// The span of one attempt, named after the OpenTelemetry messaging convention.
fn process_span(task: &Task<ClaimedJob>) -> tracing::Span {
    let job = &task.args;
    tracing::info_span!(
        "process",
        otel.name = %format_args!("process {}", job.queue),
        otel.kind = "consumer",
        "messaging.system" = "longshore",
        "messaging.operation.type" = "process",
        "messaging.destination.name" = %job.queue,
        "job.id" = %job.id,
        "job.kind" = %job.kind,
        "job.attempt" = job.attempt,
    )
}
