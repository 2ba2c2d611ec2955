//! # longshore-api
//!
//! The control plane: an OpenAPI service on poem-openapi. It knows nothing of apalis: it
//! talks to the store through `longshore-jobs`.
//!
//! [`app`] builds the endpoint, so tests drive it in-process; [`serve`] binds and runs it.

use std::net::SocketAddr;

use longshore_jobs::{Client, Store};
use poem::listener::{Acceptor, TcpAcceptor};
use poem::{Endpoint, EndpointExt, Route, Server};
use poem_openapi::OpenApiService;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

mod routes;

/// The API server's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The address to listen on. Defaults to `127.0.0.1:8080`.
    pub listen: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// What every route needs. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// Validates and stores enqueued jobs.
    pub client: Client,
}

impl ApiState {
    /// The store.
    pub fn store(&self) -> &Store {
        self.client.store()
    }
}

/// The whole HTTP surface: `/healthz`, `/readyz` and `/api/v1` with its spec.
pub fn app(state: ApiState) -> impl Endpoint {
    let api = OpenApiService::new(
        routes::health::HealthApi::new(state),
        "Longshore",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/");
    let spec = api.spec_endpoint();
    Route::new()
        .nest("/api/v1/openapi.json", spec)
        .nest("/", api)
        .with(poem::middleware::Tracing)
}

/// Binds `config.listen` and serves until `shutdown`, finishing requests in flight.
pub async fn serve(
    config: &ApiConfig,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    let addr = acceptor.local_addr();
    tracing::info!(addr = ?addr.first(), "api listening");
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            app(state),
            async move { shutdown.cancelled().await },
            Some(std::time::Duration::from_secs(10)),
        )
        .await
}
