//! `/operations`: bulk actions with a dry run and recorded progress.

use std::time::Duration;

use poem::http::Method;
use serde_json::json;

use crate::TestApi;

crate::per_backend!(
    crate::TestApi::new =>
    bulk_retries_after_a_dry_run,
    refuses_unbounded_operations,
    lists_operations_a_page_at_a_time,
    an_operation_whose_process_died_is_taken_over_and_resumed_where_it_stopped,
);

async fn bulk_retries_after_a_dry_run(api: TestApi) {
    let start = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut ids = Vec::new();
    for i in 0..450 {
        let queue = if i < 300 { "bulk" } else { "other" };
        let created = api
            .post(
                "/api/v1/jobs",
                json!({"kind": "noop", "queue": queue, "delay_ms": 60000}),
            )
            .await;
        ids.push(created.expect(201)["id"].as_str().unwrap().to_owned());
    }
    // Cancel them all, so that there is something to retry.
    for id in &ids {
        api.call(
            Method::POST,
            &format!("/api/v1/jobs/{id}/cancel"),
            None,
            None,
            &[],
        )
        .await
        .expect(200);
    }
    let filter = json!({"states": ["cancelled"], "queue": "bulk",
        "created_after": start.to_rfc3339(), "created_before": (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339()});
    let dry = api
        .post(
            "/api/v1/operations",
            json!({"action": "retry", "filter": filter, "dry_run": true}),
        )
        .await;
    assert_eq!(dry.expect(200)["matched"], 300);
    let cancelled = api.get("/api/v1/jobs?state=cancelled&limit=500").await;
    assert_eq!(
        cancelled.expect(200)["items"].as_array().unwrap().len(),
        450,
        "a dry run changes nothing"
    );
    let started = api
        .post(
            "/api/v1/operations",
            json!({"action": "retry", "filter": filter}),
        )
        .await;
    let op = started.expect(202).clone();
    assert_eq!(op["total"], 300);
    let id = op["id"].as_str().unwrap().to_owned();
    let done = longshore_testkit::eventually(
        Duration::from_secs(30),
        "the operation to complete",
        || async {
            let op = api.get(&format!("/api/v1/operations/{id}")).await.body;
            (op["state"] == "completed").then_some(op)
        },
    )
    .await;
    assert_eq!(done["done"], 300);
    assert_eq!(done["skipped"], 0);
    let available = api.get("/api/v1/jobs?state=available&limit=500").await;
    assert_eq!(
        available.expect(200)["items"].as_array().unwrap().len(),
        300
    );
    let list = api.get("/api/v1/operations").await.expect(200).clone();
    assert_eq!(list["items"][0]["id"], id.as_str());
    api.get(&format!("/api/v1/operations/{}", uuid::Uuid::now_v7()))
        .await
        .problem(404, "not_found");
    // Delete by ids: cancelled ones go, and the audit log names the operation.
    let del = api
        .post(
            "/api/v1/operations",
            json!({"action": "delete", "filter": {"ids": [ids[400], ids[401]]}}),
        )
        .await;
    let del_id = del.expect(202)["id"].as_str().unwrap().to_owned();
    longshore_testkit::eventually(
        Duration::from_secs(10),
        "the delete to complete",
        || async {
            (api.get(&format!("/api/v1/operations/{del_id}")).await.body["state"] == "completed")
                .then_some(())
        },
    )
    .await;
    api.get(&format!("/api/v1/jobs/{}", ids[400]))
        .await
        .problem(404, "not_found");
    let audit = api.get("/api/v1/audit").await.expect(200).clone();
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "operations.delete")
    );
}

async fn refuses_unbounded_operations(api: TestApi) {
    api.post(
        "/api/v1/operations",
        json!({"action": "delete", "filter": {"states": ["completed"]}}),
    )
    .await
    .problem(422, "invalid_field");
    api.post(
        "/api/v1/operations",
        json!({"action": "delete", "filter": {
        "created_after": "2026-01-02T00:00:00Z", "created_before": "2026-01-01T00:00:00Z"}}),
    )
    .await
    .problem(422, "invalid_field");
    api.post(
        "/api/v1/operations",
        json!({"action": "explode", "filter": {"ids": []}}),
    )
    .await
    .problem(422, "invalid_field");
}

