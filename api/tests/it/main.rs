//! The API, driven in-process through `api::app(state)`, on SQLite and on Postgres
//! (`name::sqlite`, `name::postgres`) through the one per-backend harness of `testkit`.

mod auth;
mod dashboard;
mod events;
mod hostile;
mod idempotency;
mod jobs;
mod lifecycle;
mod metrics;
mod operations;
mod parse_errors;
mod queues;
mod schedules;
mod sweeps;

use std::sync::Arc;

use longshore_api::{ApiConfig, ApiState, app};
use longshore_jobs::admin::{Scope, new_token};
use longshore_jobs::target::{TargetDef, Targets};
use longshore_jobs::{Client, Registry, Store, StoreConfig, kinds};
use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderMap, Method, StatusCode};
use poem::test::TestClient;
use poem::{EndpointExt, Response};
use serde_json::Value;

/// A fresh database and an API over it.
pub struct TestApi {
    pub store: Store,
    pub url: String,
    pub state: ApiState,
    pub cli: TestClient<BoxEndpoint<'static, Response>>,
    _dir: Option<longshore_testkit::TempDir>,
}

/// An answer: status, headers, JSON body (`Null` when empty or not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        self.expect(status);
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            content_type,
            Some("application/problem+json"),
            "{}",
            self.body
        );
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status, "{}", self.body);
        assert!(self.body["request_id"].is_string(), "{}", self.body);
        &self.body
    }
}

pub use longshore_testkit::{Backend, per_backend};

impl TestApi {
    pub async fn new(backend: Backend) -> Option<TestApi> {
        TestApi::with_config(backend, ApiConfig::default()).await
    }

    pub async fn with_config(backend: Backend, config: ApiConfig) -> Option<TestApi> {
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let (url, dir) = longshore_testkit::sqlite_url();
                (url, Some(dir))
            }
            Backend::Postgres => (longshore_testkit::postgres_url().await?, None),
        };
        let store = Store::connect(&StoreConfig {
            url: url.clone(),
            ..StoreConfig::default()
        })
        .await
        .expect("store connects");
        // Targets the sweep tests prepare on: `local`, an in-memory SQLite database, and on
        // Postgres `pg`, the test's own database.
        let mut targets = std::collections::BTreeMap::from([(
            "local".to_owned(),
            TargetDef {
                url: "sqlite::memory:".to_owned(),
            },
        )]);
        if url.starts_with("postgres") {
            targets.insert("pg".to_owned(), TargetDef { url: url.clone() });
        }
        let targets = Arc::new(Targets::new(targets));
        let mut registry = Registry::new();
        kinds::register_builtins(&mut registry);
        registry.register(longshore_workers::kinds::Sweep::new(Arc::clone(&targets)));
        registry.register(longshore_workers::kinds::Lifecycle::new(Arc::new(
            lifecycle(),
        )));
        let keyring = longshore_jobs::secret::Keyring::parse(&[
            "test:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ])
        .expect("a test key");
        let state = ApiState::new(Client::new(store.clone(), Arc::new(registry)), config)
            .with_targets(targets)
            .with_webhooks(keyring, std::time::Duration::from_secs(3600))
            .with_lifecycle(
                lifecycle().event_types(),
                Arc::new(longshore_workers::ingest::IngesterSet::default()),
            );
        let cli = TestClient::new(app(state.clone()).map_to_response().boxed());
        Some(TestApi {
            store,
            url,
            state,
            cli,
            _dir: dir,
        })
    }

    /// Stores a token with `scope` and returns its secret.
    pub async fn token(&self, scope: Scope) -> String {
        let (row, token, hash) = new_token(&format!("{scope}-token"), vec![scope]);
        self.store.create_token(&row, &hash).await.unwrap();
        self.state.forget_tokens();
        token
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.cli.request(method, path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body_json(&body);
        }
        let response = request.send().await;
        let status = response.0.status();
        let headers = response.0.headers().clone();
        let text = response
            .0
            .into_body()
            .into_string()
            .await
            .unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, None, Some(body), &[]).await
    }
}

/// The cascades the API tests know: `user.deleted` and `user.blocked`, each a `noop` job.
pub fn lifecycle() -> longshore_workers::kinds::LifecycleConfig {
    let step = longshore_workers::kinds::lifecycle::StepDef::job("note", "noop");
    longshore_workers::kinds::LifecycleConfig {
        cascades: ["user.deleted", "user.blocked"]
            .map(|t| (t.to_owned(), vec![step.clone()]))
            .into(),
        ..Default::default()
    }
}
