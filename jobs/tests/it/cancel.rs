//! Cancelling a waiting job.

use std::time::Duration;

use longshore_jobs::store::CancelOutcome;
use longshore_jobs::{EnqueueRequest, JobState, StoreError, WorkerId};
use serde_json::json;

use crate::support::{TestDb, client};

crate::per_backend!(
    crate::support::db =>
    cancels_a_waiting_job_at_once,
);

async fn cancels_a_waiting_job_at_once(db: TestDb) {
    let client = client(&db);
    let request = EnqueueRequest {
        delay_ms: Some(60_000),
        ..EnqueueRequest::new("noop", json!({}))
    };
    let enqueued = client.enqueue(request).await.unwrap();
    assert_eq!(enqueued.state, JobState::Scheduled);
    assert_eq!(
        db.store.cancel(enqueued.id).await.unwrap(),
        CancelOutcome::Cancelled
    );
    let job = db.store.job(enqueued.id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    assert!(job.finished_at.is_some());
    // Cancelling again is refused: a finished job stays finished.
    let again = db.store.cancel(enqueued.id).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict { .. }), "{again}");
    let worker = WorkerId("default@w".into());
    assert!(
        db.store
            .claim("default", &worker, 10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
}
