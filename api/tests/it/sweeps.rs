//! `/sweeps`: definitions checked before they are stored, config sweeps read-only, passes
//! and dry runs started, last run and next run shown.

use longshore_jobs::schedule::Source;
use poem::http::Method;
use serde_json::{Value, json};

use crate::TestApi;

crate::per_backend!(
    crate::TestApi::new =>
    defines_lists_runs_and_deletes_sweeps,
    refuses_bad_sweeps_before_storing_them,
    config_sweeps_and_their_schedules_are_read_only,
);

/// A sweep on the test's `local` target (in-memory SQLite) that its target accepts.
pub fn valid_sweep() -> Value {
    json!({
        "target": "local",
        "query": "SELECT CAST(value AS TEXT) AS key FROM json_each('[]') \
                  WHERE $1 IS NOT NULL AND ($2 IS NULL OR value > $2) ORDER BY value LIMIT $3",
        "retention": "30days",
        "batch": 100,
        "action": {"type": "statement", "sql": "SELECT count(*) FROM json_each($1)"}
    })
}

async fn put(api: &TestApi, name: &str, body: Value) -> crate::Answer {
    api.call(
        Method::PUT,
        &format!("/api/v1/sweeps/{name}"),
        None,
        Some(body),
        &[],
    )
    .await
}

