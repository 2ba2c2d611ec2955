//! The pool: one apalis worker per queue, run by an apalis `Monitor`, each with the tower
//! stack around an attempt built here in one place (see [`Pool::run`]), and the background
//! roles (completer, heartbeat, rescuer, scheduler) beside them.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{Monitor, WorkerBuilder, WorkerBuilderExt};
use longshore_jobs::store::WorkerInfo;
use longshore_jobs::telemetry::WORKER_ID;
use longshore_jobs::{Client, ProcessId, Registry, Store, StoreError, WorkerId};
use tokio_util::sync::CancellationToken;

use crate::config::PoolConfig;
use crate::exec::ack::AckLayer;
use crate::exec::backend::{QueueBackend, Shared};
use crate::exec::completer::Completer;
use crate::exec::dispatch::Dispatch;
use crate::exec::held::{HeldAttempts, StopReason};
use crate::maintenance::heartbeat::Heartbeat;
use crate::maintenance::rescuer::Rescuer;
use crate::maintenance::scheduler::Scheduler;

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
    /// and returns: within the shutdown grace and the cancel grace, whatever the handlers do.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), PoolError> {
        let process = ProcessId::current();
        let (completer, completer_task) = Completer::start(self.store.clone(), self.held.clone());
        let workers = self.register_workers(&process, &completer).await?;
        let roles = self.start_roles(workers.iter().map(|w| w.worker.clone()).collect());
        let monitor = self.monitor(&workers, &completer);
        let queues: Vec<String> = self
            .config
            .queues
            .iter()
            .map(|(name, queue)| format!("{name}={}", queue.concurrency))
            .collect();
        tracing::info!(process = %process, queues = %queues.join(","), "pool started");
        let result = self.work_until(monitor, &shutdown).await;
        if tokio::time::timeout(FINAL_FLUSH, completer.flush())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: outcomes not stored in time; their jobs will be rescued");
        }
        roles.cancel();
        drop(workers);
        drop(completer);
        let _ = tokio::time::timeout(FINAL_FLUSH, completer_task).await;
        tracing::info!("pool stopped");
        result
    }

    /// Registers one worker per queue, each with what its backend shares across restarts.
    async fn register_workers(
        &self,
        process: &ProcessId,
        completer: &Completer,
    ) -> Result<Vec<Arc<Shared>>, PoolError> {
        let mut workers = Vec::new();
        for (queue, settings) in &self.config.queues {
            let worker = WorkerId::new(queue, process);
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
            workers.push(Arc::new(Shared {
                store: self.store.clone(),
                queue: queue.clone(),
                worker,
                concurrency: settings.concurrency,
                prefetch: settings.prefetch,
                lease: self.config.lease,
                poll_interval: self.config.poll_interval,
                idle_poll_interval: self.config.idle_poll_interval,
                notify: self.store.wakeups().queue(queue),
                completer: completer.clone(),
                held: self.held.clone(),
            }));
        }
        Ok(workers)
    }

    /// The apalis monitor of the workers, each running this tower stack around an attempt,
    /// outermost first: the ack layer (the span of the attempt, its metrics, and storing the
    /// outcome), the concurrency limit, and the dispatcher (runs the handler on a task of its own and
    /// decides the outcome). A worker that fails is restarted.
    fn monitor(&self, workers: &[Arc<Shared>], completer: &Completer) -> Monitor {
        let mut monitor = Monitor::new().should_restart(|worker, error| {
            tracing::error!({ WORKER_ID } = worker.name(), %error, "worker failed; restarting it");
            true
        });
        let client = Client::new(self.store.clone(), Arc::clone(&self.registry));
        for worker in workers {
            let (worker, client) = (Arc::clone(worker), client.clone());
            let (held, completer) = (self.held.clone(), completer.clone());
            let (grace, trace) = (self.config.cancel_grace, self.config.trace_attempts);
            monitor = monitor.register(move |_restarts| {
                let id = worker.worker.clone();
                WorkerBuilder::new(id.as_str())
                    .backend(QueueBackend::new(Arc::clone(&worker)))
                    .layer(AckLayer::new(
                        completer.clone(),
                        id.clone(),
                        held.clone(),
                        trace,
                    ))
                    .concurrency(worker.concurrency as usize)
                    .build(Dispatch::new(client.clone(), held.clone(), id, grace))
            });
        }
        monitor
    }

    /// Runs the monitor until `shutdown` and the drain after it. The monitor runs in a task
    /// of its own, so a handler that blocks a thread cannot hold up this one; past the grace
    /// and the cancel grace, whatever still runs is abandoned (its lease runs out and another
    /// process rescues it).
    async fn work_until(
        &self,
        monitor: Monitor,
        shutdown: &CancellationToken,
    ) -> Result<(), PoolError> {
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
        let limit = self.config.shutdown_grace + self.config.cancel_grace + ABANDON_AFTER;
        let mut monitor = tokio::spawn(monitor.run_with_signal(signal));
        let result = tokio::select! {
            joined = &mut monitor => match joined {
                Ok(result) => result.map_err(|e| PoolError::Monitor(e.to_string())),
                Err(error) => Err(PoolError::Monitor(error.to_string())),
            },
            () = after_shutdown(shutdown, limit) => {
                monitor.abort();
                let running: Vec<String> = self
                    .held
                    .running()
                    .iter()
                    .map(|(id, attempt)| format!("{id}#{attempt}"))
                    .collect();
                tracing::error!(
                    jobs = %running.join(","),
                    "shutdown: handlers did not stop within the grace periods; abandoning them \
                     (their leases run out and they are rescued)"
                );
                Ok(())
            }
        };
        grace.abort();
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
        let rescuer = Rescuer::new(self.store.clone(), config.rescue_interval, config.lease);
        tokio::spawn(rescuer.run(stop.clone()));
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
