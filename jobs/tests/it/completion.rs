//! Fencing: an outcome counts only from the worker holding the current attempt.

use std::time::Duration;

use longshore_jobs::{Completion, JobState, Outcome, WorkerId};
use serde_json::json;

use crate::support::{TestDb, client, enqueue};

crate::per_backend!(
    crate::support::db =>
    ignores_a_late_ack_from_a_superseded_attempt,
);

async fn ignores_a_late_ack_from_a_superseded_attempt(db: TestDb) {
    let client = client(&db);
    let id = enqueue(&client, "noop", json!({})).await;
    let zombie = WorkerId("default@zombie".into());
    let claimed = db
        .store
        .claim("default", &zombie, 1, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(claimed[0].attempt, 1);
    // The zombie's lease runs out; the rescuer hands the job on; another worker claims it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rescued = db.store.rescue_expired(10).await.unwrap();
    assert_eq!(rescued.len(), 1);
    let live = WorkerId("default@live".into());
    let again = db
        .store
        .claim("default", &live, 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again[0].attempt, 2);

    let late = Completion {
        lease: longshore_jobs::Lease {
            job: id,
            attempt: 1,
            worker: zombie,
        },
        queue: "default".into(),
        outcome: Outcome::Completed {
            result: Some(json!("stale")),
        },
    };
    assert!(db.store.complete(&[late]).await.unwrap().is_empty());
    let job = db.store.job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempt, job.result),
        (JobState::Running, 2, None)
    );
    assert_eq!(job.locked_by.as_deref(), Some("default@live"));

    let current = Completion {
        lease: longshore_jobs::Lease {
            job: id,
            attempt: 2,
            worker: live,
        },
        queue: "default".into(),
        outcome: Outcome::Completed {
            result: Some(json!("fresh")),
        },
    };
    assert_eq!(db.store.complete(&[current]).await.unwrap(), [id]);
    let job = db.store.job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.result),
        (JobState::Completed, Some(json!("fresh")))
    );
}
