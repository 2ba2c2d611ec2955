//! The registry of kinds: what the API validates against and what workers dispatch to.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use crate::kind::{JobContext, JobError, JobResult, Kind, KindOptions};

type Handler =
    Arc<dyn Fn(JobContext, serde_json::Value) -> BoxFuture<'static, JobResult> + Send + Sync>;
type Check = fn(&serde_json::Value) -> Result<(), serde_json::Error>;
type Seal = Arc<dyn Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync>;

/// A kind as stored in the registry: its name, defaults, args check and handler.
#[derive(Clone)]
pub struct RegisteredKind {
    name: &'static str,
    options: KindOptions,
    check: Check,
    seal: Seal,
    handler: Handler,
}

impl RegisteredKind {
    /// The kind's stable name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The kind's defaults.
    pub fn options(&self) -> &KindOptions {
        &self.options
    }

    /// Checks that `args` deserialize into the kind's args type.
    pub fn check_args(&self, args: &serde_json::Value) -> Result<(), serde_json::Error> {
        (self.check)(args)
    }

    /// The args as they are stored: with the kind's secrets sealed (see [`Kind::seal_args`]).
    pub fn seal_args(&self, args: serde_json::Value) -> Result<serde_json::Value, String> {
        (self.seal)(args)
    }

    /// Runs one attempt. Args that no longer deserialize fail the job for good.
    pub fn run(&self, job: JobContext, args: serde_json::Value) -> BoxFuture<'static, JobResult> {
        (self.handler)(job, args)
    }
}

impl std::fmt::Debug for RegisteredKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredKind")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish()
    }
}

/// Kinds by name.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, RegisteredKind>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `kind` with its own defaults, replacing any kind of the same name.
    pub fn register<K: Kind>(&mut self, kind: K) -> &mut Self {
        let options = kind.options();
        self.register_with(kind, options)
    }

    /// Registers `kind` with `options` instead of its defaults.
    pub fn register_with<K: Kind>(&mut self, kind: K, options: KindOptions) -> &mut Self {
        let kind = Arc::new(kind);
        let sealer = Arc::clone(&kind);
        let seal: Seal = Arc::new(move |args| sealer.seal_args(args));
        let handler: Handler = Arc::new(move |job, args| {
            let kind = Arc::clone(&kind);
            Box::pin(async move {
                let args = K::Args::deserialize(&args).map_err(JobError::fatal)?;
                kind.run(job, args).await
            })
        });
        let registered = RegisteredKind {
            name: K::NAME,
            options,
            check: check::<K>,
            seal,
            handler,
        };
        self.kinds.insert(K::NAME, registered);
        self
    }

    /// The kind named `name`.
    pub fn get(&self, name: &str) -> Option<&RegisteredKind> {
        self.kinds.get(name)
    }

    /// Every kind, by name.
    pub fn kinds(&self) -> impl Iterator<Item = &RegisteredKind> {
        self.kinds.values()
    }

    /// The names of the kinds whose default queue is `queue`.
    pub fn kinds_of_queue<'a>(&'a self, queue: &'a str) -> impl Iterator<Item = &'static str> + 'a {
        self.kinds
            .values()
            .filter(move |k| k.options.queue == queue)
            .map(|k| k.name)
    }
}

fn check<K: Kind>(args: &serde_json::Value) -> Result<(), serde_json::Error> {
    K::Args::deserialize(args).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{Noop, Sleep};

    #[test]
    fn checks_args_against_the_kind() {
        let mut registry = Registry::new();
        registry.register(Noop).register(Sleep);
        let sleep = registry.get("sleep").unwrap();
        assert!(sleep.check_args(&serde_json::json!({ "ms": 5 })).is_ok());
        let err = sleep
            .check_args(&serde_json::json!({ "ms": "soon" }))
            .unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        assert!(registry.get("nope").is_none());
    }
}
