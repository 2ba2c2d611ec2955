//! The whole configuration: defaults, then an optional TOML file, then the environment,
//! then flags.
//!
//! Every setting of the file can come from the environment under one rule: `LONGSHORE_`
//! and the setting's path in capitals, its levels joined by `__`
//! (`pool.retention.completed` is `LONGSHORE_POOL__RETENTION__COMPLETED`, `api.max_body_bytes`
//! is `LONGSHORE_API__MAX_BODY_BYTES`). The flags' own variables (`LONGSHORE_LEASE`,
//! `DATABASE_URL`, `PORT`, …) are shorthands that win over them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use longshore_api::ApiConfig;
use longshore_jobs::StoreConfig;
use longshore_workers::{PoolConfig, QueueConfig};
use serde::{Deserialize, Serialize};

use crate::cli::RuntimeArgs;

/// Every component's config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The database.
    pub database: StoreConfig,
    /// The worker pool.
    pub pool: PoolConfig,
    /// The HTTP API.
    pub api: ApiConfig,
    /// Logging.
    pub log: LogConfig,
    /// Registers the fault-test kinds (`test.abort`). Never in production. Defaults to false.
    pub enable_test_kinds: bool,
    /// Cron schedules declared here (`[[schedules]]`), reconciled into the database at start.
    pub schedules: Vec<longshore_jobs::schedule::ScheduleDef>,
    /// Databases sweeps work on, by name (`[targets.<name>]`).
    pub targets: BTreeMap<String, longshore_jobs::sweep::TargetDef>,
    /// Sweeps (`[[sweeps]]`); those with a `schedule` get a config schedule `sweep:<name>`.
    pub sweeps: Vec<longshore_jobs::sweep::SweepDef>,
    /// The runtime manager (`[runtime]`): registers the `runtime.remove` kind.
    pub runtime: Option<longshore_workers::kinds::RuntimeConfig>,
    /// Webhook deliveries (`[webhooks]`).
    pub webhooks: longshore_workers::kinds::WebhooksConfig,
    /// What deliveries may reach inside the network (`[egress]`).
    pub egress: longshore_workers::egress::EgressConfig,
    /// The keys secrets are encrypted with at rest (`[secrets]`).
    pub secrets: longshore_jobs::secret::SecretsConfig,
    /// Lifecycle events and the cascade of each type (`[lifecycle]`).
    pub lifecycle: longshore_workers::kinds::LifecycleConfig,
    /// Redis Streams read into lifecycle jobs (`[[ingesters]]`).
    pub ingesters: Vec<longshore_workers::ingest::IngesterConfig>,
    /// The windows of the active-users gauge (`[activity]`).
    pub activity: longshore_jobs::activity::ActivityConfig,
}

