//! What the dashboard reads besides the resources: failures grouped by fingerprint (and a
//! group's bulk action), throughput per minute, who a token is, and the error-text filter —
//! each with its refusals.

use poem::http::Method;
use serde_json::{Value, json};

use longshore_jobs::admin::Scope;
use longshore_jobs::{Completion, ErrorReport, Outcome, WorkerId};

use crate::TestApi;
use longshore_api::fingerprint::{PATTERN_CHARS, fingerprint_of, normalise};

crate::per_backend!(
    crate::TestApi::new =>
    groups_failures_by_fingerprint_and_retries_one_group,
    counts_outcomes_per_minute_from_the_events,
    says_who_a_token_is,
    filters_by_error_text_literally,
    lists_the_gateways_connected_to_the_push_stream,
    serves_the_dashboard_under_a_strict_policy,
);

async fn lists_the_gateways_connected_to_the_push_stream(api: TestApi) {
    use futures::StreamExt;
    let none = api.get("/api/v1/push/gateways").await;
    assert_eq!(none.expect(200)["items"], json!([]));
    let response = api
        .cli
        .get("/api/v1/push/stream?partition=1/4&kind=mail&kind=chat")
        .send()
        .await;
    response.assert_status_is_ok();
    let mut body = response.0.into_body().into_bytes_stream();
    let ready = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&ready).contains("event: ready"));
    let listed = api.get("/api/v1/push/gateways").await;
    let items = listed.expect(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["actor"], "local");
    assert_eq!(items[0]["partition"], "1/4");
    assert_eq!(items[0]["kinds"], json!(["chat", "mail"]));
    // A push the gateway is sent moves its position.
    let user = (0..1000)
        .map(|i| format!("u{i}"))
        .find(|u| longshore_jobs::push::partition_of(u, 4) == 1)
        .unwrap();
    let pushed = api
        .post(
            "/api/v1/push",
            json!({"user_id": user, "kind": "mail", "payload": {"n": 1}}),
        )
        .await;
    let position = pushed.expect(201)["position"].as_i64().unwrap();
    loop {
        let chunk = body.next().await.unwrap().unwrap();
        if String::from_utf8_lossy(&chunk).contains("event: push") {
            break;
        }
    }
    let moved = api.get("/api/v1/push/gateways").await;
    assert_eq!(moved.expect(200)["items"][0]["position"], position);
    // A gateway that goes away leaves the list.
    drop(body);
    let gone = api.get("/api/v1/push/gateways").await;
    assert_eq!(gone.expect(200)["items"], json!([]));
}

