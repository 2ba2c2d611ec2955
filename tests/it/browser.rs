//! A real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs): a few W3C WebDriver calls over HTTP, enough
//! to open pages, click, type, read the DOM and take screenshots.
//!
//! Lookups retry until their deadline: the dashboard redraws on live events, so an element
//! found a moment ago may have been replaced.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a lookup waits for its element by default.
pub const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver process and one browser session; both end when it drops.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
}

fn which(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or `None` when they are not installed
    /// outside CI (with `CI=true` a missing browser fails the test).
    pub async fn start() -> Option<Browser> {
        let driver = std::env::var("LONGSHORE_TEST_CHROMEDRIVER")
            .ok()
            .or_else(|| which("chromedriver"));
        let chromium = std::env::var("LONGSHORE_TEST_CHROMIUM")
            .ok()
            .or_else(|| which("chromium"));
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "chromium and chromedriver are not installed, and CI=true: failing \
                 (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipped: chromium and chromedriver are not installed");
            return None;
        };
        let port = longshore_testkit::free_port();
        // In a process group of its own, so the browsers it starts end with it.
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1440,1000",
                         "--force-device-scale-factor=1", "--lang=en-US"],
            },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("a session starts")
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        let browser = Browser {
            driver: child,
            http,
            session,
            base,
        };
        browser
            .call(
                "POST",
                "timeouts",
                json!({ "script": 30_000, "pageLoad": 30_000 }),
            )
            .await
            .expect("timeouts set");
        Some(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let response = request.send().await.map_err(|e| e.to_string())?;
        let value: Value = response.json().await.map_err(|e| e.to_string())?;
        match value["value"].get("error") {
            Some(error) => Err(format!(
                "{error}: {}",
                value["value"]["message"].as_str().unwrap_or_default()
            )),
            None => Ok(value["value"].clone()),
        }
    }

    /// Opens `url` and waits for the document to load.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "url", json!({ "url": url }))
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "execute/sync",
            json!({ "script": script, "args": args }),
        )
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns something other than `null`, `false` or `""`, and
    /// returns it.
    pub async fn until(&self, what: &str, script: &str, args: Value) -> Value {
        self.until_for(WAIT, what, script, args).await
    }

    /// [`Browser::until`] with its own deadline.
    pub async fn until_for(&self, limit: Duration, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self
                .call(
                    "POST",
                    "execute/sync",
                    json!({ "script": script, "args": args }),
                )
                .await;
            match value {
                Ok(Value::Null) | Ok(Value::Bool(false)) => {}
                Ok(Value::String(s)) if s.is_empty() => {}
                Ok(value) => return value,
                Err(_) => {}
            }
            if Instant::now() > deadline {
                let text = self.text("body").await;
                let logs = self.severe_logs().await;
                panic!("waited {limit:?} for {what}; the page shows:\n{text}\nconsole: {logs:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's text under the first element matching `css` (empty when none does).
    pub async fn text(&self, css: &str) -> String {
        self.eval(
            "const el = document.querySelector(arguments[0]); return el ? el.innerText : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until the text under `css` contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) {
        self.until(
            &format!("{css} to show {needle:?}"),
            "const el = document.querySelector(arguments[0]); \
             return !!el && el.innerText.includes(arguments[1]);",
            json!([css, needle]),
        )
        .await;
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> u64 {
        self.eval(
            "return document.querySelectorAll(arguments[0]).length;",
            json!([css]),
        )
        .await
        .as_u64()
        .unwrap_or(0)
    }

    /// Clicks, as a user does (WebDriver's element click), the first element matching
    /// `css` whose text contains `label` (any text when `label` is empty).
    pub async fn click(&self, css: &str, label: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .call(
                    "POST",
                    "execute/sync",
                    json!({
                        "script": "return [...document.querySelectorAll(arguments[0])]
                                     .find(el => el.innerText.includes(arguments[1])
                                                 && !el.disabled) || null;",
                        "args": [css, label],
                    }),
                )
                .await;
            if let Ok(element) = found
                && let Some(id) = element.get(ELEMENT).and_then(Value::as_str)
                && self
                    .call("POST", &format!("element/{id}/click"), json!({}))
                    .await
                    .is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                let text = self.text("body").await;
                panic!("nothing to click at {css} labelled {label:?}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the element matching `css`, after clearing it; waits for the
    /// element (the page's script draws the form after the document loads) and types again
    /// when a redraw replaced it meanwhile.
    pub async fn type_into(&self, css: &str, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let typed = async {
                let element = self
                    .call(
                        "POST",
                        "element",
                        json!({ "using": "css selector", "value": css }),
                    )
                    .await?;
                let id = element[ELEMENT]
                    .as_str()
                    .ok_or("not an element")?
                    .to_owned();
                self.call("POST", &format!("element/{id}/clear"), json!({}))
                    .await?;
                self.call(
                    "POST",
                    &format!("element/{id}/value"),
                    json!({ "text": text }),
                )
                .await
            }
            .await;
            match typed {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!("nothing to type into at {css}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let data = self
            .call("GET", "screenshot", Value::Null)
            .await
            .expect("a screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// The browser's console messages of level SEVERE (a CSP violation is one).
    pub async fn severe_logs(&self) -> Vec<String> {
        let logs = self
            .call("POST", "se/log", json!({ "type": "browser" }))
            .await
            .unwrap_or(Value::Array(Vec::new()));
        logs.as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE" || entry["level"] == "WARNING")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the driver's own process group (the driver and its browsers).
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
