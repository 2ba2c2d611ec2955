//! `/jobs`: each operation's success and its rejections.

use poem::http::Method;
use serde_json::json;

use crate::TestApi;

crate::per_backend!(
    crate::TestApi::new =>
    enqueues_and_reads_back_a_job,
    rejects_bad_enqueues_with_problems,
    enqueues_a_batch_with_per_item_results,
    replays_idempotent_enqueues,
    lists_with_filters_and_signed_cursors,
    finds_jobs_by_id_prefix_as_git_does,
    acts_on_one_job,
    edits_only_waiting_jobs,
    limits_body_and_args_size,
);

async fn enqueues_and_reads_back_a_job(api: TestApi) {
    let created = api
        .post("/api/v1/jobs", json!({"kind": "sleep", "args": {"ms": 5}, "queue": "mail", "tags": ["a"], "delay_ms": 60000}))
        .await;
    let body = created.expect(201).clone();
    assert_eq!(body["state"], "scheduled");
    assert_eq!(body["duplicate"], false);
    let id = body["id"].as_str().unwrap();
    let job = api.get(&format!("/api/v1/jobs/{id}")).await;
    let job = job.expect(200);
    assert_eq!(job["kind"], "sleep");
    assert_eq!(job["queue"], "mail");
    assert_eq!(job["args"], json!({"ms": 5}));
    assert_eq!(job["tags"], json!(["a"]));
    api.get(&format!("/api/v1/jobs/{id}/attempts"))
        .await
        .expect(200);
    let events = api.get(&format!("/api/v1/jobs/{id}/events")).await;
    assert_eq!(events.expect(200)[0]["type"], "job.enqueued");
    // Unknown and malformed ids.
    let unknown = uuid::Uuid::now_v7();
    api.get(&format!("/api/v1/jobs/{unknown}"))
        .await
        .problem(404, "not_found");
    api.get("/api/v1/jobs/not-a-uuid")
        .await
        .problem(404, "not_found");
    api.get(&format!("/api/v1/jobs/{unknown}/attempts"))
        .await
        .problem(404, "not_found");
    api.get(&format!("/api/v1/jobs/{unknown}/events"))
        .await
        .problem(404, "not_found");
    // A unique key: the duplicate gets the first job's id.
    let first = api
        .post(
            "/api/v1/jobs",
            json!({"kind": "noop", "unique": {"key": "k1"}, "delay_ms": 60000}),
        )
        .await;
    let second = api
        .post(
            "/api/v1/jobs",
            json!({"kind": "noop", "unique": {"key": "k1"}, "delay_ms": 60000}),
        )
        .await;
    assert_eq!(second.expect(201)["id"], first.expect(201)["id"]);
    assert_eq!(second.body["duplicate"], true);
}

async fn rejects_bad_enqueues_with_problems(api: TestApi) {
    let unknown = api
        .post("/api/v1/jobs", json!({"kind": "no.such.kind"}))
        .await;
    assert_eq!(
        unknown.problem(422, "invalid_field")["errors"][0]["field"],
        "kind"
    );
    let args = api
        .post(
            "/api/v1/jobs",
            json!({"kind": "sleep", "args": {"ms": "soon"}}),
        )
        .await;
    assert_eq!(
        args.problem(422, "invalid_field")["errors"][0]["field"],
        "args"
    );
    let delay = api
        .post("/api/v1/jobs", json!({"kind": "noop", "delay_ms": -5}))
        .await;
    assert_eq!(
        delay.problem(422, "invalid_field")["errors"][0]["field"],
        "delay_ms"
    );
    let attempts = api
        .post("/api/v1/jobs", json!({"kind": "noop", "max_attempts": 0}))
        .await;
    assert_eq!(
        attempts.problem(422, "invalid_field")["errors"][0]["field"],
        "max_attempts"
    );
    // Unknown fields and wrong types name the field; a body that is not JSON, or not
    // declared as JSON, is 400/415; never 500.
    let raw = api
        .cli
        .post("/api/v1/jobs")
        .content_type("application/json")
        .body("{\"kind\": ")
        .send()
        .await;
    assert_eq!(raw.0.status(), 400);
    let unknown = api
        .post("/api/v1/jobs", json!({"kind": "noop", "surprise": 1}))
        .await;
    assert_eq!(
        unknown.problem(422, "invalid_field")["errors"][0]["field"],
        "surprise"
    );
    let wrong = api.post("/api/v1/jobs", json!({"kind": ["noop"]})).await;
    assert_eq!(
        wrong.problem(422, "invalid_field")["errors"][0]["field"],
        "kind"
    );
    api.post("/api/v1/jobs", json!({"kind": "noop", "args": [1, 2]}))
        .await
        .problem(422, "invalid_field");
    let form = api
        .cli
        .post("/api/v1/jobs")
        .content_type("text/plain")
        .body("kind=noop")
        .send()
        .await;
    assert_eq!(form.0.status(), 415);
    // Nothing was stored by any of them.
    let page = api.get("/api/v1/jobs").await;
    assert_eq!(page.expect(200)["items"].as_array().unwrap().len(), 0);
}

