//! An `Idempotency-Key`'s answer commits with the jobs it reports: when recording it fails,
//! nothing is stored and the client is told so; a retry then stores exactly one job.

use poem::http::Method;
use serde_json::json;

use crate::TestApi;

crate::per_backend!(crate::TestApi::new => a_key_whose_answer_cannot_be_recorded_stores_no_job);

async fn a_key_whose_answer_cannot_be_recorded_stores_no_job(api: TestApi) {
    let postgres = !api.url.starts_with("sqlite");
    // A fault in the statement that records the key's answer, after the jobs' insert ran.
    let inject: &[&str] = if postgres {
        &[
            "CREATE FUNCTION refuse_answer() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'injected'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_answer BEFORE INSERT OR UPDATE ON idempotency_keys \
             FOR EACH ROW WHEN (NEW.status IS NOT NULL) EXECUTE FUNCTION refuse_answer()",
        ]
    } else {
        &[
            "CREATE TRIGGER refuse_update BEFORE UPDATE ON idempotency_keys \
             WHEN NEW.status IS NOT NULL BEGIN SELECT RAISE(ABORT, 'injected'); END",
            "CREATE TRIGGER refuse_insert BEFORE INSERT ON idempotency_keys \
             WHEN NEW.status IS NOT NULL BEGIN SELECT RAISE(ABORT, 'injected'); END",
        ]
    };
    for sql in inject {
        longshore_testkit::execute(&api.url, sql, &[]).await;
    }
    let body = json!({ "kind": "noop", "queue": "idem", "delay_ms": 60_000 });
    let headers = [("idempotency-key", "k1")];
    for path in ["/api/v1/jobs", "/api/v1/jobs/batch"] {
        let body = if path.ends_with("batch") {
            json!({ "jobs": [body.clone(), body.clone()] })
        } else {
            body.clone()
        };
        let key = [("idempotency-key", path)];
        let refused = api.call(Method::POST, path, None, Some(body), &key).await;
        assert!(
            refused.status.is_server_error(),
            "{path}: {} {}",
            refused.status,
            refused.body
        );
        let counts = api.store.count_by_state(Some("idem")).await.unwrap();
        assert!(counts.is_empty(), "{path}: nothing stored, got {counts:?}");
    }
    let drop: &[&str] = if postgres {
        &["DROP TRIGGER refuse_answer ON idempotency_keys"]
    } else {
        &["DROP TRIGGER refuse_update", "DROP TRIGGER refuse_insert"]
    };
    for sql in drop {
        longshore_testkit::execute(&api.url, sql, &[]).await;
    }
    // The key was freed: the retry runs, and its retries replay it.
    let first = api
        .call(
            Method::POST,
            "/api/v1/jobs",
            None,
            Some(body.clone()),
            &headers,
        )
        .await;
    let id = first.expect(201)["id"].clone();
    let again = api
        .call(
            Method::POST,
            "/api/v1/jobs",
            None,
            Some(body.clone()),
            &headers,
        )
        .await;
    assert_eq!(again.expect(201)["id"], id, "replayed");
    let counts = api.store.count_by_state(Some("idem")).await.unwrap();
    assert_eq!(
        counts.values().sum::<i64>(),
        1,
        "exactly one job: {counts:?}"
    );
}
