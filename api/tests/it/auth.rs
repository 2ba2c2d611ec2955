//! Tokens and scopes: the authorization matrix is generated from the served spec, so an
//! operation added later is covered without editing this file.

use std::net::SocketAddr;

use longshore_api::ApiConfig;
use longshore_jobs::admin::Scope;
use poem::http::Method;
use serde_json::{Value, json};

use crate::{Backend, TestApi};

crate::per_backend!(
    crate::TestApi::new =>
    every_mutation_needs_a_token_with_its_scope,
    tokens_are_created_listed_and_revoked,
    without_tokens_a_loopback_server_is_open,
);

/// A valid body for each operation that takes one, by operation id.
fn body_for(operation: &str, job_created_at: &str) -> Option<Value> {
    Some(match operation {
        "enqueue_job" => json!({"kind": "noop", "delay_ms": 60000}),
        "enqueue_jobs" => json!({"jobs": [{"kind": "noop", "delay_ms": 60000}]}),
        "edit_job" => json!({"priority": 2}),
        "set_queue_concurrency" => json!({"concurrency": 4}),
        "start_operation" => json!({"action": "retry", "dry_run": true, "filter": {
            "created_after": job_created_at, "created_before": "2100-01-01T00:00:00Z"}}),
        "create_token" => json!({"name": "made-by-matrix", "scopes": ["read"]}),
        "create_schedule" => {
            json!({"id": "made-by-matrix", "cron": "0 0 * * * *", "job": {"kind": "noop"}})
        }
        "edit_schedule" => json!({"cron": "0 5 * * * *"}),
        "put_sweep" => crate::sweeps::valid_sweep(),
        "push" => json!({"user_id": "u", "kind": "k", "payload": {}}),
        "push_batch" => json!({"pushes": [{"user_id": "u", "kind": "k", "payload": {}}]}),
        "create_webhook_endpoint" => json!({"url": "https://hooks.example.com/in", "kinds": ["k"]}),
        "update_webhook_endpoint" => json!({"enabled": true}),
        "redeliver_webhook" => json!({"job_id": "01a234d6-e249-74b4-815f-5492ea73e2cf"}),
        "replay_webhooks" => json!({"since": "2026-01-01T00:00:00Z"}),
        "start_failure_group_operation" => json!({"action": "retry", "dry_run": true}),
        "report_activity" => json!({"user_ids": ["matrix"]}),
        "lifecycle_event" => json!({"event_id": "e1", "event_type": "user.deleted",
            "user_id": "1", "occurred_at_ms": 5}),
        "lifecycle_events" => json!({"events": [{"event_id": "e2", "event_type": "user.deleted",
            "user_id": "1", "occurred_at_ms": 5}]}),
        _ => return None,
    })
}

/// The scope each mutation needs, by path: what the README documents.
fn needed(path: &str, method: &Method) -> Scope {
    let schedule_definition = (path == "/schedules" && *method == Method::POST)
        || (path == "/schedules/{id}" && (*method == Method::PATCH || *method == Method::DELETE));
    let sweep_definition =
        path == "/sweeps/{name}" && (*method == Method::PUT || *method == Method::DELETE);
    let endpoint_definition = path.starts_with("/webhook-endpoints")
        && !path.ends_with("/redeliver")
        && !path.ends_with("/replay");
    if path.starts_with("/tokens")
        || path.starts_with("/audit")
        || schedule_definition
        || sweep_definition
        || endpoint_definition
    {
        Scope::Admin
    } else if *method == Method::POST
        && [
            "/jobs",
            "/jobs/batch",
            "/push",
            "/push/batch",
            "/lifecycle-events",
            "/activity",
            "/lifecycle-events/batch",
        ]
        .contains(&path)
    {
        Scope::Enqueue
    } else {
        Scope::Operate
    }
}

