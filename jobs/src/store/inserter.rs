//! Group commit for enqueues: concurrent inserts are gathered and stored in one transaction.
//!
//! A commit waits for the disk; sixteen producers that each commit their own job wait for
//! sixteen flushes. The inserter hands whatever inserts are waiting to the store as one batch,
//! so they share one flush. A lone insert pays one channel hop.

use tokio::sync::{mpsc, oneshot};

use super::Backend;
use crate::error::StoreError;
use crate::job::{Enqueued, NewJob};

/// Jobs stored in one transaction at most.
const MAX_BATCH: usize = 2000;

pub(super) struct Request {
    pub jobs: Vec<NewJob>,
    pub reply: oneshot::Sender<Result<Vec<Enqueued>, StoreError>>,
}

pub(super) fn start(backend: Backend) -> mpsc::Sender<Request> {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(run(backend, rx));
    tx
}

async fn run(backend: Backend, mut rx: mpsc::Receiver<Request>) {
    let mut inbox = Vec::new();
    while rx.recv_many(&mut inbox, 512).await > 0 {
        let mut batch = Vec::new();
        let mut size = 0;
        for request in inbox.drain(..) {
            if size > 0 && size + request.jobs.len() > MAX_BATCH {
                store(&backend, std::mem::take(&mut batch)).await;
                size = 0;
            }
            size += request.jobs.len();
            batch.push(request);
        }
        store(&backend, batch).await;
    }
}

/// Stores the requests' jobs together and answers each request with its own results. If the
/// combined batch fails, each request is tried alone, so one cannot fail the others.
async fn store(backend: &Backend, requests: Vec<Request>) {
    if requests.len() == 1 {
        let request = requests.into_iter().next().expect("one request");
        let result = backend.insert(&request.jobs).await;
        let _ = request.reply.send(result);
        return;
    }
    let jobs: Vec<NewJob> = requests
        .iter()
        .flat_map(|r| r.jobs.iter().cloned())
        .collect();
    match backend.insert(&jobs).await {
        Ok(enqueued) => {
            let mut enqueued = enqueued.into_iter();
            for request in requests {
                let mine: Vec<Enqueued> = enqueued.by_ref().take(request.jobs.len()).collect();
                let _ = request.reply.send(Ok(mine));
            }
        }
        Err(error) => {
            tracing::debug!(%error, "combined insert failed; inserting each request alone");
            for request in requests {
                let result = backend.insert(&request.jobs).await;
                let _ = request.reply.send(result);
            }
        }
    }
}
