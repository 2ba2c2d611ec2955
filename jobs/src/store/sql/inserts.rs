//! What every enqueue shares on both backends: one transaction for the jobs, their events and
//! their idempotency answers, a commit sent only before the deadline, and an honest answer
//! when it is not confirmed. The rows themselves are each backend's (`insert_on`), and so is
//! the batch with no key of either kind (`insert_alone`: one statement on Postgres).

use super::dialect::Backend;
use super::{idempotency, jobs::save_progress_on};
use crate::error::{StoreError, query};
use crate::job::{Enqueued, Lease, NewJob};
use crate::store::inserter::Batch;

impl Backend {
    /// Stores a batch in one transaction with its idempotency answers. A deadline that passes
    /// before the commit is sent leaves nothing stored ([`StoreError::TimedOut`]); a commit
    /// that goes unanswered is [`StoreError::Unconfirmed`].
    pub(crate) async fn insert(&self, batch: Batch<'_>) -> Result<Vec<Enqueued>, StoreError> {
        if batch.keyed.is_empty() && batch.jobs.iter().all(|j| j.unique.is_none()) {
            return self.insert_alone(batch).await;
        }
        self.insert_in_transaction(batch).await
    }

    /// [`Backend::insert`] as one transaction.
    pub(crate) async fn insert_in_transaction(
        &self,
        batch: Batch<'_>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let staged = async {
            let mut tx = self.write("insert jobs").await?;
            let enqueued = self
                .insert_on(&mut tx, batch.jobs, batch.tell_others)
                .await?;
            for (range, keyed) in &batch.keyed {
                let (status, body) = (keyed.render)(&enqueued[range.clone()]);
                idempotency::record(&mut *tx, keyed, status, &body).await?;
            }
            Ok::<_, StoreError>((tx, enqueued))
        };
        let (tx, enqueued) = tokio::time::timeout_at(batch.deadline, staged)
            .await
            .map_err(|_| StoreError::TimedOut { op: "insert jobs" })??;
        match tokio::time::timeout_at(batch.deadline, tx.commit()).await {
            Ok(Ok(())) => Ok(enqueued),
            // The database answered: it did not commit.
            Ok(Err(error @ sqlx::Error::Database(_))) => Err(StoreError::Query {
                op: "insert jobs",
                error,
            }),
            Ok(Err(_)) | Err(_) => Err(StoreError::Unconfirmed {
                jobs: batch.jobs.iter().map(|j| j.id).collect(),
            }),
        }
    }

    /// Stores `jobs` and the progress of the job `lease` holds in one transaction, while it
    /// holds; `None` (and nothing stored) when it does not.
    pub(crate) async fn insert_with_progress(
        &self,
        jobs: &[NewJob],
        lease: &Lease,
        progress: &serde_json::Value,
    ) -> Result<Option<Vec<Enqueued>>, StoreError> {
        let mut tx = self.write("insert jobs").await?;
        if !save_progress_on(&mut *tx, lease, progress).await? {
            return Ok(None);
        }
        let enqueued = self.insert_on(&mut tx, jobs, true).await?;
        tx.commit().await.map_err(query("insert jobs"))?;
        Ok(Some(enqueued))
    }
}