async fn enqueues_a_batch_with_per_item_results(api: TestApi) {
    let batch = api
        .post(
            "/api/v1/jobs/batch",
            json!({"jobs": [
                {"kind": "noop"}, {"kind": "nope"}, {"kind": "sleep", "args": {"ms": 1}}
            ]}),
        )
        .await;
    let body = batch.expect(200);
    assert_eq!(body["enqueued"], 2);
    assert_eq!(body["failed"], 1);
    assert!(body["items"][0]["job"]["id"].is_string());
    assert_eq!(body["items"][1]["error"]["code"], "invalid_field");
    assert!(body["items"][2]["job"]["id"].is_string());
    api.post("/api/v1/jobs/batch", json!({"jobs": []}))
        .await
        .problem(422, "invalid_field");
    let too_many: Vec<_> = (0..1001).map(|_| json!({"kind": "noop"})).collect();
    api.post("/api/v1/jobs/batch", json!({"jobs": too_many}))
        .await
        .problem(422, "invalid_field");
}

async fn replays_idempotent_enqueues(api: TestApi) {
    let body = json!({"kind": "noop", "delay_ms": 60000});
    let key = [("idempotency-key", "order-17")];
    let first = api
        .call(Method::POST, "/api/v1/jobs", None, Some(body.clone()), &key)
        .await;
    let again = api
        .call(Method::POST, "/api/v1/jobs", None, Some(body.clone()), &key)
        .await;
    assert_eq!(again.expect(201)["id"], first.expect(201)["id"]);
    let page = api.get("/api/v1/jobs").await;
    assert_eq!(
        page.expect(200)["items"].as_array().unwrap().len(),
        1,
        "one job for one key"
    );
    let other = json!({"kind": "noop", "delay_ms": 1000});
    api.call(Method::POST, "/api/v1/jobs", None, Some(other), &key)
        .await
        .problem(422, "invalid_field");
    // A key whose first request is still being processed.
    api.store
        .claim_idempotency("local", "busy-key", "some-hash")
        .await
        .unwrap();
    api.call(
        Method::POST,
        "/api/v1/jobs",
        None,
        Some(json!({"kind": "noop"})),
        &[("idempotency-key", "busy-key")],
    )
    .await
    .problem(409, "idempotency_in_flight");
    // A key left unanswered for over a minute (its process died) is taken over by a retry.
    let stale = if api.url.starts_with("sqlite") {
        "UPDATE idempotency_keys SET created_at = created_at - 120000000 WHERE key = 'busy-key'"
    } else {
        "UPDATE idempotency_keys SET created_at = now() - interval '2 minutes' WHERE key = 'busy-key'"
    };
    assert_eq!(longshore_testkit::execute(&api.url, stale, &[]).await, 1);
    api.call(
        Method::POST,
        "/api/v1/jobs",
        None,
        Some(json!({"kind": "noop"})),
        &[("idempotency-key", "busy-key")],
    )
    .await
    .expect(201);
}

