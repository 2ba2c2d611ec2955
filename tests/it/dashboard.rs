//! The dashboard in a real headless Chromium against the real binary: what an operator does
//! when something failed — find it, read why, fix it, watch it complete — live, with no
//! reload; bulk and group retries after their dry-run counts; queues and schedules; a
//! read-only token that sees no action and whose forged request is refused; and a server
//! restart the live feed survives with no gap.
//!
//! With `LONGSHORE_SCREENSHOTS=docs` the tests also save the README's pictures there.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::support::{FAST, Proc, TestDb, eventually, free_port, wait_ready};

/// A key for sealing webhook secrets, as an operator makes one.
const KEY: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The end of a job's id, as the page shows it.
fn tail(id: &Value) -> &str {
    let id = id.as_str().unwrap();
    &id[id.len() - 12..]
}

fn serve_on(db: &TestDb, listen: &str) -> Proc {
    let args = [&["serve", "--listen", listen][..], FAST].concat();
    db.spawn_env(
        "serve",
        &args,
        &[("LONGSHORE_SECRETS__KEYS", KEY), ("LONGSHORE_LOG", "warn")],
    )
}

/// Where screenshots go: `LONGSHORE_SCREENSHOTS` (e.g. `docs`, for the README), else a
/// temporary folder of the test's.
fn shots(db: &TestDb) -> PathBuf {
    match std::env::var("LONGSHORE_SCREENSHOTS") {
        Ok(dir) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir),
        Err(_) => db.path("screenshots"),
    }
}

/// The API, as the test's own client (not through the page).
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/api/v1{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "PUT" => self.http.put(url),
            _ => self.http.post(url),
        }
        .bearer_auth(&self.token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self.send("POST", path, Some(body)).await;
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {answer}"
        );
        answer
    }

    /// Jobs of the `default` queue in `state` (the built-in prune schedule runs in its own).
    async fn count(&self, state: &str) -> i64 {
        self.get("/queues/default").await["counts"][state]
            .as_i64()
            .unwrap_or(0)
    }

    async fn wait_count(&self, state: &str, n: i64) {
        eventually(
            Duration::from_secs(60),
            &format!("{n} jobs {state}"),
            || async { (self.count(state).await == n).then_some(()) },
        )
        .await;
    }
}

/// Signs in on the page with `token` and waits for the live feed.
async fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/")).await;
    browser.wait_text("form.signin", "Sign in").await;
    browser.type_into("#token", token).await;
    browser.click("form.signin button", "Sign in").await;
    browser.wait_text("#live", "live").await;
}

/// Marks the page, so a test can tell later that it was not reloaded.
async fn mark(browser: &Browser) {
    browser
        .eval("window.__not_reloaded = true; return null;", json!([]))
        .await;
}

async fn still_marked(browser: &Browser) {
    assert_eq!(
        browser
            .eval("return window.__not_reloaded === true;", json!([]))
            .await,
        json!(true),
        "the page was reloaded"
    );
}

/// One test's stage: a browser, a database, `longshore serve` on it, and the test's own API
/// client with an admin token (defining schedules and endpoints is an admin's).
struct Stage {
    browser: Browser,
    db: TestDb,
    listen: String,
    base: String,
    serve: Proc,
    api: Api,
}

