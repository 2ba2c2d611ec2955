//! `lifecycle.step`: the `sql` and `push` steps of a cascade, looked up in the config by the
//! event type and the step's name (a job carries no SQL of its own, so nothing sent to the
//! API can run a statement). `http` and `job` steps are jobs of their own kinds.

use std::sync::Arc;

use longshore_jobs::lifecycle::LifecycleEvent;
use longshore_jobs::push::NewPush;
use longshore_jobs::target::Targets;
use longshore_jobs::{JobContext, JobError, JobId, JobResult, Kind, KindOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{LifecycleConfig, template};

/// The kind's name.
pub const NAME: &str = "lifecycle.step";

/// What a `lifecycle.step` job carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepArgs {
    /// The event.
    pub event: LifecycleEvent,
    /// The step's name in the event type's cascade.
    pub step: String,
    /// The lifecycle job it is a step of.
    pub parent: JobId,
}

/// The `lifecycle.step` kind.
pub struct Step {
    config: Arc<LifecycleConfig>,
    targets: Arc<Targets>,
}

impl Step {
    /// The kind, running the steps of `config` on `targets`.
    pub fn new(config: Arc<LifecycleConfig>, targets: Arc<Targets>) -> Step {
        Step { config, targets }
    }
}

impl Kind for Step {
    const NAME: &'static str = NAME;
    type Args = StepArgs;

    fn options(&self) -> KindOptions {
        KindOptions {
            queue: self.config.queue.clone(),
            max_attempts: 10,
            ..KindOptions::default()
        }
    }

    async fn run(&self, job: JobContext, args: StepArgs) -> JobResult {
        let event_type = &args.event.event_type;
        let step = self
            .config
            .cascades
            .get(event_type)
            .and_then(|steps| steps.iter().find(|s| s.name == args.step))
            .ok_or_else(|| {
                JobError::fatal(format!(
                    "the cascade of {event_type:?} has no step {:?} any more",
                    args.step
                ))
            })?;
        if let Some(sql) = &step.sql {
            let target = self.targets.get(&sql.target).await?;
            let params: Vec<String> = sql
                .params
                .iter()
                .map(|p| args.event.field(p).unwrap_or_default())
                .collect();
            let params: Vec<&str> = params.iter().map(String::as_str).collect();
            let rows = target.execute(&sql.statement, &params).await?;
            return Ok(json!({ "rows": rows }));
        }
        if let Some(push) = &step.push {
            let payload = match &push.payload {
                Some(payload) => template::render(payload, &args.event),
                None => serde_json::to_value(&args.event).unwrap_or_default(),
            };
            let push = NewPush {
                // One push per step of one event, however often the step runs.
                event_id: format!("{}:{}", args.parent, args.step),
                user_id: args.event.user_id.clone(),
                kind: push.kind.clone(),
                payload,
            };
            push.check("").map_err(|e| JobError::fatal(e.to_string()))?;
            let stored = job.client.store().insert_pushes(&[push]).await?;
            let stored = stored
                .first()
                .ok_or_else(|| JobError::fatal("the push was not stored"))?;
            return Ok(json!({ "position": stored.position, "duplicate": stored.duplicate }));
        }
        Err(JobError::fatal(format!(
            "step {:?} is not a sql or push step",
            args.step
        )))
    }
}