async fn lists_with_filters_and_signed_cursors(api: TestApi) {
    for i in 0..7 {
        let queue = if i % 2 == 0 { "even" } else { "odd" };
        api.post("/api/v1/jobs", json!({"kind": "noop", "queue": queue, "args": {"user": {"id": i, "name": format!("u{i}")}}, "tags": [format!("t{i}")], "delay_ms": 60000}))
            .await
            .expect(201);
    }
    let even = api.get("/api/v1/jobs?queue=even").await;
    assert_eq!(even.expect(200)["items"].as_array().unwrap().len(), 4);
    let by_arg = api.get("/api/v1/jobs?args.user.id=3").await;
    let items = by_arg.expect(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["args"]["user"]["id"], 3);
    let by_name = api
        .get("/api/v1/jobs?args.user.name=u4&state=scheduled")
        .await;
    assert_eq!(by_name.expect(200)["items"].as_array().unwrap().len(), 1);
    let by_tag = api.get("/api/v1/jobs?tag=t5").await;
    assert_eq!(by_tag.expect(200)["items"].as_array().unwrap().len(), 1);
    // SQL in a filter is a value like any other; in a path segment it is refused.
    let injection = api.get("/api/v1/jobs?queue=even'%20OR%20'1'='1").await;
    assert_eq!(injection.expect(200)["items"].as_array().unwrap().len(), 0);
    let kind = api.get("/api/v1/jobs?kind=x'%20OR%201=1--").await;
    assert_eq!(
        kind.expect(200)["items"],
        json!([]),
        "7 jobs, none of kind x'…"
    );
    let value = api.get("/api/v1/jobs?args.user.name=x'%20OR%201=1--").await;
    assert_eq!(value.expect(200)["items"].as_array().unwrap().len(), 0);
    api.get("/api/v1/jobs?args.user')%20OR%201=1--=1")
        .await
        .problem(422, "invalid_field");
    let state = api.get("/api/v1/jobs?state=sleeping").await;
    assert_eq!(
        state.problem(422, "invalid_field")["errors"][0]["field"],
        "state"
    );
    // Pages of 3, newest first, no overlap, then no cursor.
    let mut seen = Vec::new();
    let mut path = "/api/v1/jobs?limit=3".to_owned();
    loop {
        let page = api.get(&path).await.expect(200).clone();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/jobs?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, each once");
    // A cursor that was altered, or made up, is refused.
    let page = api.get("/api/v1/jobs?limit=3").await.expect(200).clone();
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (payload, tag) = cursor.split_once('.').unwrap();
    let mut forged = payload.to_owned();
    forged.replace_range(0..1, if payload.starts_with('a') { "b" } else { "a" });
    api.get(&format!("/api/v1/jobs?cursor={forged}.{tag}"))
        .await
        .problem(400, "invalid_cursor");
    api.get("/api/v1/jobs?cursor=not-a-cursor")
        .await
        .problem(400, "invalid_cursor");
    let limit = api.get("/api/v1/jobs?limit=501").await;
    assert_eq!(
        limit.problem(422, "invalid_field")["errors"][0]["field"],
        "limit"
    );
}

async fn finds_jobs_by_id_prefix_as_git_does(api: TestApi) {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let job = api.post("/api/v1/jobs", json!({"kind": "noop"})).await;
        ids.push(job.expect(201)["id"].as_str().unwrap().replace('-', ""));
    }
    let found = |answer: &crate::Answer| -> Vec<String> {
        answer.expect(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|job| job["id"].as_str().unwrap().replace('-', ""))
            .collect()
    };
    // Ids made together share their start (a UUIDv7 starts with its time).
    let shared = ids[0]
        .chars()
        .zip(ids[1].chars())
        .take_while(|(a, b)| a == b)
        .count();
    assert!(shared >= 4, "{ids:?}");
    let both = api
        .get(&format!(
            "/api/v1/jobs?id_prefix={}&limit=2",
            &ids[0][..shared]
        ))
        .await;
    assert_eq!(found(&both), [ids[1].clone(), ids[0].clone()]);
    // One digit more names one job; written with the id's dashes, or in capitals, alike.
    let unique = &ids[0][..shared + 1];
    let one = api
        .get(&format!("/api/v1/jobs?id_prefix={unique}&limit=2"))
        .await;
    assert_eq!(found(&one), [ids[0].clone()]);
    let dashed: String = uuid::Uuid::parse_str(&ids[0])
        .unwrap()
        .hyphenated()
        .to_string()
        .chars()
        .scan(0, |digits, c| {
            let keep = *digits <= shared;
            *digits += usize::from(c != '-');
            Some((keep, c))
        })
        .take_while(|(keep, _)| *keep)
        .map(|(_, c)| c)
        .collect();
    assert!(dashed.contains('-'), "{dashed}");
    let with_dashes = api
        .get(&format!("/api/v1/jobs?id_prefix={dashed}&limit=2"))
        .await;
    assert_eq!(found(&with_dashes), [ids[0].clone()], "{dashed}");
    let upper = unique.to_uppercase();
    let capitals = api.get(&format!("/api/v1/jobs?id_prefix={upper}")).await;
    assert_eq!(found(&capitals), [ids[0].clone()]);
    let whole = api.get(&format!("/api/v1/jobs?id_prefix={}", ids[1])).await;
    assert_eq!(found(&whole), [ids[1].clone()]);
    // UUIDv7s will not start with ffff before the year 10000.
    let none = api.get("/api/v1/jobs?id_prefix=ffff").await;
    assert_eq!(found(&none), Vec::<String>::new());

    // The prefix is a range of ids: its first and last ids match, their neighbours do not.
    let mut edges = Vec::new();
    for id in [
        "0a1b0000-0000-0000-0000-000000000000",
        "0a1bffff-ffff-ffff-ffff-ffffffffffff",
        "0a1affff-ffff-ffff-ffff-ffffffffffff",
        "0a1c0000-0000-0000-0000-000000000000",
    ] {
        let mut job = api
            .state
            .client
            .prepare(longshore_jobs::EnqueueRequest::new("noop", json!({})))
            .unwrap();
        job.id = longshore_jobs::JobId(uuid::Uuid::parse_str(id).unwrap());
        edges.push(job);
    }
    api.store.insert(edges).await.unwrap();
    let range = api.get("/api/v1/jobs?id_prefix=0a1b").await;
    assert_eq!(
        found(&range),
        [
            "0a1bffffffffffffffffffffffffffff",
            "0a1b0000000000000000000000000000"
        ]
    );
    // Other filters narrow it further.
    let filtered = api.get("/api/v1/jobs?id_prefix=0a1b&state=completed").await;
    assert_eq!(found(&filtered), Vec::<String>::new());

    for bad in [
        "abc",
        "0a1g",
        "-0a1b",
        "0a1b-0000",
        "0a1b0000--0000",
        "0a1b00000a1b00000a1b00000a1b00000",
        "0a1b0000-0000-0000-0000-0000000000000",
    ] {
        let answer = api.get(&format!("/api/v1/jobs?id_prefix={bad}")).await;
        let body = answer.problem(422, "invalid_field");
        assert_eq!(body["errors"][0]["field"], "id_prefix", "{bad}: {body}");
    }
}

