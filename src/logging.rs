//! The server's logs (text or JSON lines on stderr, filtered by `log.filter`) and, when
//! `OTEL_*` asks for it, the layer that exports spans. JSON lines written inside a span that
//! is exported carry its `trace_id` and `span_id`, so a log line leads to its trace.

use std::fmt::Write as _;

use longshore_workers::otel::Otel;
use opentelemetry::trace::TraceContextExt;
use tracing::{Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat};

/// Installs the logger and, when traces are exported, the span exporter. The filter of
/// `log.filter` applies to the log lines only: Longshore's spans are exported at `info`
/// whatever it says.
pub fn init(config: &Config, otel: &Otel) {
    use std::io::IsTerminal;
    let filter = EnvFilter::new(&config.log.filter);
    // Colours only for a terminal: a log file or collector gets plain text.
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let lines = match config.log.format {
        LogFormat::Json => lines
            .json()
            .event_format(WithTraceIds(Format::default().json()))
            .fmt_fields(JsonFields::new())
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => lines.with_filter(filter).boxed(),
    };
    let spans = otel.layer().map(|layer| {
        let ours = [
            "longshore",
            "longshore_jobs",
            "longshore_workers",
            "longshore_api",
        ];
        layer.with_filter(
            Targets::new()
                .with_targets(ours.map(|target| (target, Level::INFO)))
                .with_default(Level::WARN),
        )
    });
    tracing_subscriber::registry()
        .with(lines)
        .with(spans)
        .init();
}

/// The JSON line of an event, with the ids of the exported span it happened in.
struct WithTraceIds(Format<Json>);

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // Entering an exported span makes its context the current one.
        let context = opentelemetry::Context::current();
        let span = context.span();
        let ids = span.span_context();
        if ids.is_valid() && line.ends_with("}\n") {
            line.truncate(line.len() - 2);
            write!(
                line,
                r#","trace_id":"{}","span_id":"{}"}}"#,
                ids.trace_id(),
                ids.span_id()
            )?;
            line.push('\n');
        }
        writer.write_str(&line)
    }
}
