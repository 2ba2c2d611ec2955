//! The active-users gauge (from activity reports, pushes and lifecycle events; the same on
//! every replica, kept across restarts) and `/metrics`.

use std::sync::Arc;

use chrono::{Duration, Utc};
use poem::http::Method;
use poem::test::TestClient;
use poem::{EndpointExt, Response};
use serde_json::json;

use longshore_api::metrics::CATALOGUE;
use longshore_api::{ApiConfig, ApiState, app};
use longshore_jobs::admin::Scope;
use longshore_jobs::{Client, Registry, Store, StoreConfig, kinds};

use crate::TestApi;

crate::per_backend!(
    crate::TestApi::new =>
    counts_distinct_users_over_each_window_the_same_on_another_replica,
    refuses_bad_activity_reports,
    serves_every_catalogued_metric_as_prometheus_text,
);

/// A second API process over the same database, as another replica (or this one restarted).
async fn replica(
    api: &TestApi,
    config: ApiConfig,
) -> TestClient<poem::endpoint::BoxEndpoint<'static, Response>> {
    let store = Store::connect(&StoreConfig {
        url: api.url.clone(),
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    let mut registry = Registry::new();
    kinds::register_builtins(&mut registry);
    let state = ApiState::new(Client::new(store, Arc::new(registry)), config);
    TestClient::new(app(state).map_to_response().boxed())
}

async fn counts_distinct_users_over_each_window_the_same_on_another_replica(api: TestApi) {
    let recorded = api
        .post(
            "/api/v1/activity",
            json!({"user_ids": ["ana", "bo", "ana"]}),
        )
        .await;
    assert_eq!(recorded.expect(200)["recorded"], 2);
    // A push marks its user, with the push.
    api.post(
        "/api/v1/push",
        json!({"user_id": "cy", "kind": "chat", "payload": {}}),
    )
    .await
    .expect(201);
    // Seen two days ago: in the 7-day window, not in the 24-hour one.
    let two_days = (Utc::now() - Duration::days(2)).to_rfc3339();
    api.post(
        "/api/v1/activity",
        json!({"user_ids": ["dee"], "at": two_days}),
    )
    .await
    .expect(200);
    // A later report of an old sighting does not move a user back.
    api.post(
        "/api/v1/activity",
        json!({"user_ids": ["ana"], "at": two_days}),
    )
    .await
    .expect(200);
    let stats = api.get("/api/v1/stats").await;
    assert_eq!(
        stats.expect(200)["active_users"],
        json!({"24h": 3, "7d": 4})
    );
    // Another replica, or this one after a restart, reads the same figures.
    let other = replica(&api, ApiConfig::default()).await;
    let answer = other.get("/api/v1/stats").send().await;
    answer.assert_status_is_ok();
    let body: serde_json::Value = answer.0.into_body().into_json().await.unwrap();
    assert_eq!(body["active_users"], json!({"24h": 3, "7d": 4}));
    // The other replica reports a user of its own (seen six days ago, by the report's
    // clock) and one this replica reported: both scrapes count each user once.
    let six_days = (Utc::now() - Duration::days(6)).to_rfc3339();
    other
        .post("/api/v1/activity")
        .body_json(&json!({"user_ids": ["fay", "bo"], "at": six_days}))
        .send()
        .await
        .assert_status_is_ok();
    for scrape in [
        api.cli.get("/metrics").send().await,
        other.get("/metrics").send().await,
    ] {
        scrape.assert_status_is_ok();
        let text = scrape.0.into_body().into_string().await.unwrap();
        for sample in [
            "longshore_active_users{window=\"24h\"} 3\n",
            "longshore_active_users{window=\"7d\"} 5\n",
        ] {
            assert!(text.contains(sample), "{sample} in {text}");
        }
    }
    // Sightings past the longest window are pruned, and no longer count.
    let old = Utc::now() - Duration::days(8);
    api.store
        .record_activity(&[("eve".to_owned(), old)])
        .await
        .unwrap();
    let pruned = api
        .store
        .prune_activity(Utc::now() - Duration::days(7))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let counts = api
        .store
        .active_users(&[Utc::now() - Duration::days(30)])
        .await
        .unwrap();
    assert_eq!(counts, vec![5]);
}

async fn refuses_bad_activity_reports(api: TestApi) {
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let in_an_hour = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let last_month = (Utc::now() - Duration::days(30)).to_rfc3339();
    for (body, field) in [
        (json!({"user_ids": []}), "user_ids"),
        (json!({"user_ids": too_many}), "user_ids"),
        (json!({"user_ids": ["a\u{0}b"]}), "user_ids[0]"),
        (json!({"user_ids": ["ok", ""]}), "user_ids[1]"),
        (json!({"user_ids": ["x".repeat(257)]}), "user_ids[0]"),
        (json!({"user_ids": ["a"], "at": in_an_hour}), "at"),
        (json!({"user_ids": ["a"], "at": last_month}), "at"),
        (json!({"user_ids": ["a"], "at": "yesterday"}), "at"),
        (json!({"user_ids": ["a"], "extra": 1}), "extra"),
    ] {
        let answer = api.post("/api/v1/activity", body.clone()).await;
        let problem = answer.problem(422, "invalid_field");
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{body}: {problem}"
        );
    }
    let stats = api.get("/api/v1/stats").await;
    assert_eq!(
        stats.expect(200)["active_users"],
        json!({"24h": 0, "7d": 0})
    );
    // Reporting activity is an enqueue: a read token may not.
    let reader = api.token(Scope::Read).await;
    api.call(
        Method::POST,
        "/api/v1/activity",
        Some(&reader),
        Some(json!({"user_ids": ["a"]})),
        &[],
    )
    .await
    .problem(403, "forbidden");
}

async fn serves_every_catalogued_metric_as_prometheus_text(api: TestApi) {
    let made = api
        .post("/api/v1/jobs", json!({"kind": "noop", "queue": "mail"}))
        .await;
    let id = made.expect(201)["id"].as_str().unwrap().to_owned();
    api.post("/api/v1/activity", json!({"user_ids": ["ana", "bo"]}))
        .await
        .expect(200);
    let scrape = api.cli.get("/metrics").send().await;
    scrape.assert_status_is_ok();
    let content_type = scrape.0.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = scrape.0.into_body().into_string().await.unwrap();
    for metric in CATALOGUE {
        assert!(
            text.contains(&format!("# TYPE {} {}\n", metric.name, metric.kind)),
            "{}",
            metric.name
        );
        assert!(
            text.contains(&format!("# HELP {} ", metric.name)),
            "{}",
            metric.name
        );
    }
    assert!(
        text.contains("longshore_jobs{queue=\"mail\",state=\"available\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("longshore_jobs{queue=\"mail\",state=\"running\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("longshore_active_users{window=\"24h\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("longshore_webhook_endpoints{breaker=\"closed\"} 0\n"),
        "{text}"
    );
    // Every sample is a catalogued name with its labels; no job id anywhere.
    assert!(!text.contains(&id), "a job id in the metrics");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(CATALOGUE.iter().any(|m| m.name == name), "{line}");
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    // Once a token exists, a scrape needs one, unless configured public.
    let reader = api.token(Scope::Read).await;
    api.get("/metrics").await.problem(401, "unauthorized");
    let with_token = api
        .call(Method::GET, "/metrics", Some(&reader), None, &[])
        .await;
    assert_eq!(with_token.status, 200);
    let public = replica(
        &api,
        ApiConfig {
            public_metrics: true,
            ..ApiConfig::default()
        },
    )
    .await;
    public.get("/metrics").send().await.assert_status_is_ok();
}
