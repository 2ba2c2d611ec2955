//! # longshore-api
//!
//! The control plane: an OpenAPI service on poem-openapi under `/api/v1`, with the spec at
//! `/api/v1/openapi.json` and a docs UI at `/api/v1/docs`. It knows nothing of apalis: it
//! talks to the store through `longshore-jobs`.
//!
//! [`app`] builds the endpoint, so tests drive it in-process; [`serve`] binds and runs it.
//!
//! ## Layout
//! - [`problem`]: every error as `application/problem+json`.
//! - [`auth`]: bearer tokens and scopes; `middleware` applies them with the body limit and
//!   the request id, and shapes poem's own errors; `validate` checks a request it could not
//!   parse against the spec, to name every field at fault.
//! - [`model`]: the resources of the spec.
//! - `routes/`: one file per resource; [`events`]: the event hub behind the SSE stream.

// Routes return `Result<_, ApiError>`, whose variants carry the problem body inline as
// poem-openapi's response types need; errors are the cold path.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use longshore_jobs::target::Targets;
use longshore_jobs::{Client, Store};
use poem::{Endpoint, EndpointExt, IntoEndpoint, Route};
use poem_openapi::OpenApiService;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub mod auth;
pub mod bulk;
mod cursor;
pub mod dashboard;
pub mod events;
pub mod fingerprint;
pub mod metrics;
mod middleware;
pub mod model;
pub mod problem;
mod routes;
mod server;
mod validate;

pub use auth::Principal;

/// The API server's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The address to listen on. Defaults to `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Largest request body in bytes; larger ones get 413. Defaults to 4 MiB.
    pub max_body_bytes: usize,
    /// How often an idle event stream sends a heartbeat comment. Defaults to 15 s.
    #[serde(with = "humantime_serde")]
    pub sse_heartbeat: Duration,
    /// A stream client (SSE) whose stream has not moved for this long, and any connection
    /// whose write has waited this long for the client to read, is cut off: the server holds
    /// a bounded backlog per client, and the client resumes with `Last-Event-ID`. Defaults
    /// to 30 s.
    #[serde(with = "humantime_serde")]
    pub slow_client: Duration,
    /// The longest a client may take to send a request's headers, and the longest an idle
    /// connection stays open. Defaults to 10 s.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// The longest a client may take to send a request's body; slower ones get 408.
    /// Defaults to 10 s.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// The longest a request may take once received (event streams excepted): a read that
    /// outlasts it gets 503, a change 504 (it may or may not have been made). Defaults to 15 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Whether `GET /metrics` answers without a token (for a scraper inside the network).
    /// Defaults to false: a `read` token is needed once auth is on.
    pub public_metrics: bool,
}

impl ApiConfig {
    /// Checks the config, naming the bad field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let second = Duration::from_secs(1);
        if !(second..=Duration::from_secs(3600)).contains(&self.slow_client) {
            return Err(("slow_client", "must be 1s to 1h".to_owned()));
        }
        if !(second..=Duration::from_secs(600)).contains(&self.sse_heartbeat) {
            return Err(("sse_heartbeat", "must be 1s to 10min".to_owned()));
        }
        Ok(())
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 << 20,
            sse_heartbeat: Duration::from_secs(15),
            slow_client: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            public_metrics: false,
        }
    }
}

/// What every route needs. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// Validates and stores enqueued jobs.
    pub client: Client,
    /// The target databases sweeps may name (declared in the config file only).
    pub(crate) targets: Arc<Targets>,
    pub(crate) webhooks: Arc<WebhookKeys>,
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// The windows of the active-users gauge, shortest first.
    pub(crate) activity: Arc<Vec<(String, Duration)>>,
    pub(crate) shared: Arc<Shared>,
}

/// What the lifecycle routes need: the event types the cascades handle, and the ingesters.
pub(crate) struct Lifecycle {
    pub event_types: Vec<String>,
    pub ingesters: Arc<dyn longshore_jobs::lifecycle::Ingesters>,
}

/// No ingesters: what a process without `[[ingesters]]` reports.
struct NoIngesters;