/// How logs are written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`. Defaults to `text`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info,longshore_workers=debug`. Defaults to `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration problem, naming the field.
#[derive(Debug)]
pub struct ConfigError {
    /// The field, e.g. `pool.lease`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.field, self.message)
    }
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Loads the file (if any), applies the environment and flags, and validates.
    pub fn load(args: &RuntimeArgs) -> Result<Config, ConfigError> {
        Self::load_from(args, std::env::vars())
    }

    /// [`Config::load`] with the environment given.
    fn load_from(
        args: &RuntimeArgs,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match &args.config {
            Some(path) => Self::read_file(path)?,
            None => toml::Table::new(),
        };
        let variables = overlay_env(&mut table, env)?;
        let mut config: Config = toml::Value::Table(table).try_into().map_err(|e| {
            let message = e.message().replace('\n', " ");
            let source = match (&args.config, variables.is_empty()) {
                (Some(path), true) => format!("config file {}", path.display()),
                (Some(path), false) => {
                    format!("config file {} or {}", path.display(), variables.join(", "))
                }
                (None, _) => variables.join(", "),
            };
            ConfigError::new(source, message)
        })?;
        config.apply(args)?;
        config.validate()?;
        Ok(config)
    }

    fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("config", format!("cannot read {}: {e}", path.display()))
        })?;
        text.parse::<toml::Table>().map_err(|e| {
            let message = e.message().replace('\n', " ");
            ConfigError::new(format!("config file {}", path.display()), message)
        })
    }

    /// Applies environment variables and flags (clap reads both; a flag wins over its variable).
    fn apply(&mut self, args: &RuntimeArgs) -> Result<(), ConfigError> {
        if let Some(url) = &args.database_url {
            self.database.url = url.clone();
        }
        if let Some(queues) = &args.queues {
            self.pool.queues = parse_queues(queues)?;
        }
        let pool = &mut self.pool;
        for (flag, target) in [
            (args.lease, &mut pool.lease),
            (args.heartbeat_interval, &mut pool.heartbeat_interval),
            (args.poll_interval, &mut pool.poll_interval),
            (args.shutdown_grace, &mut pool.shutdown_grace),
            (args.cancel_grace, &mut pool.cancel_grace),
            (args.rescue_interval, &mut pool.rescue_interval),
        ] {
            if let Some(value) = flag {
                *target = value.into();
            }
        }
        if let Some(listen) = args.listen {
            self.api.listen = listen;
        } else if let Some(port) = args.port {
            self.api.listen.set_port(port);
        }
        if let Some(format) = args.log_format {
            self.log.format = format;
        }
        if let Some(filter) = &args.log {
            self.log.filter = filter.clone();
        }
        if args.enable_test_kinds {
            self.enable_test_kinds = true;
        }
        Ok(())
    }

    /// Checks every component, naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.database
            .validate()
            .map_err(|(field, message)| ConfigError::new(format!("database.{field}"), message))?;
        self.pool
            .validate()
            .map_err(|(field, message)| ConfigError::new(format!("pool.{field}"), message))?;
        self.api
            .validate()
            .map_err(|(field, message)| ConfigError::new(format!("api.{field}"), message))?;
        self.activity
            .windows()
            .map_err(|message| ConfigError::new("activity.windows", message))?;
        self.webhooks
            .validate()
            .map_err(|(field, message)| ConfigError::new(format!("webhooks.{field}"), message))?;
        self.egress
            .guard()
            .map_err(|(field, message)| ConfigError::new(format!("egress.{field}"), message))?;
        self.secrets
            .keyring()
            .map_err(|error| ConfigError::new("secrets.keys", error.to_string()))?;
        self.lifecycle
            .validate(&self.targets)
            .map_err(|(field, message)| ConfigError::new(format!("lifecycle.{field}"), message))?;
        for (i, ingester) in self.ingesters.iter().enumerate() {
            ingester.validate().map_err(|(field, message)| {
                ConfigError::new(format!("ingesters[{i}].{field}"), message)
            })?;
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, def) in self.schedules.iter().enumerate() {
            let name = if def.id.is_empty() {
                format!("schedules[{i}]")
            } else {
                format!("schedules.{}", def.id)
            };
            if !ids.insert(def.id.clone()) {
                return Err(ConfigError::new(name, "declared twice"));
            }
            def.clone()
                .into_schedule(
                    longshore_jobs::schedule::Source::Config,
                    chrono::Utc::now(),
                    None,
                )
                .map_err(|e| ConfigError::new(format!("{name}.{}", e.field), e.message))?;
        }
        for (name, target) in &self.targets {
            target.validate().map_err(|(field, message)| {
                ConfigError::new(format!("targets.{name}.{field}"), message)
            })?;
        }
        if let Some(runtime) = &self.runtime {
            runtime
                .validate(&self.targets)
                .map_err(|(field, message)| {
                    ConfigError::new(format!("runtime.{field}"), message)
                })?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, sweep) in self.sweeps.iter().enumerate() {
            let name = if sweep.name.is_empty() {
                format!("sweeps[{i}]")
            } else {
                format!("sweeps.{}", sweep.name)
            };
            if !names.insert(sweep.name.clone()) {
                return Err(ConfigError::new(name, "declared twice"));
            }
            sweep
                .validate(&self.targets)
                .map_err(|(field, message)| ConfigError::new(format!("{name}.{field}"), message))?;
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_err() {
            return Err(ConfigError::new("log.filter", "not a valid tracing filter"));
        }
        Ok(())
    }
}

