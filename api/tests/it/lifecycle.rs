//! `/lifecycle-events` and `/ingesters`: events checked field by field, one job per event id,
//! and `/jobs?unique_key=` answering which job an event became, whatever the key holds.

use serde_json::{Value, json};

use crate::TestApi;

crate::per_backend!(
    crate::TestApi::new =>
    takes_an_event_once_and_names_each_bad_field,
    finds_the_job_of_a_key_and_nothing_for_a_hostile_one,
);

fn event(id: &str) -> Value {
    json!({ "event_id": id, "event_type": "user.deleted", "user_id": "42",
            "occurred_at_ms": 1_764_590_000_000_i64, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736" })
}

async fn takes_an_event_once_and_names_each_bad_field(api: TestApi) {
    let first = api
        .post("/api/v1/lifecycle-events", event("e1"))
        .await
        .expect(201)
        .clone();
    let again = api
        .post("/api/v1/lifecycle-events", event("e1"))
        .await
        .expect(201)
        .clone();
    assert_eq!(
        (first["duplicate"].clone(), again["duplicate"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(first["job_id"], again["job_id"]);
    let job = api
        .get(&format!(
            "/api/v1/jobs/{}",
            first["job_id"].as_str().unwrap()
        ))
        .await;
    let job = job.expect(200);
    assert_eq!(job["kind"], "lifecycle");
    assert_eq!(job["sequence"], "user:42", "a user's events run in order");
    assert_eq!(job["unique_key"], "lifecycle:e1");
    assert!(
        job["metadata"]["traceparent"]
            .as_str()
            .unwrap()
            .contains("4bf92f3577b34da6a3ce929d0e0e4736")
    );

    let bad = |field: &str, value: Value| {
        let mut body = event("e2");
        body[field] = value;
        body
    };
    for (body, field) in [
        (bad("occurred_at_ms", json!(0)), "occurred_at_ms"),
        (bad("occurred_at_ms", json!(i64::MAX)), "occurred_at_ms"),
        (bad("event_type", json!("user.renamed")), "event_type"),
        (
            bad("event_type", json!("user deleted; DROP TABLE jobs")),
            "event_type",
        ),
        (bad("user_id", json!("a\u{0}b")), "user_id"),
        (bad("user_id", json!("x".repeat(201))), "user_id"),
        (bad("event_id", json!("")), "event_id"),
        (
            bad("trace_id", json!("00000000000000000000000000000000")),
            "trace_id",
        ),
    ] {
        let answer = api.post("/api/v1/lifecycle-events", body).await;
        let problem = answer.problem(422, "invalid_field");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let batch = json!({ "events": [event("b1"), bad("user_id", json!("")), event("b3"), bad("occurred_at_ms", json!(-5))] });
    let problem = api.post("/api/v1/lifecycle-events/batch", batch).await;
    let problem = problem.problem(422, "invalid_field").clone();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["events[1].user_id", "events[3].occurred_at_ms"]);
    let too_many =
        json!({ "events": (0..1001).map(|i| event(&format!("m{i}"))).collect::<Vec<_>>() });
    api.post("/api/v1/lifecycle-events/batch", too_many)
        .await
        .problem(422, "invalid_field");
    // Nothing of the refused requests was stored: only e1's job exists.
    let page = api.get("/api/v1/jobs?kind=lifecycle").await;
    assert_eq!(page.expect(200)["items"].as_array().unwrap().len(), 1);
    let batch = json!({ "events": [event("b1"), event("b2"), event("e1")] });
    let stored = api
        .post("/api/v1/lifecycle-events/batch", batch)
        .await
        .expect(200)
        .clone();
    let duplicates: Vec<bool> = stored["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["duplicate"].as_bool().unwrap())
        .collect();
    assert_eq!(duplicates, [false, false, true]);
}

async fn finds_the_job_of_a_key_and_nothing_for_a_hostile_one(api: TestApi) {
    let made = api
        .post("/api/v1/lifecycle-events", event("k1"))
        .await
        .expect(201)
        .clone();
    let found = api.get("/api/v1/jobs?unique_key=lifecycle%3Ak1").await;
    let items = found.expect(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], made["job_id"]);
    for hostile in ["lifecycle%3Ak1'%20OR%20'1'%3D'1", "%25", "lifecycle%3A%25"] {
        let none = api.get(&format!("/api/v1/jobs?unique_key={hostile}")).await;
        assert!(
            none.expect(200)["items"].as_array().unwrap().is_empty(),
            "{hostile}"
        );
    }
    api.get("/api/v1/jobs?unique_key=a%00b")
        .await
        .problem(422, "invalid_field");
    let long = api
        .get(&format!("/api/v1/jobs?unique_key={}", "k".repeat(600)))
        .await;
    assert_eq!(
        long.problem(422, "invalid_field")["errors"][0]["field"],
        "unique_key"
    );
    let ingesters = api.get("/api/v1/ingesters").await;
    assert_eq!(ingesters.expect(200)["items"], json!([]));
}
