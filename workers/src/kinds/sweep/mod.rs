//! `sweep`: one pass of a declared sweep (see `longshore_jobs::sweep`). `{"sweep": "guests"}`
//! acts; `{"sweep": "guests", "dry_run": true}` only counts what a pass would touch. The pass
//! itself, step by step, is in `pass`; the SQL it runs on its target, in `query`.

use longshore_jobs::telemetry::{self, OTEL_NAME, OUTCOME, SWEEP_ACTED, SWEEP_MATCHED, SWEEP_NAME};
use opentelemetry::KeyValue;
use std::sync::Arc;
use tracing::Instrument;

use longshore_jobs::target::{Target, TargetError, Targets};
use longshore_jobs::{JobContext, JobError, JobResult, Kind, KindOptions, event};
use serde::{Deserialize, Serialize};

mod pass;
mod query;

use pass::Pass;

/// Runs sweep passes. Definitions are read from the store at the start of each pass, so a
/// sweep changed through the API applies from its next pass.
pub struct Sweep {
    targets: Arc<Targets>,
}

/// `{"sweep": "guests", "dry_run": false}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepArgs {
    /// The sweep's name.
    pub sweep: String,
    /// Count only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl Sweep {
    /// The kind for the sweeps of the store it runs on, on `targets`.
    pub fn new(targets: Arc<Targets>) -> Sweep {
        Sweep { targets }
    }

    async fn target(&self, name: &str) -> Result<Target, JobError> {
        self.targets.get(name).await.map_err(|e| match e {
            TargetError::Unknown(_) => JobError::fatal(e),
            TargetError::Unreachable { .. } => JobError::retry(e),
        })
    }
}

impl Kind for Sweep {
    const NAME: &'static str = "sweep";
    type Args = SweepArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            max_attempts: 5,
            ..KindOptions::default()
        }
    }

    async fn run(&self, job: JobContext, args: SweepArgs) -> JobResult {
        let span = tracing::info_span!(
            "sweep",
            { OTEL_NAME } = %format_args!("sweep {}", args.sweep),
            { SWEEP_NAME } = %args.sweep,
            { SWEEP_MATCHED } = tracing::field::Empty,
            { SWEEP_ACTED } = tracing::field::Empty,
        );
        async {
            let mut pass = Pass::start(self, &job, &args).await?;
            while let Some(page) = pass.next_page().await? {
                pass.act_on(page).await?;
                pass.report(event::SWEEP_PAGE).await;
                pass.pause().await;
            }
            let counts = pass.counts();
            let result = pass.finish().await;
            let span = tracing::Span::current();
            span.record(SWEEP_MATCHED, counts.0);
            span.record(SWEEP_ACTED, counts.1);
            // A dry run changes nothing, and counts in no metric.
            let rows = &telemetry::metrics::get().sweep_rows;
            let counted = if args.dry_run {
                Vec::new()
            } else {
                vec![("matched", counts.0), ("acted", counts.1)]
            };
            for (outcome, n) in counted {
                let attributes = [
                    KeyValue::new(SWEEP_NAME, args.sweep.clone()),
                    KeyValue::new(OUTCOME, outcome),
                ];
                rows.add(n, &attributes);
            }
            result
        }
        .instrument(span)
        .await
    }
}