async fn defines_lists_runs_and_deletes_sweeps(api: TestApi) {
    let created = put(&api, "guests", valid_sweep()).await;
    let view = created.expect(201).clone();
    assert_eq!(view["name"], "guests");
    assert_eq!(view["source"], "api");
    assert_eq!(view["definition"]["retention"], "30days");
    assert_eq!(
        view["definition"]["max_time"], "10m",
        "defaults are filled in"
    );
    assert_eq!(view["paused"], false);
    assert!(
        view.get("next_run_at").is_none(),
        "no schedule, no next run"
    );
    // Replacing it with a schedule: 200, and the next run is shown.
    let mut scheduled = valid_sweep();
    scheduled["schedule"] = json!("0 0 3 * * *");
    let replaced = put(&api, "guests", scheduled.clone()).await;
    assert!(replaced.expect(200)["next_run_at"].is_string());
    let schedule = api.get("/api/v1/schedules/sweep:guests").await;
    assert_eq!(schedule.expect(200)["job"]["args"]["sweep"], "guests");
    let list = api.get("/api/v1/sweeps").await.expect(200).clone();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // A pass, then a second request while it waits: the same pass, marked duplicate.
    let run = api
        .call(Method::POST, "/api/v1/sweeps/guests/run", None, None, &[])
        .await;
    let pass = run.expect(201).clone();
    assert_eq!(pass["duplicate"], false);
    let again = api
        .call(Method::POST, "/api/v1/sweeps/guests/run", None, None, &[])
        .await;
    assert_eq!(again.expect(201)["id"], pass["id"]);
    assert_eq!(again.body["duplicate"], true);
    let dry = api
        .call(
            Method::POST,
            "/api/v1/sweeps/guests/dry-run",
            None,
            None,
            &[],
        )
        .await;
    let dry = dry.expect(201).clone();
    assert_ne!(dry["id"], pass["id"]);
    let job = api
        .get(&format!("/api/v1/jobs/{}", dry["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        job.expect(200)["args"],
        json!({"sweep": "guests", "dry_run": true})
    );
    let view = api.get("/api/v1/sweeps/guests").await.expect(200).clone();
    assert_eq!(view["last_run"]["job_id"], pass["id"]);
    assert_eq!(view["last_run"]["state"], "available");
    assert_eq!(view["last_dry_run"]["job_id"], dry["id"]);
    assert_eq!(view["last_dry_run"]["dry_run"], true);

    // Paused through its schedule: no next run, and a new definition keeps the pause.
    api.call(
        Method::POST,
        "/api/v1/schedules/sweep:guests/pause",
        None,
        None,
        &[],
    )
    .await
    .expect(200);
    let view = put(&api, "guests", scheduled).await.expect(200).clone();
    assert_eq!(view["paused"], true);
    assert!(view.get("next_run_at").is_none());

    // Unknown sweeps are 404s.
    api.call(Method::POST, "/api/v1/sweeps/nope/run", None, None, &[])
        .await
        .problem(404, "not_found");
    api.get("/api/v1/sweeps/nope")
        .await
        .problem(404, "not_found");

    // Deleted with its schedule; its passes stay.
    let deleted = api
        .call(Method::DELETE, "/api/v1/sweeps/guests", None, None, &[])
        .await;
    deleted.expect(204);
    api.get("/api/v1/sweeps/guests")
        .await
        .problem(404, "not_found");
    api.get("/api/v1/schedules/sweep:guests")
        .await
        .problem(404, "not_found");
    api.get(&format!("/api/v1/jobs/{}", pass["id"].as_str().unwrap()))
        .await
        .expect(200);
}

async fn refuses_bad_sweeps_before_storing_them(api: TestApi) {
    let with = |path: &[&str], value: Value| {
        let mut body = valid_sweep();
        let mut at = &mut body;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        body
    };
    let cases = [
        (with(&["target"], json!("prod")), "target"),
        (with(&["retention"], json!("soon")), "retention"),
        (with(&["max_time"], json!("0s")), "max_time"),
        (with(&["batch"], json!(0)), "batch"),
        (with(&["max_rows"], json!(0)), "max_rows"),
        (with(&["retention"], json!("300000years")), "retention"),
        (with(&["query"], json!("SELECT 1 AS key")), "query"),
        (
            with(
                &["query"],
                json!("SELEC key FROM accounts WHERE $1 AND $2 LIMIT $3"),
            ),
            "query",
        ),
        (
            with(
                &["query"],
                json!("SELECT id AS key FROM no_such_table WHERE $1 AND $2 LIMIT $3"),
            ),
            "query",
        ),
        (
            with(&["action", "sql"], json!("DELETE FROM nowhere WHERE $1")),
            "action.sql",
        ),
        (
            with(&["action"], json!({"type": "statement"})),
            "action.sql",
        ),
        (
            with(&["action"], json!({"type": "fan_out", "kind": "nope"})),
            "action.kind",
        ),
        (with(&["schedule"], json!("every day")), "schedule"),
        (with(&["timezone"], json!("Mars/Olympus")), "timezone"),
    ];
    let mut cases = cases.to_vec();
    if api.url.starts_with("postgres") {
        // On Postgres the query is checked with its parameters typed as a pass binds them:
        // comparing a uuid with the last key (text) is refused before it is stored.
        let mut typed = valid_sweep();
        typed["target"] = json!("pg");
        typed["query"] =
            json!("SELECT id::text AS key FROM jobs WHERE created_at < $1 AND id > $2 LIMIT $3");
        typed["action"] = json!({"type": "statement", "sql": "SELECT cardinality($1)"});
        let mut fixed = typed.clone();
        fixed["query"] = json!(
            "SELECT id::text AS key FROM jobs WHERE created_at < $1 \
             AND ($2 IS NULL OR id > $2::uuid) ORDER BY id LIMIT $3"
        );
        cases.push((typed, "query"));
        put(&api, "typed", fixed).await.expect(201);
        api.call(Method::DELETE, "/api/v1/sweeps/typed", None, None, &[])
            .await
            .expect(204);
    }
    for (body, field) in cases {
        let answer = put(&api, "bad", body.clone()).await;
        let problem = answer.problem(422, "invalid_field");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    // A name that is not plain, even one carrying SQL, is refused as the name.
    let answer = put(&api, "x';DROP%20TABLE%20jobs;--", valid_sweep()).await;
    assert_eq!(
        answer.problem(422, "invalid_field")["errors"][0]["field"],
        "name"
    );
    let answer = put(&api, "...", valid_sweep()).await;
    assert_eq!(
        answer.problem(422, "invalid_field")["errors"][0]["field"],
        "name"
    );
    // Unknown fields are refused, not ignored.
    let answer = put(&api, "bad", with(&["retension"], json!("1day"))).await;
    assert!(answer.status.is_client_error(), "{}", answer.body);
    // Nothing was stored.
    assert_eq!(api.get("/api/v1/sweeps").await.expect(200), &json!([]));
    api.get("/api/v1/schedules/sweep:bad")
        .await
        .problem(404, "not_found");
}

async fn config_sweeps_and_their_schedules_are_read_only(api: TestApi) {
    // A sweep as the config file's reconciliation stores it.
    let def: longshore_jobs::sweep::SweepDef = serde_json::from_value(json!({
        "name": "nightly", "target": "local", "retention": "1day",
        "query": "SELECT 'k' AS key WHERE $1 AND $2 AND $3",
        "action": {"type": "statement", "sql": "SELECT $1"},
    }))
    .unwrap();
    api.store.put_sweep(&def, Source::Config).await.unwrap();
    let view = api.get("/api/v1/sweeps/nightly").await.expect(200).clone();
    assert_eq!(view["source"], "config");
    put(&api, "nightly", valid_sweep())
        .await
        .problem(409, "config_sweep");
    api.call(Method::DELETE, "/api/v1/sweeps/nightly", None, None, &[])
        .await
        .problem(409, "config_sweep");
    // A config sweep still runs on request.
    api.call(Method::POST, "/api/v1/sweeps/nightly/run", None, None, &[])
        .await
        .expect(201);

    // Sweep schedules are changed with their sweep, not under /schedules.
    let mut scheduled = valid_sweep();
    scheduled["schedule"] = json!("0 */5 * * * *");
    put(&api, "hourly", scheduled).await.expect(201);
    let patch = api
        .call(
            Method::PATCH,
            "/api/v1/schedules/sweep:hourly",
            None,
            Some(json!({"cron": "0 0 * * * *"})),
            &[],
        )
        .await;
    patch.problem(409, "sweep_schedule");
    api.call(
        Method::DELETE,
        "/api/v1/schedules/sweep:hourly",
        None,
        None,
        &[],
    )
    .await
    .problem(409, "sweep_schedule");
    let made = api
        .post(
            "/api/v1/schedules",
            json!({"id": "sweep:other", "cron": "0 0 * * * *", "job": {"kind": "noop"}}),
        )
        .await;
    assert_eq!(
        made.problem(422, "invalid_field")["errors"][0]["field"],
        "id"
    );
}
