//! Bulk operations run in the background of the API process that accepted them, under a
//! lease: the process renews it while the operation runs, and if the process dies, another
//! API process (or this one, restarted) takes the operation over and resumes it where its
//! progress says. An operation therefore ends `completed` or `failed`, never stays `running`.

use std::time::Duration;

use chrono::Utc;
use longshore_jobs::admin::{BulkAction, Operation};
use longshore_jobs::{ProcessId, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// Jobs acted on between two progress records.
const BATCH: u32 = 200;
/// How often a running operation's lease is renewed.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// An operation whose lease was not renewed for this long is taken over.
pub const STALE: Duration = Duration::from_secs(30);
/// How often an API process looks for operations to take over.
const TAKE_OVER_EVERY: Duration = Duration::from_secs(10);

/// Runs bulk operations and takes over those whose process died. Cheap to clone.
#[derive(Clone)]
pub struct BulkRunner {
    store: Store,
    owner: String,
}

impl BulkRunner {
    /// A runner over `store`, owning what it runs as this process.
    pub fn new(store: Store) -> Self {
        BulkRunner {
            store,
            owner: format!("api@{}", ProcessId::current()),
        }
    }

    /// Whom the operations this runner starts belong to.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs `op` (owned by this runner) in the background to its end.
    pub fn start(&self, op: Operation) {
        let runner = self.clone();
        tokio::spawn(async move { runner.run_to_end(op).await });
    }

    /// Takes over the operations whose owner stopped renewing their lease for `stale`, and
    /// starts them; returns how many.
    pub async fn run_once(&self, stale: Duration) -> Result<usize, StoreError> {
        let taken = self.store.take_over_operations(&self.owner, stale).await?;
        for op in &taken {
            tracing::warn!(
                operation = %op.id, done = op.done, "resuming a bulk operation whose process stopped"
            );
        }
        let count = taken.len();
        for op in taken {
            self.start(op);
        }
        Ok(count)
    }

    /// Looks for operations to take over every ten seconds until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(TAKE_OVER_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stop.run_until_cancelled(ticker.tick()).await.is_some() {
            if let Err(error) = self.run_once(STALE).await {
                tracing::debug!(%error, "cannot look for bulk operations to take over");
            }
        }
    }

    async fn run_to_end(&self, mut op: Operation) {
        let lease = self.renew_while_running(op.id);
        let result = run_batches(&self.store, &mut op).await;
        lease.cancel();
        op.finished_at = Some(Utc::now());
        match result {
            Ok(true) => op.state = "completed".to_owned(),
            Ok(false) => return, // taken over: the new owner records the end
            Err(error) => {
                op.state = "failed".to_owned();
                op.error = Some(error.to_string());
            }
        }
        if let Err(error) = self.store.update_operation(&op).await {
            // The lease runs out and another process finishes the operation.
            tracing::warn!(%error, operation = %op.id, "cannot record the end of an operation");
        }
    }

    /// Renews the operation's lease until the returned token is cancelled.
    fn renew_while_running(&self, id: uuid::Uuid) -> CancellationToken {
        let stop = CancellationToken::new();
        let (store, owner, until) = (self.store.clone(), self.owner.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(HEARTBEAT);
            while until.run_until_cancelled(ticker.tick()).await.is_some() {
                match store.touch_operation(id, &owner).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => tracing::debug!(%error, "cannot renew an operation's lease"),
                }
            }
        });
        stop
    }
}

/// Acts on the matching jobs batch by batch, newest first, from where the progress says;
/// records progress after every batch. `Ok(false)` when another process took it over.
async fn run_batches(store: &Store, op: &mut Operation) -> Result<bool, StoreError> {
    loop {
        let ids = store.job_ids(&op.filter, op.resume_before, BATCH).await?;
        let Some(last) = ids.last().copied() else {
            return Ok(true);
        };
        for id in &ids {
            let acted = match op.action {
                BulkAction::Retry => store.retry(*id).await.map(|_| ()),
                BulkAction::Cancel => store.cancel(*id).await.map(|_| ()),
                BulkAction::Delete => store.delete_job(*id).await,
            };
            match acted {
                Ok(()) => op.done += 1,
                Err(StoreError::Conflict { .. } | StoreError::JobNotFound(_)) => op.skipped += 1,
                Err(error) => return Err(error),
            }
        }
        op.resume_before = Some(last);
        if !store.update_operation(op).await? {
            return Ok(false);
        }
    }
}
