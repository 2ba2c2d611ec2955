//! Hostile input: values no backend can store or read back, refused alike on both with a 422
//! naming the field and nothing stored; and a row that cannot be read (written by hand, or by
//! an older version) never drops a connection and can still be deleted.

use poem::http::Method;
use serde_json::{Value, json};

use crate::TestApi;

crate::per_backend!(
    crate::TestApi::new =>
    refuses_times_beyond_the_horizon_naming_the_field,
    refuses_nul_characters_anywhere_naming_the_field,
    refuses_oversized_metadata,
    answers_a_problem_for_a_row_it_cannot_read_and_still_deletes_it,
);

#[track_caller]
fn field(body: &Value) -> &str {
    body["errors"][0]["field"].as_str().unwrap_or_default()
}

async fn stored(api: &TestApi) -> i64 {
    api.store.count_by_state(None).await.unwrap().values().sum()
}

async fn refuses_times_beyond_the_horizon_naming_the_field(api: TestApi) {
    for delay in [
        json!(8_700_000_000_000_000_i64),
        json!(9_300_000_000_000_000_i64),
        json!(4_611_686_018_427_387_904_i64),
        json!(-1),
        json!(315_576_000_001_i64),
    ] {
        let answer = api
            .post("/api/v1/jobs", json!({ "kind": "noop", "delay_ms": delay }))
            .await;
        assert_eq!(field(answer.problem(422, "invalid_field")), "delay_ms");
    }
    for at in [
        "-0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2999-01-01T00:00:00Z",
    ] {
        let answer = api
            .post("/api/v1/jobs", json!({ "kind": "noop", "run_at": at }))
            .await;
        assert_eq!(
            field(answer.problem(422, "invalid_field")),
            "run_at",
            "{at}"
        );
    }
    let batch = api
        .post(
            "/api/v1/jobs/batch",
            json!({ "jobs": [{ "kind": "noop", "delay_ms": 9_300_000_000_000_000_i64 }] }),
        )
        .await;
    assert_eq!(
        batch.expect(200)["items"][0]["error"]["errors"][0]["field"],
        "delay_ms"
    );
    assert_eq!(stored(&api).await, 0, "nothing was stored");

    // Ten years ahead is fine, and the job reads back.
    let far = api
        .post(
            "/api/v1/jobs",
            json!({ "kind": "noop", "delay_ms": 315_360_000_000_i64 }),
        )
        .await;
    let id = far.expect(201)["id"].as_str().unwrap().to_owned();
    api.get(&format!("/api/v1/jobs/{id}")).await.expect(200);
    api.get("/api/v1/jobs").await.expect(200);
    let edit = api
        .call(
            Method::PATCH,
            &format!("/api/v1/jobs/{id}"),
            None,
            Some(json!({ "run_at": "+262000-01-01T00:00:00Z" })),
            &[],
        )
        .await;
    // A year chrono cannot parse is refused at parsing; one it can, at the horizon.
    assert!(matches!(edit.status.as_u16(), 400 | 422), "{}", edit.body);
    let edit = api
        .call(
            Method::PATCH,
            &format!("/api/v1/jobs/{id}"),
            None,
            Some(json!({ "run_at": "9999-01-01T00:00:00Z" })),
            &[],
        )
        .await;
    assert_eq!(field(edit.problem(422, "invalid_field")), "run_at");
}

async fn refuses_nul_characters_anywhere_naming_the_field(api: TestApi) {
    let cases = [
        (
            json!({ "kind": "noop", "args": { "x": "a\u{0}b" } }),
            "args.x",
        ),
        (
            json!({ "kind": "noop", "args": { "a\u{0}": 1 } }),
            "args.a\u{0}",
        ),
        (
            json!({ "kind": "noop", "args": { "l": [1, "\u{0}"] } }),
            "args.l[1]",
        ),
        (json!({ "kind": "noop", "tags": ["ok", "t\u{0}"] }), "tags"),
        (
            json!({ "kind": "noop", "metadata": { "k\u{0}": "v" } }),
            "metadata.k\u{0}",
        ),
        (
            json!({ "kind": "noop", "unique": { "key": "k\u{0}" } }),
            "unique.key",
        ),
    ];
    for (body, expected) in cases {
        let answer = api.post("/api/v1/jobs", body.clone()).await;
        assert_eq!(
            field(answer.problem(422, "invalid_field")),
            expected,
            "{body}"
        );
    }
    assert_eq!(stored(&api).await, 0, "nothing was stored");
    for (query, expected) in [
        ("queue=a%00b", "queue"),
        ("kind=a%00b", "kind"),
        ("tag=a%00b", "tag"),
        ("args.x=a%00b", "args.x"),
    ] {
        let answer = api.get(&format!("/api/v1/jobs?{query}")).await;
        assert_eq!(
            field(answer.problem(422, "invalid_field")),
            expected,
            "{query}"
        );
    }
    let op = api
        .post(
            "/api/v1/operations",
            json!({ "action": "retry", "dry_run": true, "filter": {
                "queue": "a\u{0}", "created_after": "2026-01-01T00:00:00Z",
                "created_before": "2027-01-01T00:00:00Z" } }),
        )
        .await;
    assert_eq!(field(op.problem(422, "invalid_field")), "filter.queue");
}

async fn refuses_oversized_metadata(api: TestApi) {
    let big = "x".repeat(70 * 1024);
    let answer = api
        .post(
            "/api/v1/jobs",
            json!({ "kind": "noop", "metadata": { "blob": big } }),
        )
        .await;
    assert_eq!(field(answer.problem(413, "too_large")), "metadata");
    assert_eq!(stored(&api).await, 0);
}

async fn answers_a_problem_for_a_row_it_cannot_read_and_still_deletes_it(api: TestApi) {
    let id = api
        .post(
            "/api/v1/jobs",
            json!({ "kind": "noop", "delay_ms": 60_000 }),
        )
        .await;
    let id = id.expect(201)["id"].as_str().unwrap().to_owned();
    // What a hand-written UPDATE (or an older version without the horizon) can leave behind:
    // a time no reader can represent.
    let (pg, sqlite) = (
        "UPDATE jobs SET created_at = 'infinity' WHERE id = $1::uuid",
        "UPDATE jobs SET created_at = -9221575887916830196 WHERE id = unhex(replace(?1, '-', ''))",
    );
    let sql = if api.url.starts_with("sqlite") {
        sqlite
    } else {
        pg
    };
    assert_eq!(longshore_testkit::execute(&api.url, sql, &[&id]).await, 1);
    api.get("/api/v1/jobs").await.problem(500, "corrupt_row");
    api.get(&format!("/api/v1/jobs/{id}"))
        .await
        .problem(500, "corrupt_row");
    api.call(
        Method::DELETE,
        &format!("/api/v1/jobs/{id}"),
        None,
        None,
        &[],
    )
    .await
    .expect(204);
    api.get("/api/v1/jobs").await.expect(200);
}