impl longshore_jobs::lifecycle::Ingesters for NoIngesters {
    fn reports(
        &self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Vec<longshore_jobs::lifecycle::IngesterReport>>
                + Send
                + '_,
        >,
    > {
        Box::pin(std::future::ready(Vec::new()))
    }

    fn degraded(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What the webhook routes need of the config: the keys secrets are sealed with, and how
/// long a rotated secret keeps signing.
#[derive(Debug, Default)]
pub(crate) struct WebhookKeys {
    pub keyring: longshore_jobs::secret::Keyring,
    pub rotation_grace: Duration,
}

pub(crate) struct Shared {
    pub config: ApiConfig,
    pub require_auth: bool,
    pub tokens: auth::TokenCache,
    pub stats: Mutex<Option<(std::time::Instant, model::StatsView)>>,
    pub cursor_key: tokio::sync::OnceCell<Vec<u8>>,
    pub events: events::EventHub,
    pub pushes: events::PushHub,
    pub bulk: bulk::BulkRunner,
    pub gateways: Arc<routes::push::Gateways>,
}

impl ApiState {
    /// The state of an API serving `config`. Auth is required when `config.listen` is not
    /// a loopback address.
    pub fn new(client: Client, config: ApiConfig) -> ApiState {
        let require_auth = !config.listen.ip().is_loopback();
        let events = events::EventHub::new(client.store().clone(), config.slow_client);
        let pushes = events::PushHub::new(client.store().clone(), config.slow_client);
        let bulk = bulk::BulkRunner::new(client.store().clone());
        ApiState {
            client,
            targets: Arc::default(),
            webhooks: Arc::new(WebhookKeys {
                keyring: Default::default(),
                rotation_grace: Duration::from_secs(24 * 3600),
            }),
            lifecycle: Arc::new(Lifecycle {
                event_types: Vec::new(),
                ingesters: Arc::new(NoIngesters),
            }),
            activity: Arc::new(
                longshore_jobs::activity::ActivityConfig::default()
                    .windows()
                    .unwrap_or_default(),
            ),
            shared: Arc::new(Shared {
                config,
                require_auth,
                tokens: auth::TokenCache::default(),
                stats: Mutex::new(None),
                cursor_key: tokio::sync::OnceCell::new(),
                events,
                pushes,
                bulk,
                gateways: Arc::default(),
            }),
        }
    }

    /// The same state with `targets` as the databases sweeps may name.
    pub fn with_targets(self, targets: Arc<Targets>) -> ApiState {
        ApiState { targets, ..self }
    }

    /// The same state sealing webhook secrets with `keyring`, a rotated secret signing on
    /// for `rotation_grace`.
    pub fn with_webhooks(
        self,
        keyring: longshore_jobs::secret::Keyring,
        rotation_grace: Duration,
    ) -> ApiState {
        ApiState {
            webhooks: Arc::new(WebhookKeys {
                keyring,
                rotation_grace,
            }),
            ..self
        }
    }

    /// The event types lifecycle events may have, and the ingesters to report on.
    pub fn with_lifecycle(
        self,
        event_types: Vec<String>,
        ingesters: Arc<dyn longshore_jobs::lifecycle::Ingesters>,
    ) -> ApiState {
        ApiState {
            lifecycle: Arc::new(Lifecycle {
                event_types,
                ingesters,
            }),
            ..self
        }
    }

    /// The same state counting active users over `windows` (named, shortest first).
    pub fn with_activity(self, windows: Vec<(String, Duration)>) -> ApiState {
        ApiState {
            activity: Arc::new(windows),
            ..self
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.client.store()
    }

    /// The runner of bulk operations.
    pub fn bulk(&self) -> &bulk::BulkRunner {
        &self.shared.bulk
    }

    /// Forgets cached tokens (after creating or revoking one).
    pub fn forget_tokens(&self) {
        self.shared.tokens.forget();
    }
}

/// The id of a request: the caller's `x-request-id` when sane, else a new one.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Refuses to serve beyond loopback while no token exists.
pub async fn check_exposure(config: &ApiConfig, store: &Store) -> Result<(), String> {
    if config.listen.ip().is_loopback() {
        return Ok(());
    }
    match store.active_tokens().await {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err(format!(
            "refusing to listen on {} without an API token: create one with \
             `longshore tokens create --name admin --scope admin`, or listen on 127.0.0.1",
            config.listen
        )),
        Err(error) => Err(format!("cannot check for API tokens: {error}")),
    }
}

/// The whole HTTP surface: the dashboard at `/`, `/healthz`, `/readyz` and `/api/v1` with its
/// spec and docs.
pub fn app(state: ApiState) -> impl Endpoint {
    let api = OpenApiService::new(
        routes::apis(state.clone()),
        "Longshore",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Durable jobs: enqueue, inspect, retry and cancel them, operate queues, and follow \
         the event stream. Errors are application/problem+json.",
    )
    .server("/api/v1");
    let health = OpenApiService::new(
        routes::health::HealthApi::new(state.clone()),
        "Longshore probes",
        env!("CARGO_PKG_VERSION"),
    );
    let checker = Arc::new(validate::Spec::new(&[
        ("/api/v1", api.spec()),
        ("", health.spec()),
    ]));
    let health = Arc::new(health.into_endpoint());
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    Route::new()
        .nest("/api/v1/openapi.json", spec)
        .nest("/api/v1/docs", docs)
        .nest("/api/v1", api)
        .at("/", dashboard::Dashboard)
        .at("/index.html", dashboard::Dashboard)
        .at("/favicon.svg", dashboard::Dashboard)
        .nest_no_strip("/assets", dashboard::Dashboard)
        .at("/metrics", metrics::Metrics)
        .at("/healthz", health.clone())
        .at("/readyz", health)
        // A panic in a route is a 500 problem, never a connection dropped without an answer.
        .with(poem::middleware::CatchPanic::new().with_handler(middleware::panic_problem))
        .around(middleware::around)
        .data(checker)
        .data(state)
}

/// Binds `config.listen` and serves until `shutdown`, finishing requests in flight.
pub async fn serve(
    config: &ApiConfig,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = bind(config).await?;
    serve_on(listener, config, state, shutdown).await
}

/// Binds `config.listen`: a process binds before it starts anything else, so a port in use
/// stops it at once.
pub async fn bind(config: &ApiConfig) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.listen).await
}

/// Serves on a bound `listener` until `shutdown`, finishing requests in flight.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: &ApiConfig,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tokio::spawn(state.bulk().clone().run(shutdown.clone()));
    server::run(
        listener,
        app(state),
        config.header_timeout,
        config.slow_client,
        shutdown,
    )
    .await
}