async fn serves_the_dashboard_under_a_strict_policy(api: TestApi) {
    let page = api.cli.get("/").send().await;
    page.assert_status_is_ok();
    let headers = page.0.headers().clone();
    let csp = headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.0.into_body().into_string().await.unwrap();
    // Nothing inline that the policy would block: scripts and styles come from files.
    assert!(html.contains(r#"<script src="/assets/app.js""#), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "{html}"
    );
    let script = api.cli.get("/assets/app.js").send().await;
    script.assert_status_is_ok();
    assert!(
        script.0.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let etag = script.0.headers()["etag"].to_str().unwrap().to_owned();
    let js = script.0.into_body().into_string().await.unwrap();
    assert!(
        !js.contains("innerHTML") && !js.contains("eval("),
        "the script builds the DOM, never parses HTML"
    );
    // No address of another server (the SVG namespace is a name, not a request).
    let addresses = js.replace("\"http://www.w3.org/2000/svg\"", "");
    assert!(
        !addresses.contains("http://") && !addresses.contains("https://"),
        "no request leaves the server"
    );
    let again = api
        .cli
        .get("/assets/app.js")
        .header("if-none-match", &etag)
        .send()
        .await;
    again.assert_status(poem::http::StatusCode::NOT_MODIFIED);
    // Anything else under the dashboard is a problem, not a file of the disk.
    for path in [
        "/assets/nope.js",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
    ] {
        api.get(path).await.problem(404, "not_found");
    }
    api.post("/", json!({}))
        .await
        .problem(405, "method_not_allowed");
    // The probes are where they were.
    api.get("/healthz").await.expect(200);
}

/// Enqueues a job of `queue` per error, then fails each for good with its error.
async fn fail(api: &TestApi, queue: &str, errors: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in errors {
        let created = api
            .post("/api/v1/jobs", json!({"kind": "noop", "queue": queue}))
            .await;
        ids.push(created.expect(201)["id"].as_str().unwrap().to_owned());
    }
    let worker = WorkerId(format!("{queue}@test"));
    let claimed = api
        .store
        .claim(
            queue,
            &worker,
            errors.len() as u32,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), errors.len());
    let completions: Vec<Completion> = claimed
        .iter()
        .map(|job| {
            let index = ids.iter().position(|id| *id == job.id.to_string()).unwrap();
            Completion {
                lease: job.lease(&worker),
                queue: queue.to_owned(),
                outcome: Outcome::Discard {
                    error: ErrorReport {
                        message: errors[index].clone(),
                        chain: Vec::new(),
                    },
                },
            }
        })
        .collect();
    api.store.complete(&completions).await.unwrap();
    ids
}

async fn groups_failures_by_fingerprint_and_retries_one_group(api: TestApi) {
    let refused: Vec<String> = (0..12)
        .map(|i| format!("payment {} refused by 10.0.{i}.1:8443", 4000 + i * 7))
        .collect();
    let refused_ids = fail(&api, "pay", &refused).await;
    let disk = vec!["disk full on 'vol-7'".to_owned(); 3];
    let disk_ids = fail(&api, "files", &disk).await;

    let report = api.get("/api/v1/failures").await;
    let report = report.expect(200);
    assert_eq!(report["scanned"], 15);
    assert_eq!(report["complete"], true);
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{report}");
    assert_eq!(groups[0]["pattern"], "payment # refused by #");
    assert_eq!(groups[0]["count"], 12);
    assert_eq!(groups[0]["states"], json!({"discarded": 12}));
    assert_eq!(groups[0]["queues"], json!(["pay"]));
    assert_eq!(groups[0]["kinds"], json!(["noop"]));
    assert!(refused_ids.contains(&groups[0]["sample_job_id"].as_str().unwrap().to_owned()));
    assert_eq!(groups[1]["pattern"], "disk full on \"…\"");
    assert_eq!(groups[1]["count"], 3);
    // Narrowed to a queue.
    let files = api.get("/api/v1/failures?queue=files").await;
    assert_eq!(files.expect(200)["groups"].as_array().unwrap().len(), 1);

    // A group's action: counted, then run on that group alone.
    let fingerprint = groups[0]["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 16);
    let path = format!("/api/v1/failures/{fingerprint}/operations");
    let counted = api
        .post(&path, json!({"action": "retry", "dry_run": true}))
        .await;
    assert_eq!(counted.expect(200)["matched"], 12);
    let started = api.post(&path, json!({"action": "retry"})).await;
    let op = started.expect(202)["id"].as_str().unwrap().to_owned();
    longshore_testkit::eventually(
        std::time::Duration::from_secs(20),
        "the group's retry to finish",
        || async {
            let op = api.get(&format!("/api/v1/operations/{op}")).await;
            (op.body["state"] == "completed").then_some(())
        },
    )
    .await;
    for id in &refused_ids {
        let job = api.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(job.expect(200)["state"], "available", "{id}");
    }
    for id in &disk_ids {
        let job = api.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(job.expect(200)["state"], "discarded", "{id}");
    }
    let after = api.get("/api/v1/failures").await;
    assert_eq!(after.expect(200)["groups"].as_array().unwrap().len(), 1);

    // Refusals: an unknown group, a bad body, bad parameters, a read token.
    api.post(
        "/api/v1/failures/0000000000000000/operations",
        json!({"action": "retry"}),
    )
    .await
    .problem(404, "not_found");
    api.post(&path, json!({"action": "explode"}))
        .await
        .problem(422, "invalid_field");
    api.get("/api/v1/failures?since=yesterday")
        .await
        .problem(422, "invalid_field");
    api.get("/api/v1/failures?queue=a%00b")
        .await
        .problem(422, "invalid_field");
    let reader = api.token(Scope::Read).await;
    let refused = api
        .call(
            Method::POST,
            &format!(
                "/api/v1/failures/{}/operations",
                groups[1]["fingerprint"].as_str().unwrap()
            ),
            Some(&reader),
            Some(json!({"action": "delete"})),
            &[],
        )
        .await;
    refused.problem(403, "forbidden");
    for id in &disk_ids {
        let path = format!("/api/v1/jobs/{id}");
        let job = api.call(Method::GET, &path, Some(&reader), None, &[]).await;
        assert_eq!(job.expect(200)["state"], "discarded", "{id}");
    }
}

async fn counts_outcomes_per_minute_from_the_events(api: TestApi) {
    let errors = vec!["boom".to_owned(); 4];
    fail(&api, "tp", &errors).await;
    fail(&api, "other", &errors[..1]).await;
    let answer = api.get("/api/v1/stats/throughput?minutes=30").await;
    let body = answer.expect(200);
    assert_eq!(body["bucket_s"], 60);
    let buckets = body["buckets"].as_array().unwrap();
    assert_eq!(
        buckets.len(),
        30,
        "one bucket per minute, empty ones included"
    );
    let total = |key: &str, buckets: &[Value]| -> i64 {
        buckets.iter().map(|b| b[key].as_i64().unwrap()).sum()
    };
    assert_eq!(total("discarded", buckets), 5);
    assert_eq!(total("completed", buckets), 0);
    // The newest bucket holds this minute.
    let last = chrono::DateTime::parse_from_rfc3339(buckets[29]["at"].as_str().unwrap()).unwrap();
    assert!(chrono::Utc::now().signed_duration_since(last) < chrono::Duration::seconds(61));
    let one_queue = api
        .get("/api/v1/stats/throughput?minutes=30&queue=tp")
        .await;
    assert_eq!(
        total(
            "discarded",
            one_queue.expect(200)["buckets"].as_array().unwrap()
        ),
        4
    );
    // Three days come in at most 180 buckets.
    let long = api.get("/api/v1/stats/throughput?minutes=4320").await;
    let long = long.expect(200);
    assert_eq!(long["bucket_s"], 24 * 60);
    assert!(long["buckets"].as_array().unwrap().len() <= 181);
    assert_eq!(total("discarded", long["buckets"].as_array().unwrap()), 5);
    for bad in [
        "minutes=0",
        "minutes=4321",
        "minutes=1e99",
        "queue=no%20spaces",
    ] {
        api.get(&format!("/api/v1/stats/throughput?{bad}"))
            .await
            .problem(422, "invalid_field");
    }
}

async fn says_who_a_token_is(api: TestApi) {
    let local = api.get("/api/v1/session").await;
    assert_eq!(
        local.expect(200).clone(),
        json!({"actor": "local", "scope": "admin", "auth_required": false})
    );
    let reader = api.token(Scope::Read).await;
    let answer = api
        .call(Method::GET, "/api/v1/session", Some(&reader), None, &[])
        .await;
    let body = answer.expect(200);
    assert_eq!(body["scope"], "read");
    assert_eq!(body["auth_required"], true);
    assert!(body["actor"].as_str().unwrap().starts_with("token:"));
    // From the first token on, no token is no session.
    api.get("/api/v1/session")
        .await
        .problem(401, "unauthorized");
}

async fn filters_by_error_text_literally(api: TestApi) {
    let errors = vec![
        "100% of the quota used".to_owned(),
        "1000 of the quota used".to_owned(),
        "it's_a_trap".to_owned(),
        "itXs a trap".to_owned(),
    ];
    let ids = fail(&api, "quota", &errors).await;
    let find = |text: &'static str| {
        let api = &api;
        async move {
            let query: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
            let page = api.get(&format!("/api/v1/jobs?error={query}")).await;
            let mut found: Vec<String> = page.expect(200)["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned())
                .collect();
            found.sort();
            found
        }
    };
    // `%` and `_` mean themselves, not patterns.
    assert_eq!(find("%").await, vec![ids[0].clone()]);
    assert_eq!(find("s_a").await, vec![ids[2].clone()]);
    let mut quota = vec![ids[0].clone(), ids[1].clone()];
    quota.sort();
    assert_eq!(find("of the quota").await, quota);
    assert!(find("' OR 1=1 --").await.is_empty());
    // The same filter drives a bulk operation.
    let now = chrono::Utc::now();
    let counted = api
        .post(
            "/api/v1/operations",
            json!({"action": "delete", "dry_run": true, "filter": {
                "error": "trap",
                "created_after": (now - chrono::Duration::hours(1)).to_rfc3339(),
                "created_before": (now + chrono::Duration::hours(1)).to_rfc3339()}}),
        )
        .await;
    assert_eq!(counted.expect(200)["matched"], 2);
    api.get("/api/v1/jobs?error=")
        .await
        .problem(422, "invalid_field");
    api.get("/api/v1/jobs?error=a%00b")
        .await
        .problem(422, "invalid_field");
}

#[test]
fn one_failure_with_different_ids_numbers_and_addresses_is_one_pattern() {
    let a = normalise(
        "connect to 10.0.0.7:5432 failed after 3 attempts for job 0192f0c4-1b2a-7c3d-8e4f-a1b2c3d4e5f6: 'db-7' refused",
    );
    let b = normalise(
        "connect to 192.168.1.20:6543 failed after 12 attempts for job 0192f0c4-ffff-7c3d-8e4f-000000000000: 'replica' refused",
    );
    assert_eq!(a, b);
    assert_eq!(
        a,
        "connect to # failed after # attempts for job #: \"…\" refused"
    );
    assert_eq!(fingerprint_of(&a), fingerprint_of(&b));
    assert_eq!(fingerprint_of(&a).len(), 16);
}

#[test]
fn different_failures_stay_apart_and_words_keep_their_letters() {
    let timeout = normalise("HTTP 503 from https://hooks.example/x: upstream timed out");
    let refused = normalise("HTTP 503 from https://hooks.example/x: connection refused");
    assert_ne!(fingerprint_of(&timeout), fingerprint_of(&refused));
    assert_eq!(
        timeout,
        "HTTP # from https://hooks.example/x: upstream timed out"
    );
    // An apostrophe inside a word is not a quote; a line break folds to a space.
    assert_eq!(normalise("can't  reach\nuser 42."), "can't reach user #.");
}

#[test]
fn a_long_error_is_cut_and_an_unclosed_quote_is_kept() {
    let long = "x".repeat(10_000);
    assert_eq!(normalise(&long).chars().count(), PATTERN_CHARS);
    assert_eq!(normalise("bad value \"abc"), "bad value \"abc");
}