/// The prefix of the variables that set a file setting.
const ENV_PREFIX: &str = "LONGSHORE_";

/// Writes each `LONGSHORE_A__B=value` into `table` at `a.b`, the value read as TOML when
/// it is TOML (`10`, `true`, `["a"]`) and as a string otherwise (`30s`, a URL); returns the
/// variables used. Variables without `__` are the flags' own and are left to clap.
fn overlay_env(
    table: &mut toml::Table,
    env: impl Iterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let mut used = Vec::new();
    let mut vars: Vec<(String, String)> = env
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains("__"))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                name,
                "expected LONGSHORE_SECTION__SETTING, e.g. LONGSHORE_POOL__LEASE",
            ));
        }
        let value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let (last, parents) = path.split_last().expect("split gives one part at least");
        let mut at = &mut *table;
        for part in parents {
            let entry = at
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::new(
                        name,
                        format!("{part} is a setting, not a section"),
                    ));
                }
            };
        }
        at.insert(last.clone(), value);
        used.push(name);
    }
    Ok(used)
}

/// `default=10,mail=4`: queue names with their concurrency.
fn parse_queues(spec: &str) -> Result<BTreeMap<String, QueueConfig>, ConfigError> {
    let mut queues = BTreeMap::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, concurrency) = part.split_once('=').unwrap_or((part, "10"));
        let concurrency: u32 = concurrency.trim().parse().map_err(|_| {
            ConfigError::new(
                "queues",
                format!("{part:?}: expected name=concurrency, e.g. default=10"),
            )
        })?;
        queues.insert(
            name.trim().to_owned(),
            QueueConfig {
                concurrency,
                ..QueueConfig::default()
            },
        );
    }
    if queues.is_empty() {
        return Err(ConfigError::new("queues", "name at least one queue"));
    }
    Ok(queues)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_specs_parse_with_default_concurrency() {
        let queues = parse_queues("default=4, mail").unwrap();
        assert_eq!(queues["default"].concurrency, 4);
        assert_eq!(queues["mail"].concurrency, 10);
        assert_eq!(parse_queues("mail=lots").unwrap_err().field, "queues");
    }

    fn from_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_from(&RuntimeArgs::default(), env.collect::<Vec<_>>().into_iter())
    }

    #[test]
    fn every_file_setting_comes_from_the_environment_by_one_rule() {
        let config = from_env(&[
            ("LONGSHORE_API__MAX_BODY_BYTES", "1000"),
            ("LONGSHORE_POOL__RETENTION__COMPLETED", "2h"),
            ("LONGSHORE_DATABASE__MAX_CONNECTIONS", "3"),
            ("LONGSHORE_LOG__FORMAT", "json"),
            (
                "LONGSHORE_LEASE",
                "ignored: a flag's variable, read by clap",
            ),
        ])
        .unwrap();
        assert_eq!(config.api.max_body_bytes, 1000);
        assert_eq!(
            config.pool.retention.completed,
            std::time::Duration::from_secs(7200)
        );
        assert_eq!(config.database.max_connections, 3);
        assert_eq!(config.log.format, LogFormat::Json);
        let err = from_env(&[("LONGSHORE_POOL__LEESE", "1s")]).unwrap_err();
        assert!(err.field.contains("LONGSHORE_POOL__LEESE"), "{err}");
        assert!(err.message.contains("leese"), "{err}");
        let err = from_env(&[("LONGSHORE_API__MAX_BODY_BYTES", "lots")]).unwrap_err();
        assert!(
            err.to_string().contains("LONGSHORE_API__MAX_BODY_BYTES"),
            "{err}"
        );
    }

    #[test]
    fn the_file_names_an_unknown_field() {
        let err = toml::from_str::<Config>("[pool]\nleese = \"1s\"\n").unwrap_err();
        assert!(err.message().contains("leese"), "{}", err.message());
    }
}
