//! Requests the routes cannot parse get the problem a domain error gets: 422 `invalid_field`,
//! each field at fault in `errors[]` with what it accepts, in plain words; and a method a
//! path does not have gets 405 with `Allow`.

use poem::http::Method;
use serde_json::{Value, json};

use crate::TestApi;

crate::per_backend!(
    crate::TestApi::new =>
    names_each_bad_query_parameter_with_what_it_accepts,
    names_each_bad_body_field_by_its_json_path,
    names_a_bad_header,
    answers_a_body_that_is_not_json_with_invalid_json,
    answers_a_method_the_path_lacks_with_405_and_allow,
);

/// The `errors[]` of a 422 `invalid_field` problem, as (field, message) pairs, after checking
/// that no framework text leaked into them.
#[track_caller]
fn field_errors(answer: &crate::Answer) -> Vec<(String, String)> {
    let body = answer.problem(422, "invalid_field");
    let text = body.to_string();
    for leak in [
        "occurred while parsing",
        "failed to parse",
        "Expected input type",
    ] {
        assert!(!text.contains(leak), "framework text in {text}");
    }
    body["errors"]
        .as_array()
        .expect("errors[]")
        .iter()
        .map(|e| {
            let text = |key: &str| e[key].as_str().unwrap_or_default().to_owned();
            (text("field"), text("message"))
        })
        .collect()
}

/// The message for `field`, failing when the answer does not name it.
#[track_caller]
fn message<'a>(errors: &'a [(String, String)], field: &str) -> &'a str {
    errors
        .iter()
        .find(|(f, _)| f == field)
        .map(|(_, m)| m.as_str())
        .unwrap_or_else(|| panic!("no error names {field}: {errors:?}"))
}

async fn names_each_bad_query_parameter_with_what_it_accepts(api: TestApi) {
    let state = field_errors(&api.get("/api/v1/jobs?state=failed").await);
    assert_eq!(state.len(), 1, "{state:?}");
    let listed = message(&state, "state");
    for allowed in [
        "scheduled",
        "available",
        "running",
        "retryable",
        "completed",
        "cancelled",
        "discarded",
    ] {
        assert!(listed.contains(allowed), "{listed}");
    }
    assert!(
        listed.contains("\"failed\""),
        "says what was sent: {listed}"
    );

    let after = field_errors(&api.get("/api/v1/jobs?created_after=yesterday").await);
    assert!(
        message(&after, "created_after").contains("RFC 3339"),
        "{after:?}"
    );
    let limit = field_errors(&api.get("/api/v1/jobs?limit=1000").await);
    assert!(
        message(&limit, "limit").contains("an integer from 1 to 500"),
        "{limit:?}"
    );
    let word = field_errors(&api.get("/api/v1/jobs?limit=many").await);
    assert!(message(&word, "limit").contains("an integer"), "{word:?}");

    // Every bad parameter, not only the first; the good ones are not named.
    let answer = api
        .get("/api/v1/jobs?state=completed&state=failed&queue=q&limit=0&created_before=soon")
        .await;
    let all = field_errors(&answer);
    let mut fields: Vec<&str> = all.iter().map(|(f, _)| f.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["created_before", "limit", "state"], "{all:?}");
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("limit"),
        "{}",
        answer.body
    );
    // Other routes alike.
    let events = field_errors(&api.get("/api/v1/events?limit=0").await);
    assert!(
        message(&events, "limit").contains("1 to 1000"),
        "{events:?}"
    );
}

