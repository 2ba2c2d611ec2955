//! Group commit for enqueues: concurrent inserts are gathered and stored in one transaction.
//!
//! A commit waits for the disk; sixteen producers that each commit their own job wait for
//! sixteen flushes. The inserter hands whatever inserts are waiting to the store as one batch,
//! so they share one flush. A lone insert pays one channel hop.
//!
//! Every request carries a deadline, and its answer says exactly what happened: stored; not
//! stored (the database was known to be down, the deadline passed before the commit was sent,
//! or the transaction failed); or, only when the commit itself went unanswered, unconfirmed.
//! While the database is unreachable, waiting requests are refused at once instead of each
//! waiting out its own timeout behind the others.

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::health::Health;
use super::{Backend, KeyedResponse};
use crate::error::StoreError;
use crate::job::{Enqueued, NewJob};

/// Jobs stored in one transaction at most.
const MAX_BATCH: usize = 2000;

/// A batch that comes after the inserter sat idle this long wakes other processes from its
/// own statement: a lone enqueue's job then starts with no round trip after its commit. A
/// stream of enqueues leaves its wake-ups to the relay, which coalesces them to one
/// statement per 2 ms: a notifying commit costs about 0.1 ms more, and each notification
/// reaches every listener (a notifying commit each cost W3 about 5 %).
const QUIET: std::time::Duration = std::time::Duration::from_millis(2);

pub(super) struct Request {
    pub jobs: Vec<NewJob>,
    pub keyed: Option<KeyedResponse>,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Stored, StoreError>>,
}

/// Jobs to store in one transaction, with the idempotency responses that commit with them.
pub(crate) struct Batch<'a> {
    pub(crate) jobs: &'a [NewJob],
    /// Each keyed request's range of `jobs`.
    pub(crate) keyed: Vec<(Range<usize>, &'a KeyedResponse)>,
    /// The commit must be sent before it.
    pub(crate) deadline: Instant,
    /// The insert wakes other processes itself (on Postgres, a `NOTIFY` in its statement):
    /// a batch that ends a [`QUIET`] spell, which says why only those.
    pub(crate) tell_others: bool,
}

/// What a request stored, and whether its insert woke other processes itself.
pub(super) struct Stored {
    pub enqueued: Vec<Enqueued>,
    pub told_others: bool,
}

pub(super) fn start(backend: Backend, health: Arc<Health>) -> mpsc::Sender<Request> {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(run(backend, health, rx));
    tx
}

async fn run(backend: Backend, health: Arc<Health>, mut rx: mpsc::Receiver<Request>) {
    let mut inbox = Vec::new();
    let mut idle_since = Instant::now();
    let mut step_back = StepBack::default();
    while rx.recv_many(&mut inbox, 512).await > 0 {
        let tell_others = idle_since.elapsed() >= QUIET;
        let mut batch = Vec::new();
        let (mut size, mut answered) = (0, 0);
        for request in inbox.drain(..) {
            if request.deadline <= Instant::now() {
                let _ = request
                    .reply
                    .send(Err(StoreError::TimedOut { op: "insert jobs" }));
                continue;
            }
            if size > 0 && size + request.jobs.len() > MAX_BATCH {
                answered += batch.len();
                store(&backend, &health, std::mem::take(&mut batch), tell_others).await;
                size = 0;
            }
            size += request.jobs.len();
            batch.push(request);
        }
        if !batch.is_empty() {
            answered += batch.len();
            store(&backend, &health, batch, tell_others).await;
        }
        step_back.after(answered, &rx).await;
        // After the step: time spent behind other tasks is not time the inserter sat idle.
        idle_since = Instant::now();
    }
}

/// After a step back that gathered too little, how many batches of two or more requests go
/// without one.
const STEP_BACK_PROBE: u32 = 64;

/// Lets the producers a batch answered run before the next batch is taken, while that
/// gathers their next inserts into it. Producers in this process that enqueue one job after
/// another (sixteen tasks, say) otherwise split into two halves that alternate, eight to a
/// flush; with the step back all sixteen share each. Producers behind HTTP answer their
/// clients in the step and send nothing new in it: for them it only delays the next batch
/// (an API process would write its answers before the batch is sent instead of while it
/// flushes), so after a step that gathered under half of what it answered the inserter
/// goes straight on, trying again [`STEP_BACK_PROBE`] such batches later.
#[derive(Default)]
struct StepBack {
    skip: u32,
}

