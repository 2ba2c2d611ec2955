//! Bad input is refused at enqueue with an error naming the field, and stores nothing.

use longshore_jobs::{EnqueueError, EnqueueRequest};
use serde_json::json;

use crate::conformance;
use crate::support::{TestDb, client, registry};

conformance!(
    refuses_bad_enqueues_naming_the_field,
    answers_each_item_of_a_batch
);

async fn refuses_bad_enqueues_naming_the_field(db: TestDb) {
    let client = client(&db, registry());
    let unknown = client
        .enqueue(EnqueueRequest::new("no.such.kind", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, EnqueueError::UnknownKind(ref k) if k == "no.such.kind"),
        "{unknown}"
    );
    let cases = [
        (
            EnqueueRequest::new("sleep", json!({ "ms": "soon" })),
            "args",
        ),
        (
            EnqueueRequest::new("sleep", json!({ "ms": 5, "extra": 1 })),
            "args",
        ),
        (
            EnqueueRequest {
                delay_ms: Some(-5),
                ..EnqueueRequest::new("noop", json!({}))
            },
            "delay_ms",
        ),
        (
            EnqueueRequest {
                max_attempts: Some(0),
                ..EnqueueRequest::new("noop", json!({}))
            },
            "max_attempts",
        ),
        (
            EnqueueRequest {
                priority: Some(10),
                ..EnqueueRequest::new("noop", json!({}))
            },
            "priority",
        ),
        (
            EnqueueRequest {
                queue: Some("bad queue;".into()),
                ..EnqueueRequest::new("noop", json!({}))
            },
            "queue",
        ),
        (
            EnqueueRequest {
                metadata: Some(json!([1])),
                ..EnqueueRequest::new("noop", json!({}))
            },
            "metadata",
        ),
        (
            EnqueueRequest::new("noop", json!({ "pad": "x".repeat(300 * 1024) })),
            "args",
        ),
    ];
    for (request, field) in cases {
        match client.enqueue(request).await.unwrap_err() {
            EnqueueError::Invalid {
                field: got,
                message,
            }
            | EnqueueError::TooLarge {
                field: got,
                message,
            } => {
                assert_eq!(got, field, "{message}");
                assert!(!message.is_empty());
            }
            other => panic!("expected invalid {field}, got {other}"),
        }
    }
    assert!(
        db.store.count_by_state(None).await.unwrap().is_empty(),
        "nothing was stored"
    );
}

async fn answers_each_item_of_a_batch(db: TestDb) {
    let client = client(&db, registry());
    let results = client
        .enqueue_many(vec![
            EnqueueRequest::new("noop", json!({})),
            EnqueueRequest::new("nope", json!({})),
            EnqueueRequest::new("sleep", json!({ "ms": 1 })),
        ])
        .await
        .unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(results[1], Err(EnqueueError::UnknownKind(_))));
    let counts = db.store.count_by_state(None).await.unwrap();
    assert_eq!(counts.values().sum::<i64>(), 2);
}