async fn names_each_bad_body_field_by_its_json_path(api: TestApi) {
    let kindless = field_errors(&api.post("/api/v1/jobs", json!({"queue": "q"})).await);
    assert_eq!(kindless.len(), 1, "{kindless:?}");
    assert!(
        message(&kindless, "kind").starts_with("is required"),
        "{kindless:?}"
    );

    let many = field_errors(
        &api.post(
            "/api/v1/jobs",
            json!({
                "priority": "high",
                "run_at": "tomorrow",
                "unique": {"key": "", "scope": "forever"},
                "tags": ["ok", 7],
                "surprise": true,
            }),
        )
        .await,
    );
    let mut fields: Vec<&str> = many.iter().map(|(f, _)| f.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "kind",
            "priority",
            "run_at",
            "surprise",
            "tags[1]",
            "unique.key",
            "unique.scope"
        ],
        "{many:?}"
    );
    assert!(message(&many, "priority").contains("an integer"));
    assert!(message(&many, "unique.key").contains("1 to 500 characters"));
    assert!(message(&many, "unique.scope").contains("one of active, any"));
    assert!(
        message(&many, "surprise").contains("kind"),
        "lists the fields"
    );

    // A batch names the item.
    let batch = api
        .post(
            "/api/v1/jobs/batch",
            json!({"jobs": [{"kind": "noop"}, {"kind": "noop"}, {"kind": "noop", "priority": "x"}]}),
        )
        .await;
    let batch = field_errors(&batch);
    assert_eq!(batch.len(), 1, "{batch:?}");
    message(&batch, "jobs[2].priority");

    // Nested objects and maps of other routes alike.
    let operation = api
        .post(
            "/api/v1/operations",
            json!({"action": "retry", "filter": {"ids": ["nope"], "states": ["lost"], "args": {"a": 1}}}),
        )
        .await;
    let operation = field_errors(&operation);
    assert!(message(&operation, "filter.ids[0]").contains("a UUID"));
    assert!(message(&operation, "filter.states[0]").contains("one of scheduled"));
    assert!(message(&operation, "filter.args.a").contains("a string"));
    // An empty body where one is required names the body.
    let empty = api
        .cli
        .post("/api/v1/jobs")
        .content_type("application/json")
        .send()
        .await;
    assert_eq!(empty.0.status(), 422);
    // Nothing was stored by any of them.
    let page = api.get("/api/v1/jobs").await;
    assert_eq!(page.expect(200)["items"], json!([]));
}

async fn names_a_bad_header(api: TestApi) {
    let key = "k".repeat(201);
    let answer = api
        .call(
            Method::POST,
            "/api/v1/jobs",
            None,
            Some(json!({"kind": "noop", "priority": "high"})),
            &[("idempotency-key", &key)],
        )
        .await;
    let errors = field_errors(&answer);
    assert!(
        message(&errors, "Idempotency-Key").contains("at most 200 characters"),
        "{errors:?}"
    );
    message(&errors, "priority");
    assert_eq!(errors.len(), 2, "{errors:?}");
}

async fn answers_a_body_that_is_not_json_with_invalid_json(api: TestApi) {
    let answer = api
        .cli
        .post("/api/v1/jobs")
        .content_type("application/json")
        .body("{\"kind\": ")
        .send()
        .await;
    assert_eq!(answer.0.status(), 400);
    let body: Value = answer.0.into_body().into_json().await.unwrap();
    assert_eq!(body["code"], "invalid_json", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("line 1"),
        "says where: {body}"
    );
}

async fn answers_a_method_the_path_lacks_with_405_and_allow(api: TestApi) {
    let id = uuid::Uuid::now_v7();
    for (method, path, allow) in [
        (Method::PUT, "/api/v1/jobs".to_owned(), "GET, HEAD, POST"),
        (Method::GET, "/api/v1/jobs/batch".to_owned(), "POST"),
        (
            Method::PUT,
            format!("/api/v1/jobs/{id}"),
            "GET, HEAD, PATCH, DELETE",
        ),
        (Method::GET, format!("/api/v1/jobs/{id}/retry"), "POST"),
        (Method::DELETE, "/api/v1/sweeps/x/run".to_owned(), "POST"),
        (Method::POST, "/healthz".to_owned(), "GET, HEAD"),
    ] {
        let answer = api.call(method.clone(), &path, None, None, &[]).await;
        let body = answer.problem(405, "method_not_allowed");
        assert_eq!(
            answer.headers.get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}: {body}"
        );
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(allow),
            "{body}"
        );
    }
    // The methods it allows do answer.
    api.get("/api/v1/jobs").await.expect(200);
    api.call(Method::HEAD, "/api/v1/jobs", None, None, &[])
        .await
        .expect(200);
}
