//! `/healthz` (the process is up) and `/readyz` (the database answers; what is degraded,
//! such as an ingester that cannot reach Redis, is listed without failing the probe: the
//! jobs keep running).

use poem_openapi::payload::PlainText;
use poem_openapi::{ApiResponse, OpenApi};

use crate::ApiState;

/// Liveness and readiness probes.
pub struct HealthApi {
    state: ApiState,
}

impl HealthApi {
    pub fn new(state: ApiState) -> Self {
        HealthApi { state }
    }
}

#[derive(ApiResponse)]
enum Ready {
    /// The database answers (and, a line each, what is degraded: an ingester without Redis).
    #[oai(status = 200)]
    Ready(PlainText<String>),
    /// The database does not answer.
    #[oai(status = 503)]
    NotReady(PlainText<String>),
}

#[OpenApi]
impl HealthApi {
    /// The process is up.
    #[oai(path = "/healthz", method = "get")]
    async fn healthz(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// The process can reach its database.
    #[oai(path = "/readyz", method = "get")]
    async fn readyz(&self) -> Ready {
        match self.state.store().ping().await {
            Ok(()) => {
                let mut text = "ready".to_owned();
                for degraded in self.state.lifecycle.ingesters.degraded() {
                    text.push_str("\ndegraded: ");
                    text.push_str(&degraded);
                }
                Ready::Ready(PlainText(text))
            }
            Err(error) => {
                tracing::warn!(%error, "readiness check failed");
                Ready::NotReady(PlainText("database unavailable".to_owned()))
            }
        }
    }
}
