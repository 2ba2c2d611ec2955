//! `/schedules`: each operation's success and rejections.

use poem::http::Method;
use serde_json::json;

use crate::TestApi;

crate::per_backend!(crate::TestApi::new => manages_schedules, rejects_bad_schedules);

async fn manages_schedules(api: TestApi) {
    let created = api
        .post(
            "/api/v1/schedules",
            json!({
                "id": "nightly", "cron": "0 30 2 * * *", "timezone": "Europe/Berlin",
                "job": {"kind": "sleep", "args": {"ms": 1}, "queue": "cron"},
                "catch_up": "latest", "overlap": "skip"
            }),
        )
        .await;
    let s = created.expect(201).clone();
    assert_eq!(s["source"], "api");
    assert_eq!(s["catch_up"], "latest");
    assert!(s["next_fire_at"].is_string());
    assert_eq!(
        api.get("/api/v1/schedules")
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        api.get("/api/v1/schedules/nightly").await.expect(200)["cron"],
        "0 30 2 * * *"
    );
    // The next ticks are 02:30 Berlin time.
    let upcoming = api
        .get("/api/v1/schedules/nightly/upcoming?count=3")
        .await
        .expect(200)
        .clone();
    let ticks = upcoming.as_array().unwrap();
    assert_eq!(ticks.len(), 3);
    for tick in ticks {
        let t = chrono::DateTime::parse_from_rfc3339(tick.as_str().unwrap()).unwrap();
        let local = t.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(local.format("%H:%M:%S").to_string(), "02:30:00", "{tick}");
    }
    // Edit the timing: the next tick follows.
    let edited = api
        .call(
            Method::PATCH,
            "/api/v1/schedules/nightly",
            None,
            Some(json!({"cron": "0 0 4 * * *"})),
            &[],
        )
        .await;
    assert_eq!(edited.expect(200)["cron"], "0 0 4 * * *");
    // Pause, resume, trigger, history.
    let paused = api
        .call(
            Method::POST,
            "/api/v1/schedules/nightly/pause",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(paused.expect(200)["enabled"], false);
    assert!(paused.body["next_fire_at"].is_null());
    let resumed = api
        .call(
            Method::POST,
            "/api/v1/schedules/nightly/resume",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(resumed.expect(200)["enabled"], true);
    assert!(resumed.body["next_fire_at"].is_string());
    let fired = api
        .call(
            Method::POST,
            "/api/v1/schedules/nightly/trigger",
            None,
            None,
            &[],
        )
        .await;
    let job_id = fired.expect(201)["id"].as_str().unwrap().to_owned();
    let history = api
        .get("/api/v1/schedules/nightly/jobs")
        .await
        .expect(200)
        .clone();
    assert_eq!(history[0]["id"], job_id.as_str());
    assert_eq!(history[0]["queue"], "cron");
    // Events are read below the oldest open transaction on the whole server, so one held
    // by another test may hide this one for a moment.
    let events = longshore_testkit::eventually(
        std::time::Duration::from_secs(10),
        "the fire's event",
        || async {
            let events = api.get("/api/v1/events?type=schedule.fired").await;
            let events = events.expect(200).clone();
            (!events["items"][0].is_null()).then_some(events)
        },
    )
    .await;
    assert_eq!(events["items"][0]["job_id"], job_id.as_str());
    // Delete: the schedule goes, its jobs stay.
    api.call(Method::DELETE, "/api/v1/schedules/nightly", None, None, &[])
        .await
        .expect(204);
    api.get("/api/v1/schedules/nightly")
        .await
        .problem(404, "not_found");
    api.get(&format!("/api/v1/jobs/{job_id}")).await.expect(200);
}

async fn rejects_bad_schedules(api: TestApi) {
    let base = json!({"id": "x", "cron": "0 * * * * *", "job": {"kind": "noop"}});
    let with = |key: &str, value: serde_json::Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let cron = api
        .post("/api/v1/schedules", with("cron", json!("61 * * * * *")))
        .await;
    assert_eq!(
        cron.problem(422, "invalid_field")["errors"][0]["field"],
        "cron"
    );
    let hours = api
        .post("/api/v1/schedules", with("cron", json!("0 0 24 * * *")))
        .await;
    let said = &hours.problem(422, "invalid_field")["errors"][0]["message"];
    assert_eq!(said, r#""0 0 24 * * *": hours must be 0–23, got 24"#);
    let tz = api
        .post("/api/v1/schedules", with("timezone", json!("Mars/Olympus")))
        .await;
    assert_eq!(
        tz.problem(422, "invalid_field")["errors"][0]["field"],
        "timezone"
    );
    let kind = api
        .post("/api/v1/schedules", with("job", json!({"kind": "nope"})))
        .await;
    assert_eq!(
        kind.problem(422, "invalid_field")["errors"][0]["field"],
        "job.kind"
    );
    let args = api
        .post(
            "/api/v1/schedules",
            with("job", json!({"kind": "sleep", "args": {"ms": "x"}})),
        )
        .await;
    assert_eq!(
        args.problem(422, "invalid_field")["errors"][0]["field"],
        "job.args"
    );
    let id = api
        .post("/api/v1/schedules", with("id", json!("no spaces")))
        .await;
    assert_eq!(id.problem(422, "invalid_field")["errors"][0]["field"], "id");
    api.post("/api/v1/schedules", with("catch_up", json!("sometimes")))
        .await
        .problem(422, "invalid_field");
    // Nothing was stored by the rejected ones; a duplicate id is a conflict.
    assert_eq!(
        api.get("/api/v1/schedules")
            .await
            .expect(200)
            .as_array()
            .unwrap()
            .len(),
        0
    );
    api.post("/api/v1/schedules", base.clone())
        .await
        .expect(201);
    let duplicate = api.post("/api/v1/schedules", base.clone()).await;
    let detail = duplicate.problem(409, "exists")["detail"].as_str().unwrap();
    assert!(detail.contains(r#"schedule "x" exists"#), "{detail}");
    assert!(detail.contains("PATCH /api/v1/schedules/x"), "{detail}");
    assert!(detail.contains("longshore schedules update x"), "{detail}");
    // A macro is a cron expression too.
    let mut daily = with("cron", json!("@daily"));
    daily["id"] = json!("daily");
    let made = api.post("/api/v1/schedules", daily).await;
    assert_eq!(made.expect(201)["cron"], "@daily");
    let upcoming = api.get("/api/v1/schedules/daily/upcoming?count=1").await;
    let next = upcoming.expect(200)[0].as_str().unwrap().to_owned();
    assert!(next.ends_with("T00:00:00+00:00"), "{next}");
    api.call(
        Method::PATCH,
        "/api/v1/schedules/x",
        None,
        Some(json!({"cron": "nope"})),
        &[],
    )
    .await
    .problem(422, "invalid_field");
    api.get("/api/v1/schedules/x/upcoming?count=0")
        .await
        .problem(422, "invalid_field");
    for (method, path) in [
        (Method::GET, "/api/v1/schedules/none"),
        (Method::PATCH, "/api/v1/schedules/none"),
        (Method::DELETE, "/api/v1/schedules/none"),
        (Method::POST, "/api/v1/schedules/none/pause"),
        (Method::POST, "/api/v1/schedules/none/resume"),
        (Method::POST, "/api/v1/schedules/none/trigger"),
        (Method::GET, "/api/v1/schedules/none/upcoming"),
        (Method::GET, "/api/v1/schedules/none/jobs"),
    ] {
        let body = (method == Method::PATCH).then(|| json!({}));
        api.call(method, path, None, body, &[])
            .await
            .problem(404, "not_found");
    }
    // A schedule from the config file cannot be edited or deleted here.
    let def = longshore_jobs::schedule::ScheduleDef {
        id: "from-config".to_owned(),
        cron: "0 0 * * * *".to_owned(),
        timezone: "UTC".to_owned(),
        job: longshore_jobs::EnqueueRequest {
            kind: "noop".to_owned(),
            ..Default::default()
        },
        catch_up: longshore_jobs::schedule::CatchUp::Skip,
        catch_up_window: std::time::Duration::from_secs(60),
        catch_up_cap: 1,
        overlap: longshore_jobs::schedule::Overlap::Allow,
        enabled: true,
    };
    let schedule = def
        .into_schedule(
            longshore_jobs::schedule::Source::Config,
            chrono::Utc::now(),
            None,
        )
        .unwrap();
    api.store.put_schedule(&schedule).await.unwrap();
    api.call(
        Method::PATCH,
        "/api/v1/schedules/from-config",
        None,
        Some(json!({"cron": "0 1 * * * *"})),
        &[],
    )
    .await
    .problem(409, "config_schedule");
    let refused = api
        .call(
            Method::DELETE,
            "/api/v1/schedules/from-config",
            None,
            None,
            &[],
        )
        .await;
    let detail = refused.problem(409, "config_schedule")["detail"]
        .as_str()
        .unwrap();
    assert!(detail.contains("declared in the config file"), "{detail}");
    // The pruner's schedule is built in, not declared: its text says where it is set.
    let retention = longshore_workers::config::RetentionConfig::default();
    let prune = longshore_workers::pruner::schedule(&retention)
        .into_schedule(
            longshore_jobs::schedule::Source::Config,
            chrono::Utc::now(),
            None,
        )
        .unwrap();
    api.store.put_schedule(&prune).await.unwrap();
    for (method, body) in [
        (Method::DELETE, None),
        (Method::PATCH, Some(json!({"cron": "0 0 * * * *"}))),
    ] {
        let refused = api
            .call(method, "/api/v1/schedules/longshore:prune", None, body, &[])
            .await;
        let detail = refused.problem(409, "builtin_schedule")["detail"]
            .as_str()
            .unwrap();
        assert!(detail.contains("is built in"), "{detail}");
        assert!(detail.contains("[pool.retention]"), "{detail}");
        assert!(!detail.contains("declared in the config file"), "{detail}");
    }
    api.call(
        Method::POST,
        "/api/v1/schedules/from-config/pause",
        None,
        None,
        &[],
    )
    .await
    .expect(200);
}