async fn every_mutation_needs_a_token_with_its_scope(api: TestApi) {
    let tokens = [
        (Scope::Read, api.token(Scope::Read).await),
        (Scope::Enqueue, api.token(Scope::Enqueue).await),
        (Scope::Operate, api.token(Scope::Operate).await),
        (Scope::Admin, api.token(Scope::Admin).await),
    ];
    let admin = tokens[3].1.clone();
    let spec = api.get("/api/v1/openapi.json").await.expect(200).clone();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let operation = op["operationId"].as_str().unwrap_or_default().to_owned();
            let scope = if method == Method::GET {
                if path.starts_with("/tokens") || path.starts_with("/audit") {
                    Scope::Admin
                } else {
                    Scope::Read
                }
            } else {
                needed(path, &method)
            };
            // Fresh targets per operation: a waiting job, a token to revoke.
            let job = api
                .call(
                    Method::POST,
                    "/api/v1/jobs",
                    Some(&admin),
                    Some(json!({"kind": "noop", "delay_ms": 60000})),
                    &[],
                )
                .await
                .expect(201)
                .clone();
            let job_id = job["id"].as_str().unwrap().to_owned();
            let created_at = api
                .call(
                    Method::GET,
                    &format!("/api/v1/jobs/{job_id}"),
                    Some(&admin),
                    None,
                    &[],
                )
                .await
                .body["created_at"]
                .as_str()
                .unwrap()
                .to_owned();
            let victim = api.token(Scope::Read).await;
            let victim_id = api
                .store
                .token_by_hash(&longshore_jobs::admin::hash_token(&victim))
                .await
                .unwrap()
                .unwrap()
                .id;
            let victim_id = victim_id.to_string();
            let target = if path.starts_with("/tokens") {
                victim_id
            } else if path.starts_with("/schedules/") {
                let id = format!("matrix-{checked}");
                let made = api
                    .call(
                        Method::POST,
                        "/api/v1/schedules",
                        Some(&admin),
                        Some(json!({"id": id, "cron": "0 0 * * * *", "job": {"kind": "noop"}})),
                        &[],
                    )
                    .await;
                made.expect(201);
                id
            } else if path.starts_with("/sweeps/") {
                let name = format!("matrix-{checked}");
                let made = api
                    .call(
                        Method::PUT,
                        &format!("/api/v1/sweeps/{name}"),
                        Some(&admin),
                        Some(crate::sweeps::valid_sweep()),
                        &[],
                    )
                    .await;
                made.expect(201);
                name
            } else if path.starts_with("/webhook-endpoints/") {
                let made = api
                    .call(
                        Method::POST,
                        "/api/v1/webhook-endpoints",
                        Some(&admin),
                        Some(json!({"url": "https://hooks.example.com/in", "kinds": ["k"]})),
                        &[],
                    )
                    .await;
                made.expect(201)["endpoint"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            } else if path.starts_with("/operations") {
                let op = api
                    .call(
                        Method::POST,
                        "/api/v1/operations",
                        Some(&admin),
                        Some(json!({"action": "retry", "filter": {"ids": [job_id]}})),
                        &[],
                    )
                    .await;
                op.expect(202)["id"].as_str().unwrap().to_owned()
            } else {
                job_id.clone()
            };
            let concrete = if path.starts_with("/sweeps/") {
                path.replace("{name}", &target)
            } else {
                path.replace("{id}", &target)
                    .replace("{name}", "default")
                    .replace("{fingerprint}", "0000000000000000")
            };
            let url = format!("/api/v1{concrete}");
            let body = body_for(&operation, &created_at);
            let mutating = method != Method::GET;
            if path == "/events/stream" || path == "/push/stream" {
                // The stream: refused without a token; its success is tested with the events.
                api.call(method.clone(), &url, None, None, &[])
                    .await
                    .problem(401, "unauthorized");
                checked += 1;
                continue;
            }
            let anonymous = api
                .call(method.clone(), &url, None, body.clone(), &[])
                .await;
            anonymous.problem(401, "unauthorized");
            let forged = api
                .call(method.clone(), &url, Some("lsh_forged"), body.clone(), &[])
                .await;
            forged.problem(401, "unauthorized");
            for (granted, token) in &tokens {
                let answer = api
                    .call(method.clone(), &url, Some(token), body.clone(), &[])
                    .await;
                // A redelivery of a job that is no delivery, an action on a group of failures
                // that does not exist: past the scope check, refused. (Their successes are
                // tested with webhooks and failures.)
                let unknown = ["redeliver_webhook", "start_failure_group_operation"];
                if *granted >= scope && unknown.contains(&operation.as_str()) {
                    answer.problem(404, "not_found");
                } else if *granted >= scope {
                    assert!(
                        answer.status.is_success(),
                        "{method} {path} with {granted}: {} {}",
                        answer.status,
                        answer.body
                    );
                } else {
                    answer.problem(403, "forbidden");
                    // The scope is checked before the body: a caller without it learns
                    // nothing about what a valid request would be.
                    if body.is_some() {
                        let malformed = Some(json!({ "not_a_field": true }));
                        api.call(method.clone(), &url, Some(token), malformed, &[])
                            .await
                            .problem(403, "forbidden");
                    }
                }
                if mutating && *granted >= scope {
                    break; // one success per mutation: the target may be gone afterwards
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "the spec lists the operations ({checked})");
    // Every mutation was audited under its token's name.
    let audit = api
        .call(
            Method::GET,
            "/api/v1/audit?limit=500",
            Some(&admin),
            None,
            &[],
        )
        .await
        .expect(200)
        .clone();
    let actors: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["actor"].as_str().unwrap())
        .collect();
    assert!(actors.contains(&"token:operate-token"), "{actors:?}");
}

async fn tokens_are_created_listed_and_revoked(api: TestApi) {
    let admin = api.token(Scope::Admin).await;
    let created = api
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&admin),
            Some(json!({"name": "ci", "scopes": ["enqueue"]})),
            &[],
        )
        .await
        .expect(201)
        .clone();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("lsh_"));
    let list = api
        .call(Method::GET, "/api/v1/tokens", Some(&admin), None, &[])
        .await
        .expect(200)
        .clone();
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap()
        .clone();
    assert!(listed["token"].is_null(), "the secret is never listed");
    assert_eq!(listed["scopes"], json!(["enqueue"]));
    // The new token works, within its scope.
    api.call(
        Method::POST,
        "/api/v1/jobs",
        Some(&token),
        Some(json!({"kind": "noop"})),
        &[],
    )
    .await
    .expect(201);
    api.call(
        Method::POST,
        "/api/v1/queues/default/pause",
        Some(&token),
        None,
        &[],
    )
    .await
    .problem(403, "forbidden");
    api.call(
        Method::POST,
        "/api/v1/tokens",
        Some(&admin),
        Some(json!({"name": "", "scopes": ["read"]})),
        &[],
    )
    .await
    .problem(422, "invalid_field");
    api.call(
        Method::POST,
        "/api/v1/tokens",
        Some(&admin),
        Some(json!({"name": "x", "scopes": ["root"]})),
        &[],
    )
    .await
    .problem(422, "invalid_field");
    // Revoked: refused at once on this process.
    let id = created["id"].as_str().unwrap();
    api.call(
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        Some(&admin),
        None,
        &[],
    )
    .await
    .expect(204);
    api.call(
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        Some(&admin),
        None,
        &[],
    )
    .await
    .problem(404, "not_found");
    api.call(Method::GET, "/api/v1/jobs", Some(&token), None, &[])
        .await
        .problem(401, "unauthorized");
    // Stored hashed: the database never holds the secret.
    let rows = api.store.tokens().await.unwrap();
    assert!(
        rows.iter()
            .all(|r| !token.starts_with(&r.prefix) || r.prefix.len() < 12)
    );
    assert!(api.store.token_by_hash(&token).await.unwrap().is_none());
}

async fn without_tokens_a_loopback_server_is_open(api: TestApi) {
    api.post("/api/v1/jobs", json!({"kind": "noop"}))
        .await
        .expect(201);
    let audit = api.get("/api/v1/audit").await;
    audit.expect(200);
    // Beyond loopback, serving needs a token first.
    let public = ApiConfig {
        listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
        ..ApiConfig::default()
    };
    let refused = longshore_api::check_exposure(&public, &api.store)
        .await
        .unwrap_err();
    assert!(refused.contains("tokens create"), "{refused}");
    api.token(Scope::Admin).await;
    longshore_api::check_exposure(&public, &api.store)
        .await
        .unwrap();
    // And a state built for a public address requires tokens even if all were revoked.
    let exposed = TestApi::with_config(
        if api.url.starts_with("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        },
        public,
    )
    .await
    .unwrap();
    exposed
        .get("/api/v1/jobs")
        .await
        .problem(401, "unauthorized");
}
