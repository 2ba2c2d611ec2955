//! The completer: records the end of attempts in batches.
//!
//! Workers hand each outcome over and go on to the next job; one task stores whatever has
//! gathered in a single round trip. A crash before a batch is stored loses only the record:
//! the lease runs out, the job is rescued and runs again (at-least-once). Once a batch is
//! stored, or given up, its attempts are no longer held: the heartbeat stops renewing them,
//! so an outcome that never reached the database (or that a crashed server forgot) ends in
//! a rescue, never in a job that stays `running`.

use std::time::Duration;

use longshore_jobs::{Completion, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::exec::held::HeldAttempts;

/// The most outcomes stored in one round trip.
const BATCH: usize = 1000;
/// Outcomes waiting to be stored before workers wait for room.
const BACKLOG: usize = 8192;
/// Attempts to store a batch before it is given up to the rescuer.
const TRIES: u32 = 20;

enum Msg {
    Done(Completion),
    Flush(oneshot::Sender<()>),
}

/// A handle to the completer. Cheap to clone.
#[derive(Clone)]
pub struct Completer {
    tx: mpsc::Sender<Msg>,
}

impl Completer {
    /// Starts the completer's task. It ends once every handle is dropped and the backlog is
    /// stored.
    pub fn start(store: Store, held: HeldAttempts) -> (Completer, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let task = tokio::spawn(run(store, held, rx));
        (Completer { tx }, task)
    }

    /// Hands an outcome over; waits only when the backlog is full.
    pub async fn submit(&self, completion: Completion) {
        if self.tx.send(Msg::Done(completion)).await.is_err() {
            tracing::error!("completer stopped; the outcome is lost and the job will be rescued");
        }
    }

    /// Waits until every outcome handed over before this call has been stored (or given up).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(store: Store, held: HeldAttempts, mut rx: mpsc::Receiver<Msg>) {
    let mut inbox = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut inbox, BATCH).await > 0 {
        let mut batch = Vec::with_capacity(inbox.len());
        let mut waiters = Vec::new();
        for msg in inbox.drain(..) {
            match msg {
                Msg::Done(completion) => batch.push(completion),
                Msg::Flush(waiter) => waiters.push(waiter),
            }
        }
        store_batch(&store, &batch).await;
        held.forget(batch.iter().map(|c| (c.lease.job, c.lease.attempt)));
        for waiter in waiters {
            let _ = waiter.send(());
        }
    }
}

async fn store_batch(store: &Store, batch: &[Completion]) {
    if batch.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=TRIES {
        match store.complete(batch).await {
            Ok(accepted) => {
                let fenced = batch.len() - accepted.len();
                if fenced > 0 {
                    tracing::warn!(
                        fenced,
                        "outcomes ignored: their workers no longer held the jobs"
                    );
                }
                return;
            }
            Err(error) if attempt < TRIES => {
                tracing::warn!(%error, attempt, "cannot store outcomes; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                tracing::error!(%error, jobs = batch.len(), "giving up storing outcomes; the jobs will be rescued");
            }
        }
    }
}