async fn acts_on_one_job(api: TestApi) {
    let id = api
        .post("/api/v1/jobs", json!({"kind": "noop", "delay_ms": 60000}))
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Run now: a scheduled job becomes available; again is fine; a finished one is a conflict.
    let run = api
        .call(
            Method::POST,
            &format!("/api/v1/jobs/{id}/run"),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(run.expect(200)["state"], "available");
    // Cancel a waiting job: 200, cancelled; again: 409.
    let cancel = api
        .call(
            Method::POST,
            &format!("/api/v1/jobs/{id}/cancel"),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(cancel.expect(200)["state"], "cancelled");
    api.call(
        Method::POST,
        &format!("/api/v1/jobs/{id}/cancel"),
        None,
        None,
        &[],
    )
    .await
    .problem(409, "invalid_state");
    api.call(
        Method::POST,
        &format!("/api/v1/jobs/{id}/run"),
        None,
        None,
        &[],
    )
    .await
    .problem(409, "invalid_state");
    // Retry the cancelled job: available again.
    let retry = api
        .call(
            Method::POST,
            &format!("/api/v1/jobs/{id}/retry"),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(retry.expect(200)["state"], "available");
    // Delete: 204, then 404.
    api.call(
        Method::DELETE,
        &format!("/api/v1/jobs/{id}"),
        None,
        None,
        &[],
    )
    .await
    .expect(204);
    api.get(&format!("/api/v1/jobs/{id}"))
        .await
        .problem(404, "not_found");
    api.call(
        Method::DELETE,
        &format!("/api/v1/jobs/{id}"),
        None,
        None,
        &[],
    )
    .await
    .problem(404, "not_found");
    let missing = uuid::Uuid::now_v7();
    for action in ["retry", "cancel", "run"] {
        api.call(
            Method::POST,
            &format!("/api/v1/jobs/{missing}/{action}"),
            None,
            None,
            &[],
        )
        .await
        .problem(404, "not_found");
    }
    // Each change was audited.
    let audit = api.get("/api/v1/audit").await.expect(200).clone();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for action in ["jobs.run", "jobs.cancel", "jobs.retry", "jobs.delete"] {
        assert!(actions.contains(&action), "{action} audited: {actions:?}");
    }
    assert!(audit["items"][0]["targets"][0].is_string());
}

async fn edits_only_waiting_jobs(api: TestApi) {
    let id = api
        .post(
            "/api/v1/jobs",
            json!({"kind": "sleep", "args": {"ms": 1}, "delay_ms": 60000}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/jobs/{id}");
    let edited = api
        .call(
            Method::PATCH,
            &path,
            None,
            Some(json!({"priority": 3, "args": {"ms": 2}, "tags": ["x"], "max_attempts": 5})),
            &[],
        )
        .await;
    let job = edited.expect(200);
    assert_eq!(job["priority"], 3);
    assert_eq!(job["args"]["ms"], 2);
    assert_eq!(job["max_attempts"], 5);
    assert_eq!(job["tags"], json!(["x"]));
    api.call(
        Method::PATCH,
        &path,
        None,
        Some(json!({"args": {"ms": "x"}})),
        &[],
    )
    .await
    .problem(422, "invalid_field");
    api.call(
        Method::PATCH,
        &path,
        None,
        Some(json!({"priority": 12})),
        &[],
    )
    .await
    .problem(422, "invalid_field");
    api.call(
        Method::PATCH,
        &path,
        None,
        Some(json!({"metadata": [1]})),
        &[],
    )
    .await
    .problem(422, "invalid_field");
    let now = chrono::Utc::now().to_rfc3339();
    let due = api
        .call(
            Method::PATCH,
            &path,
            None,
            Some(json!({"run_at": now})),
            &[],
        )
        .await;
    assert_eq!(due.expect(200)["state"], "available");
    api.call(
        Method::POST,
        &format!("/api/v1/jobs/{id}/cancel"),
        None,
        None,
        &[],
    )
    .await
    .expect(200);
    api.call(
        Method::PATCH,
        &path,
        None,
        Some(json!({"priority": 1})),
        &[],
    )
    .await
    .problem(409, "invalid_state");
}

async fn limits_body_and_args_size(api: TestApi) {
    let big = "x".repeat(300 * 1024);
    let args = api
        .post(
            "/api/v1/jobs",
            json!({"kind": "noop", "args": {"blob": big}}),
        )
        .await;
    assert_eq!(args.problem(413, "too_large")["errors"][0]["field"], "args");
    let huge = "y".repeat(5 << 20);
    let body = api
        .post(
            "/api/v1/jobs",
            json!({"kind": "noop", "args": {"blob": huge}}),
        )
        .await;
    body.problem(413, "too_large");
    let page = api.get("/api/v1/jobs").await;
    assert_eq!(
        page.expect(200)["items"].as_array().unwrap().len(),
        0,
        "nothing stored"
    );
}
