//! `/queues`, `/workers` and `/stats`.

use poem::http::Method;
use serde_json::json;

use crate::TestApi;

crate::per_backend!(
    crate::TestApi::new =>
    operates_queues_and_reads_counts,
    refuses_a_queue_nothing_knows_unless_asked_to_create_it
);

async fn operates_queues_and_reads_counts(api: TestApi) {
    for _ in 0..3 {
        api.post("/api/v1/jobs", json!({"kind": "noop", "queue": "mail"}))
            .await
            .expect(201);
    }
    api.post(
        "/api/v1/jobs",
        json!({"kind": "noop", "queue": "mail", "delay_ms": 60000}),
    )
    .await
    .expect(201);
    let queues = api.get("/api/v1/queues").await.expect(200).clone();
    let mail = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "mail")
        .unwrap()
        .clone();
    assert_eq!(mail["counts"]["available"], 3);
    assert_eq!(mail["counts"]["scheduled"], 1);
    assert_eq!(mail["paused"], false);
    assert!(mail["oldest_available_s"].as_f64().unwrap() >= 0.0);
    let paused = api
        .call(Method::POST, "/api/v1/queues/mail/pause", None, None, &[])
        .await;
    assert_eq!(paused.expect(200)["paused"], true);
    let resumed = api
        .call(Method::POST, "/api/v1/queues/mail/resume", None, None, &[])
        .await;
    assert_eq!(resumed.expect(200)["paused"], false);
    let limited = api
        .call(
            Method::PUT,
            "/api/v1/queues/mail/concurrency",
            None,
            Some(json!({"concurrency": 2})),
            &[],
        )
        .await;
    assert_eq!(limited.expect(200)["concurrency"], 2);
    let unlimited = api
        .call(
            Method::PUT,
            "/api/v1/queues/mail/concurrency",
            None,
            Some(json!({"concurrency": null})),
            &[],
        )
        .await;
    assert!(unlimited.expect(200)["concurrency"].is_null());
    api.call(
        Method::PUT,
        "/api/v1/queues/mail/concurrency",
        None,
        Some(json!({"concurrency": -1})),
        &[],
    )
    .await
    .problem(422, "invalid_field");
    api.call(
        Method::POST,
        "/api/v1/queues/bad%20name!/pause",
        None,
        None,
        &[],
    )
    .await
    .problem(422, "invalid_field");
    api.get("/api/v1/queues/nothing-here")
        .await
        .problem(404, "not_found");
    assert_eq!(
        api.get("/api/v1/queues/mail").await.expect(200)["name"],
        "mail"
    );
    // Stats: counts by state, cached.
    let stats = api.get("/api/v1/stats").await.expect(200).clone();
    assert_eq!(stats["counts"]["available"], 3);
    assert_eq!(stats["total"], 4);
    api.post("/api/v1/jobs", json!({"kind": "noop", "queue": "mail"}))
        .await
        .expect(201);
    let cached = api.get("/api/v1/stats").await.expect(200).clone();
    assert_eq!(cached["as_of"], stats["as_of"], "served from the cache");
    // Workers: none registered by the API alone; a registered one shows.
    assert_eq!(
        api.get("/api/v1/workers")
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .len(),
        0
    );
    api.get("/api/v1/workers?within_s=0")
        .await
        .problem(422, "invalid_field");
    let info = longshore_jobs::store::WorkerInfo {
        id: longshore_jobs::WorkerId("mail@host:1:abcd".to_owned()),
        queue: "mail".to_owned(),
        host: "host".to_owned(),
        pid: 1,
        concurrency: 4,
        kinds: vec!["noop".to_owned()],
    };
    api.store.register_worker(&info).await.unwrap();
    let workers = api.get("/api/v1/workers").await.expect(200).clone();
    assert_eq!(workers[0]["id"], "mail@host:1:abcd");
    assert_eq!(workers[0]["concurrency"], 4);
}

async fn refuses_a_queue_nothing_knows_unless_asked_to_create_it(api: TestApi) {
    api.post("/api/v1/jobs", json!({"kind": "noop", "queue": "mail"}))
        .await
        .expect(201);
    let names = |queues: &serde_json::Value| -> Vec<String> {
        let queues = queues.as_array().unwrap().iter();
        queues
            .map(|q| q["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // A typo, on each operation: refused, naming the queues that exist, and nothing stored.
    let concurrency = Some(json!({"concurrency": 2}));
    for (method, action, body) in [
        (Method::POST, "pause", None),
        (Method::POST, "resume", None),
        (Method::PUT, "concurrency", concurrency.clone()),
    ] {
        let path = format!("/api/v1/queues/mial/{action}");
        let refused = api.call(method, &path, None, body, &[]).await;
        let detail = refused.problem(404, "unknown_queue")["detail"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(detail.contains(r#"known queues: "mail""#), "{detail}");
        assert!(detail.contains("create=true"), "{detail}");
    }
    assert_eq!(names(api.get("/api/v1/queues").await.expect(200)), ["mail"]);
    api.get("/api/v1/queues/mial")
        .await
        .problem(404, "not_found");

    // Asked for: a new queue is set up, and known from then on.
    let created = api
        .call(
            Method::POST,
            "/api/v1/queues/fresh/pause?create=true",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(created.expect(200)["paused"], true);
    let limited = api
        .call(
            Method::PUT,
            "/api/v1/queues/other/concurrency?create=true",
            None,
            concurrency,
            &[],
        )
        .await;
    assert_eq!(limited.expect(200)["concurrency"], 2);
    let resumed = api
        .call(Method::POST, "/api/v1/queues/fresh/resume", None, None, &[])
        .await;
    assert_eq!(resumed.expect(200)["paused"], false);
    assert_eq!(
        names(api.get("/api/v1/queues").await.expect(200)),
        ["fresh", "mail", "other"]
    );

    // Known by its jobs, or by a worker serving it.
    let paused = api
        .call(
            Method::POST,
            "/api/v1/queues/mail/pause?create=false",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(paused.expect(200)["paused"], true);
    let info = longshore_jobs::store::WorkerInfo {
        id: longshore_jobs::WorkerId("served@host:1:abcd".to_owned()),
        queue: "served".to_owned(),
        host: "host".to_owned(),
        pid: 1,
        concurrency: 1,
        kinds: vec!["noop".to_owned()],
    };
    api.store.register_worker(&info).await.unwrap();
    let served = api
        .call(Method::POST, "/api/v1/queues/served/pause", None, None, &[])
        .await;
    assert_eq!(served.expect(200)["paused"], true);
}