impl StepBack {
    async fn after(&mut self, answered: usize, rx: &mpsc::Receiver<Request>) {
        if answered < 2 {
            return;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        let waiting = rx.len();
        // The task wakes itself, so it goes to the back of its worker's run queue, behind the
        // tasks it just woke (tokio's `yield_now` waits for the worker to run out of work).
        let mut stepped = false;
        std::future::poll_fn(|cx| {
            if std::mem::replace(&mut stepped, true) {
                return std::task::Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        })
        .await;
        if rx.len().saturating_sub(waiting) * 2 < answered {
            self.skip = STEP_BACK_PROBE;
        }
    }
}

/// Stores the requests' jobs together and answers each request with its own results. If the
/// combined batch fails for a reason of its own (not the database being unreachable), each
/// request is tried alone, so one cannot fail the others.
async fn store(backend: &Backend, health: &Health, requests: Vec<Request>, tell_others: bool) {
    let result = match health.check() {
        Ok(()) => insert(backend, &requests, tell_others).await,
        Err(refused) => Err(refused),
    };
    health.record(&result);
    let stored = |enqueued| Stored {
        enqueued,
        told_others: tell_others,
    };
    match result {
        Ok(enqueued) => {
            let mut enqueued = enqueued.into_iter();
            for request in requests {
                let mine: Vec<Enqueued> = enqueued.by_ref().take(request.jobs.len()).collect();
                let _ = request.reply.send(Ok(stored(mine)));
            }
        }
        Err(error) if requests.len() > 1 && !error.is_unavailable() && !is_unconfirmed(&error) => {
            tracing::debug!(%error, "combined insert failed; inserting each request alone");
            for request in requests {
                let result = insert(backend, std::slice::from_ref(&request), tell_others).await;
                health.record(&result);
                let _ = request.reply.send(result.map(stored));
            }
        }
        Err(error) if requests.len() == 1 => {
            let request = requests.into_iter().next().expect("one request");
            let _ = request.reply.send(Err(error));
        }
        Err(error) => {
            for request in requests {
                let answer = same_for(&error, &request);
                let _ = request.reply.send(Err(answer));
            }
        }
    }
}

async fn insert(
    backend: &Backend,
    requests: &[Request],
    tell_others: bool,
) -> Result<Vec<Enqueued>, StoreError> {
    let owned: Vec<NewJob>;
    let jobs: &[NewJob] = if requests.len() == 1 {
        &requests[0].jobs
    } else {
        owned = requests
            .iter()
            .flat_map(|r| r.jobs.iter().cloned())
            .collect();
        &owned
    };
    let mut keyed = Vec::new();
    let mut start = 0;
    for request in requests {
        let end = start + request.jobs.len();
        if let Some(response) = &request.keyed {
            keyed.push((start..end, response));
        }
        start = end;
    }
    let deadline = requests
        .iter()
        .map(|r| r.deadline)
        .min()
        .unwrap_or_else(Instant::now);
    backend
        .insert(Batch {
            jobs,
            keyed,
            deadline,
            tell_others,
        })
        .await
}

fn is_unconfirmed(error: &StoreError) -> bool {
    matches!(error, StoreError::Unconfirmed { .. })
}

/// The failure of a batch that never committed (the database unreachable, the deadline
/// passed, or the commit unanswered), as it concerns one of its requests.
fn same_for(error: &StoreError, request: &Request) -> StoreError {
    match error {
        StoreError::Unconfirmed { .. } => StoreError::Unconfirmed {
            jobs: request.jobs.iter().map(|j| j.id).collect(),
        },
        StoreError::TimedOut { op } => StoreError::TimedOut { op },
        StoreError::Unavailable { reason } => StoreError::Unavailable { reason },
        _ => StoreError::Unavailable {
            reason: "the database connection failed before the commit; nothing was stored",
        },
    }
}