impl Stage {
    /// `None` when the browser is not installed outside CI.
    async fn start() -> Option<Stage> {
        let browser = Browser::start().await?;
        let db = TestDb::sqlite().await;
        let admin = db.create_token("root", "admin");
        let listen = format!("127.0.0.1:{}", free_port());
        let base = format!("http://{listen}");
        let serve = serve_on(&db, &listen);
        wait_ready(&base).await;
        let api = Api {
            http: reqwest::Client::new(),
            base: base.clone(),
            token: admin,
        };
        Some(Stage {
            browser,
            db,
            listen,
            base,
            serve,
            api,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_a_failure_retries_it_and_watches_it_complete_in_a_real_browser() {
    let Some(Stage {
        browser,
        db,
        base,
        api,
        serve: _serve,
        ..
    }) = Stage::start().await
    else {
        return;
    };
    let operator = db.create_token("ops", "operate");
    let shots = shots(&db);

    // Sign in: the token is asked for, kept for the tab, never put in the URL.
    sign_in(&browser, &base, &operator).await;
    let url = browser.eval("return location.href;", json!([])).await;
    assert!(!url.as_str().unwrap().contains("lsh_"), "{url}");
    browser
        .wait_text("header .who", "token:ops · operate")
        .await;

    // A failing job appears in the explorer live, without a reload.
    browser
        .goto(&format!("{base}/#/jobs?state=discarded"))
        .await;
    browser.wait_text("main h1", "Jobs").await;
    mark(&browser).await;
    let failing = api
        .post(
            "/jobs",
            json!({"kind": "sleep", "max_attempts": 1,
                   "args": {"ms": 10, "fail": "upstream 10.1.2.3:443 timed out after 30 s",
                            "fail_attempts": 1}}),
        )
        .await;
    let id = failing["id"].as_str().unwrap().to_owned();
    browser
        .until(
            "the failed job in the explorer",
            "return !!document.querySelector(`tr[data-id='${arguments[0]}']`);",
            json!([id]),
        )
        .await;
    still_marked(&browser).await;
    browser
        .wait_text(&format!("tr[data-id='{id}']"), "discarded")
        .await;

    // Open it: each attempt's error is there.
    browser
        .click(&format!("tr[data-id='{id}'] a"), &id[id.len() - 12..])
        .await;
    browser
        .wait_text("main", "upstream 10.1.2.3:443 timed out after 30 s")
        .await;
    assert_eq!(browser.count("tr.attempt").await, 1);
    browser.screenshot(&shots.join("job.png")).await;

    // Retry it from the page: it turns completed, live.
    browser.click("main .actions button", "Retry").await;
    browser.wait_text("main .title", "completed").await;
    browser.wait_text("#timeline", "job.completed").await;
    assert_eq!(browser.count("tr.attempt").await, 2);
    still_marked(&browser).await;

    // Bulk: 500 failed jobs, retried through "all matching" after the dry-run count.
    for chunk in 0..5 {
        let jobs: Vec<Value> = (0..100)
            .map(|i| {
                json!({"kind": "sleep", "max_attempts": 1, "tags": ["bulk"],
                       "args": {"ms": 1, "fail": format!("card {} declined", chunk * 100 + i),
                                "fail_attempts": 1}})
            })
            .collect();
        api.post("/jobs/batch", json!({ "jobs": jobs })).await;
    }
    api.wait_count("discarded", 500).await;
    browser
        .goto(&format!("{base}/#/jobs?state=discarded&q=tag%3Abulk"))
        .await;
    browser.wait_text(".tabs", "discarded").await;
    browser.wait_text("main table", "card").await;
    browser.screenshot(&shots.join("explorer.png")).await;
    browser.click(".bulk button", "Retry all matching").await;
    browser.wait_text("dialog.confirm", "500").await;
    assert!(
        browser
            .text("dialog.confirm")
            .await
            .contains("retry 500 jobs"),
        "{}",
        browser.text("dialog.confirm").await
    );
    browser
        .click("dialog.confirm button", "retry 500 jobs")
        .await;
    // The page follows the operation to its end and says what it did.
    browser.wait_text("#toasts", "500 done, 0 skipped").await;
    api.wait_count("discarded", 0).await;
    api.wait_count("completed", 501).await;

    // A failure group: thirty jobs failing alike, with different numbers and addresses.
    let jobs: Vec<Value> = (0..30)
        .map(|i| {
            json!({"kind": "sleep", "max_attempts": 1,
                   "args": {"ms": 1, "fail_attempts": 1,
                            "fail": format!("payment 77{i} refused by 10.0.0.{i}:8443")}})
        })
        .collect();
    api.post("/jobs/batch", json!({ "jobs": jobs })).await;
    let other = api
        .post(
            "/jobs",
            json!({"kind": "sleep", "max_attempts": 1,
                   "args": {"ms": 1, "fail": "disk full on /var/lib/x"}}),
        )
        .await;
    api.wait_count("discarded", 31).await;
    browser.goto(&format!("{base}/#/failures")).await;
    browser
        .wait_text("main table", "payment # refused by #")
        .await;
    browser.wait_text("main table", "disk full").await;
    browser.screenshot(&shots.join("failures.png")).await;
    browser.click("tr.group button", "Retry all").await;
    browser.wait_text("dialog.confirm", "retry 30 jobs").await;
    browser
        .click("dialog.confirm button", "retry 30 jobs")
        .await;
    api.wait_count("completed", 531).await;
    // The other group was left alone.
    let left = api
        .get(&format!("/jobs/{}", other["id"].as_str().unwrap()))
        .await;
    assert_eq!(left["state"], "discarded");
    browser
        .until(
            "the retried group to leave the page",
            "return ![...document.querySelectorAll('tr.group')]
                 .some(tr => tr.innerText.includes('payment'));",
            json!([]),
        )
        .await;

    // Pause and resume a queue.
    browser.goto(&format!("{base}/#/queues")).await;
    browser
        .click("tr[data-queue='default'] button", "Pause")
        .await;
    browser
        .wait_text("tr[data-queue='default']", "paused")
        .await;
    assert_eq!(api.get("/queues/default").await["paused"], true);
    browser
        .click("tr[data-queue='default'] button", "Resume")
        .await;
    eventually(Duration::from_secs(10), "the queue resumed", || async {
        (api.get("/queues/default").await["paused"] == false).then_some(())
    })
    .await;
    browser
        .until(
            "the paused badge to go",
            "return !document.querySelector(`tr[data-queue='default']`).innerText.includes('paused');",
            json!([]),
        )
        .await;

    // Trigger a schedule: its job appears.
    api.post(
        "/schedules",
        json!({"id": "nightly-report", "cron": "0 0 3 * * *", "timezone": "Europe/Paris",
               "job": {"kind": "noop", "args": {}}}),
    )
    .await;
    browser.goto(&format!("{base}/#/schedules")).await;
    browser
        .click("tr[data-schedule='nightly-report'] button", "Trigger")
        .await;
    browser
        .wait_text("#toasts", "Triggered nightly-report")
        .await;
    let made = eventually(Duration::from_secs(20), "the triggered job", || async {
        let jobs = api.get("/schedules/nightly-report/jobs").await;
        jobs.as_array()?.first().map(|job| job["id"].clone())
    })
    .await;
    // Its history on the page shows the job it made, and the next fires in its zone.
    browser
        .click("tr[data-schedule='nightly-report'] button", "History")
        .await;
    browser.wait_text("dialog.history", tail(&made)).await;
    browser
        .wait_text("dialog.history", "Next fires (Europe/Paris)")
        .await;
    browser.click("dialog.history button", "Close").await;

    // The push stream: a push arrives live, and the gateways table lists the readers.
    browser.goto(&format!("{base}/#/push")).await;
    browser.wait_text("main", "Waiting for pushes").await;
    api.post(
        "/push",
        json!({"user_id": "player-7", "kind": "match.found", "payload": {"arena": 3}}),
    )
    .await;
    browser
        .wait_text("main ol.timeline", "match.found → user player-7")
        .await;
    browser.wait_text("main table", "token:ops").await;

    // One family page, and the overview with what happened.
    api.post(
        "/webhook-endpoints",
        json!({"url": "https://hooks.example.com/longshore", "kinds": ["user.signup"]}),
    )
    .await;
    browser.goto(&format!("{base}/#/webhooks")).await;
    browser
        .wait_text("main table", "https://hooks.example.com/longshore")
        .await;
    browser.screenshot(&shots.join("webhooks.png")).await;
    browser.goto(&format!("{base}/#/")).await;
    browser.wait_text("main .counts", "completed").await;
    browser.wait_text("main", "Top failing kinds").await;
    browser.screenshot(&shots.join("overview.png")).await;

    // Nothing the page did broke its Content-Security-Policy.
    let severe = browser.severe_logs().await;
    assert!(
        !severe.iter().any(|m| m.contains("Content Security Policy")),
        "{severe:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_sees_no_action_and_its_forged_requests_are_refused() {
    let Some(Stage {
        browser,
        db,
        base,
        api,
        serve: _serve,
        ..
    }) = Stage::start().await
    else {
        return;
    };
    let reader = db.create_token("viewer", "read");
    let failed = api
        .post(
            "/jobs",
            json!({"kind": "sleep", "max_attempts": 1, "args": {"ms": 1, "fail": "boom"}}),
        )
        .await;
    let id = failed["id"].as_str().unwrap().to_owned();
    api.post(
        "/schedules",
        json!({"id": "hourly", "cron": "0 0 * * * *", "job": {"kind": "noop", "args": {}}}),
    )
    .await;
    api.wait_count("discarded", 1).await;

    // A wrong token is refused at sign-in, and nothing is stored in the tab.
    browser.goto(&format!("{base}/")).await;
    browser.type_into("#token", "lsh_not_a_real_token").await;
    browser.click("form.signin button", "Sign in").await;
    browser.wait_text("#signin-error", "refused").await;
    assert_eq!(
        browser
            .eval(
                "return sessionStorage.getItem('longshore.token');",
                json!([])
            )
            .await,
        Value::Null
    );

    sign_in(&browser, &base, &reader).await;
    browser.wait_text("header .who", "read").await;
    let actions = "return [...document.querySelectorAll('main button')]
        .filter(b => /Retry|Cancel|Delete|Run now|Edit|Clone|Pause|Resume|Limit|Trigger|Dry run|Redeliver|Replay/
            .test(b.innerText)).map(b => b.innerText);";
    for (page, ready) in [
        (format!("#/jobs/{id}"), "boom".to_owned()),
        (
            "#/jobs?state=discarded".to_owned(),
            id[id.len() - 12..].to_owned(),
        ),
        ("#/failures".to_owned(), "boom".to_owned()),
        ("#/queues".to_owned(), "default".to_owned()),
        ("#/schedules".to_owned(), "hourly".to_owned()),
    ] {
        browser.goto(&format!("{base}/{page}")).await;
        browser.wait_text("main", &ready).await;
        assert_eq!(
            browser.eval(actions, json!([])).await,
            json!([]),
            "{page} offers actions to a read-only token"
        );
        assert_eq!(
            browser.count("main input[type=checkbox]").await,
            0,
            "{page}"
        );
    }

    // The page's own token, used to forge what the page does not offer: every one refused.
    let forged = browser
        .eval(
            "const token = sessionStorage.getItem('longshore.token');
             const send = (method, path, body) => {
               const xhr = new XMLHttpRequest();
               xhr.open(method, '/api/v1' + path, false);
               xhr.setRequestHeader('Authorization', 'Bearer ' + token);
               xhr.setRequestHeader('Content-Type', 'application/json');
               xhr.send(body === undefined ? null : JSON.stringify(body));
               return xhr.status;
             };
             return [
               send('POST', `/jobs/${arguments[0]}/retry`),
               send('POST', '/queues/default/pause'),
               send('POST', '/schedules/hourly/trigger'),
               send('POST', '/operations', {action: 'delete', filter: {ids: [arguments[0]]}}),
               send('DELETE', `/jobs/${arguments[0]}`),
             ];",
            json!([id]),
        )
        .await;
    assert_eq!(forged, json!([403, 403, 403, 403, 403]));
    let job = api.get(&format!("/jobs/{id}")).await;
    assert_eq!(
        job["state"], "discarded",
        "the forged retry changed nothing"
    );
    assert_eq!(api.get("/queues/default").await["paused"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_resumes_with_no_gap_across_a_restart_of_the_server() {
    let Some(Stage {
        browser,
        db,
        listen,
        base,
        mut serve,
        api,
    }) = Stage::start().await
    else {
        return;
    };
    let operator = db.create_token("ops", "operate");
    sign_in(&browser, &base, &operator).await;
    browser.goto(&format!("{base}/#/events")).await;
    browser.wait_text("main h1", "Live events").await;
    mark(&browser).await;
    let before = api.post("/jobs", json!({"kind": "noop", "args": {}})).await;
    let first = before["id"].as_str().unwrap().to_owned();
    browser
        .wait_text("#events", &first[first.len() - 12..])
        .await;

    // The server stops; jobs are enqueued and run meanwhile (straight into the database).
    serve.signal(libc::SIGTERM);
    serve.wait_for_exit(Duration::from_secs(30));
    browser.wait_text("#live", "reconnecting").await;
    let client = db.client();
    let mut during = Vec::new();
    for i in 0..20 {
        let request = longshore_jobs::EnqueueRequest::new("noop", json!({ "n": i }));
        during.push(client.enqueue(request).await.unwrap().id.to_string());
    }
    let _serve = serve_on(&db, &listen);
    wait_ready(&base).await;
    browser.wait_text("#live", "live").await;
    for id in &during {
        browser.wait_text("#events", &id[id.len() - 12..]).await;
    }
    let after = api.post("/jobs", json!({"kind": "noop", "args": {}})).await;
    browser.wait_text("#events", tail(&after["id"])).await;
    still_marked(&browser).await;

    // No gap: every event stored from the page's first one on comes to the page, once.
    let first_event = api.get(&format!("/jobs/{first}/events")).await[0]["id"]
        .as_i64()
        .unwrap();
    let stored = api
        .get(&format!("/events?after={}&limit=1000", first_event - 1))
        .await;
    let stored: Vec<i64> = stored["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(stored.len() > 40, "{} events stored", stored.len());
    browser
        .until(
            "every stored event on the page",
            "const shown = new Set([...document.querySelectorAll('#events li')]
                 .map(li => Number(li.dataset.id)));
             return arguments[0].every(id => shown.has(id));",
            json!([stored]),
        )
        .await;
    let shown: Vec<i64> = serde_json::from_value(
        browser
            .eval(
                "return [...document.querySelectorAll('#events li')].map(li => Number(li.dataset.id));",
                json!([]),
            )
            .await,
    )
    .unwrap();
    let mut unique = shown.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), shown.len(), "an event shown twice: {shown:?}");
    let mut descending = shown.clone();
    descending.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(shown, descending, "the feed is newest first");
}
