//! Exporting traces and metrics over OTLP/HTTP, configured by the standard `OTEL_*`
//! variables and off unless an endpoint is set: `OTEL_EXPORTER_OTLP_ENDPOINT` (or a signal's
//! own `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `…_METRICS_ENDPOINT`), `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`http/protobuf`, the default, or `http/json`), `…_HEADERS`, `…_TIMEOUT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and its `_ARG`,
//! `OTEL_BSP_*`, `OTEL_METRIC_EXPORT_INTERVAL`; `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` / `OTEL_METRICS_EXPORTER=none` turn a signal off.
//!
//! The SDK's exporting threads send through this process's tokio runtime, with the
//! workspace's own HTTP client.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_subscriber::registry::LookupSpan;

/// The exporters this process runs; [`Otel::shutdown`] flushes them.
#[derive(Default)]
pub struct Otel {
    traces: Option<SdkTracerProvider>,
    metrics: Option<SdkMeterProvider>,
}

/// The protocol of `signal`: `http/protobuf` unless `OTEL_EXPORTER_OTLP_{signal}_PROTOCOL` or
/// `OTEL_EXPORTER_OTLP_PROTOCOL` asks for `http/json` (gRPC is not built in).
fn protocol(signal: &str) -> Result<Protocol, String> {
    let named = std::env::var(format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"))
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    match named.trim() {
        "" | "http/protobuf" => Ok(Protocol::HttpBinary),
        "http/json" => Ok(Protocol::HttpJson),
        other => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL: {other:?} is not supported; use http/protobuf or http/json"
        )),
    }
}

/// Whether the environment asks to export `signal` (`TRACES`, `METRICS`).
fn wanted(signal: &str) -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let none = std::env::var(format!("OTEL_{signal}_EXPORTER")).is_ok_and(|v| v == "none");
    !disabled
        && !none
        && (set("OTEL_EXPORTER_OTLP_ENDPOINT")
            || set(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")))
}

impl Otel {
    /// Starts the exporters the environment asks for, naming the service `service` unless
    /// `OTEL_SERVICE_NAME` does; `role` (`serve`, `worker`, `api`) is a resource attribute.
    /// Must run inside the tokio runtime the process keeps until [`Otel::shutdown`]. Sets
    /// the global meter provider, so call it before anything records a metric.
    pub fn from_env(service: &str, role: &str) -> Result<Otel, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "OpenTelemetry starts inside the tokio runtime".to_owned())?;
        let timeout_ms = std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT")
            .ok()
            .and_then(|ms| ms.trim().parse().ok())
            .unwrap_or(10_000);
        let client = Exporter {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_millis(timeout_ms))
                .build()
                .map_err(|e| format!("OTLP HTTP client: {e}"))?,
            runtime,
        };
        let mut resource = Resource::builder().with_attributes([
            opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            opentelemetry::KeyValue::new("longshore.role", role.to_owned()),
        ]);
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name(service.to_owned());
        }
        let resource = resource.build();
        let mut otel = Otel::default();
        if wanted("TRACES") {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(protocol("TRACES")?)
                .with_http_client(client.clone())
                .build()
                .map_err(|e| format!("OTLP trace exporter: {e}"))?;
            otel.traces = Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource.clone())
                    .build(),
            );
        }
        if wanted("METRICS") {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(protocol("METRICS")?)
                .with_http_client(client)
                .build()
                .map_err(|e| format!("OTLP metric exporter: {e}"))?;
            let provider = SdkMeterProvider::builder()
                .with_periodic_exporter(exporter)
                .with_resource(resource)
                .build();
            opentelemetry::global::set_meter_provider(provider.clone());
            otel.metrics = Some(provider);
        }
        if otel.traces.is_some() || otel.metrics.is_some() {
            longshore_jobs::telemetry::set_exporting();
        }
        Ok(otel)
    }

    /// Whether traces are exported.
    pub fn traces(&self) -> bool {
        self.traces.is_some()
    }

    /// Whether metrics are exported.
    pub fn metrics(&self) -> bool {
        self.metrics.is_some()
    }

    /// The `tracing` layer that turns spans into exported ones, when traces are exported.
    pub fn layer<S>(&self) -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let tracer = self.traces.as_ref()?.tracer("longshore");
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_tracked_inactivity(false)
                .with_threads(false),
        )
    }

    /// Exports what is still buffered and stops the exporters. Blocks: call it outside the
    /// runtime's tasks, while the runtime still runs.
    pub fn shutdown(&self) {
        if let Some(traces) = &self.traces
            && let Err(error) = traces.shutdown()
        {
            eprintln!("warning: OpenTelemetry traces: {error}");
        }
        if let Some(metrics) = &self.metrics
            && let Err(error) = metrics.shutdown()
        {
            eprintln!("warning: OpenTelemetry metrics: {error}");
        }
    }
}

/// The exporters' HTTP client: the SDK calls it from its own threads, so each request runs
/// as a task on the process's runtime.
#[derive(Clone, Debug)]
struct Exporter {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for Exporter {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let (head, body) = request.into_parts();
            let answer = client
                .request(head.method, head.uri.to_string())
                .headers(head.headers)
                .body(body)
                .send()
                .await?;
            let (status, headers) = (answer.status(), answer.headers().clone());
            let body = answer.bytes().await?;
            let mut response = Response::new(body);
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            Ok::<_, HttpError>(response)
        });
        sent.await?
    }
}