async fn lists_operations_a_page_at_a_time(api: TestApi) {
    let mut started = Vec::new();
    for _ in 0..7 {
        let op = api
            .post(
                "/api/v1/operations",
                json!({"action": "cancel", "filter": {"ids": [uuid::Uuid::now_v7()]}}),
            )
            .await;
        started.push(op.expect(202)["id"].as_str().unwrap().to_owned());
    }
    started.reverse();
    let all = api.get("/api/v1/operations").await.expect(200).clone();
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&all),
        started,
        "one page of 50 holds them, newest first"
    );
    assert!(all.get("next_cursor").is_none(), "{all}");
    // Pages of 3: each once, in order, no gap, and the last has no cursor.
    let (mut seen, mut pages) = (Vec::new(), 0);
    let mut path = "/api/v1/operations?limit=3".to_owned();
    loop {
        let page = api.get(&path).await.expect(200).clone();
        pages += 1;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/operations?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, started);
    assert_eq!(pages, 3);
    // A cursor that was altered, or made for the jobs list, is refused.
    let page = api
        .get("/api/v1/operations?limit=3")
        .await
        .expect(200)
        .clone();
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (payload, tag) = cursor.split_once('.').unwrap();
    let forged = format!("{payload}.{}", tag.chars().rev().collect::<String>());
    api.get(&format!("/api/v1/operations?cursor={forged}"))
        .await
        .problem(400, "invalid_cursor");
    for _ in 0..2 {
        api.post("/api/v1/jobs", json!({"kind": "noop"}))
            .await
            .expect(201);
    }
    let jobs = api.get("/api/v1/jobs?limit=1").await.expect(200).clone();
    let jobs_cursor = jobs["next_cursor"].as_str().unwrap();
    api.get(&format!("/api/v1/operations?cursor={jobs_cursor}"))
        .await
        .problem(400, "invalid_cursor");
    let limit = api.get("/api/v1/operations?limit=501").await;
    assert_eq!(
        limit.problem(422, "invalid_field")["errors"][0]["field"],
        "limit"
    );
}

/// An API process died 100 jobs into a bulk cancel: another process takes the operation over
/// once its lease is stale, resumes after the last recorded job (the 100 newest are not acted
/// on again), and records its end. An operation with a live owner is left alone.
async fn an_operation_whose_process_died_is_taken_over_and_resumed_where_it_stopped(api: TestApi) {
    use longshore_jobs::admin::{BulkAction, JobFilter, Operation};
    use longshore_jobs::{EnqueueRequest, JobId, JobState};
    let jobs: Vec<_> = (0..250)
        .map(|_| EnqueueRequest {
            queue: Some("dying".into()),
            delay_ms: Some(60_000),
            ..EnqueueRequest::new("noop", json!({}))
        })
        .collect();
    let ids: Vec<JobId> = api
        .state
        .client
        .enqueue_many(jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().id)
        .collect();
    let newest_first: Vec<JobId> = ids.iter().rev().copied().collect();
    let filter = JobFilter {
        ids: ids.clone(),
        ..JobFilter::default()
    };
    let operation = |owner: &str, done: i64, resume_before: Option<JobId>| Operation {
        id: uuid::Uuid::now_v7(),
        action: BulkAction::Cancel,
        filter: filter.clone(),
        state: "running".into(),
        total: 250,
        done,
        skipped: 0,
        actor: "local".into(),
        created_at: chrono::Utc::now(),
        finished_at: None,
        error: None,
        owner: Some(owner.into()),
        resume_before,
    };
    let dead = operation("api@dead", 100, Some(newest_first[99]));
    let alive = operation("api@alive", 0, None);
    for op in [&dead, &alive] {
        api.store.create_operation(op).await.unwrap();
        api.store.update_operation(op).await.unwrap();
    }
    let stale = if api.url.starts_with("sqlite") {
        "UPDATE operations SET heartbeat_at = 0 WHERE owner = ?1"
    } else {
        "UPDATE operations SET heartbeat_at = now() - interval '1 minute' WHERE owner = $1"
    };
    longshore_testkit::execute(&api.url, stale, &["api@dead"]).await;

    let taken = api
        .state
        .bulk()
        .run_once(longshore_api::bulk::STALE)
        .await
        .unwrap();
    assert_eq!(
        taken, 1,
        "only the operation whose owner stopped renewing it"
    );
    let finished =
        longshore_testkit::eventually(Duration::from_secs(20), "it completes", || async {
            let op = api.store.operation(dead.id).await.unwrap().unwrap();
            (op.state != "running").then_some(op)
        })
        .await;
    assert_eq!(
        (finished.state.as_str(), finished.done, finished.skipped),
        ("completed", 250, 0),
        "{finished:?}"
    );
    assert_ne!(finished.owner.as_deref(), Some("api@dead"));
    for (i, id) in newest_first.iter().enumerate() {
        let job = api.store.job(*id).await.unwrap().unwrap();
        let expected = if i < 100 {
            JobState::Scheduled
        } else {
            JobState::Cancelled
        };
        assert_eq!(job.state, expected, "job {i} from the newest");
    }
    let untouched = api.store.operation(alive.id).await.unwrap().unwrap();
    assert_eq!(
        (untouched.state.as_str(), untouched.owner.as_deref()),
        ("running", Some("api@alive"))
    );
}
