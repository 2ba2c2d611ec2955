//! The pool's configuration: one plain struct whose `Default` is the only source of defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One queue's settings in this process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Jobs of this queue run at once in this process. Defaults to 10.
    pub concurrency: u32,
    /// Jobs claimed ahead of free slots, so the next job is ready when one finishes; they
    /// are handed back unstarted at shutdown. `"auto"` or a number. Defaults to `"auto"`.
    pub prefetch: Prefetch,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            concurrency: 10,
            prefetch: Prefetch::Auto,
        }
    }
}

/// How many jobs a worker claims beyond its free slots.
///
/// A claim is one round trip whatever its size, so a queue of quick jobs drains fastest in
/// large claims; but a job claimed ahead waits in this process (as `running`, its attempt
/// begun) while another process may be idle, and a crash costs it that attempt. `Auto`
/// claims ahead only as far as the worker's recent pace will start jobs within
/// [`Prefetch::HORIZON`]: up to [`Prefetch::MAX_FACTOR`] times the concurrency for jobs that
/// take microseconds, about nothing for jobs that take seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prefetch {
    /// Follows the worker's pace (see above).
    #[default]
    Auto,
    /// Always this many (0: claim for free slots only).
    Fixed(u32),
}

impl Prefetch {
    /// How far ahead `Auto` claims, in time at the worker's recent pace.
    pub const HORIZON: Duration = Duration::from_millis(10);
    /// `Auto` never claims more than this many times the concurrency ahead.
    pub const MAX_FACTOR: u32 = 3;

    /// The jobs to claim ahead at `pace` jobs started per second.
    pub fn ahead(self, concurrency: u32, pace: f64) -> u32 {
        match self {
            Prefetch::Fixed(n) => n,
            Prefetch::Auto => {
                let wanted = (pace.max(0.0) * Self::HORIZON.as_secs_f64()).ceil();
                (wanted.min(f64::from(u32::MAX)) as u32)
                    .min(concurrency.saturating_mul(Self::MAX_FACTOR))
            }
        }
    }
}

impl Serialize for Prefetch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Prefetch::Auto => s.serialize_str("auto"),
            Prefetch::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Prefetch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Text(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Number(n)) => Ok(Prefetch::Fixed(n)),
            Ok(Raw::Text(text)) if text == "auto" => Ok(Prefetch::Auto),
            _ => Err(serde::de::Error::custom(
                "expected \"auto\" or a number of jobs from 0 to 4294967295",
            )),
        }
    }
}

/// The pool: the queues this process works and the timings of its background roles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// The queues to work, by name. Defaults to `default` with [`QueueConfig::default`].
    pub queues: BTreeMap<String, QueueConfig>,
    /// How long a claimed job's lease lasts; a job whose lease runs out is rescued.
    /// Defaults to 30 s.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often leases are renewed, cancel requests read and workers marked alive. Must be
    /// under half the lease. Defaults to 5 s.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often an idle worker looks again for jobs that were due but not its to take (a
    /// queue's global limit, a sequence), and on SQLite, where other processes' enqueues
    /// wake nobody, for any job. Defaults to 1 s.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// On Postgres, the longest a worker with nothing due sleeps: every enqueue, retry and
    /// resume wakes it across processes (`NOTIFY`), and it wakes by itself at its queue's
    /// next `run_at`, so this bounds only a wake-up that was lost. Defaults to 60 s.
    #[serde(with = "humantime_serde")]
    pub idle_poll_interval: Duration,
    /// How long in-flight jobs may run on after a shutdown begins. Defaults to 30 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a handler asked to stop (cancelled, or past the shutdown grace) may take
    /// before it is aborted. Defaults to 5 s.
    #[serde(with = "humantime_serde")]
    pub cancel_grace: Duration,
    /// How often expired leases are rescued. Defaults to 5 s.
    #[serde(with = "humantime_serde")]
    pub rescue_interval: Duration,
    /// How long finished jobs, events and stale workers are kept.
    pub retention: RetentionConfig,
    /// The cron scheduler of this process.
    pub scheduler: SchedulerConfig,
    /// How an attempt's `process` span joins the `send` span of its enqueue, when traces
    /// are exported. Defaults to `link`.
    pub trace_attempts: TraceAttempts,
}

/// How each attempt's `process {queue}` span relates to the trace its job carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceAttempts {
    /// A trace of its own per attempt, linked to the job's: a job retried for a day does
    /// not keep its enqueuer's trace open (the messaging conventions' default).
    #[default]
    Link,
    /// A child of the job's trace: the request, the attempts and what they cause read as
    /// one tree.
    Child,
}

/// The cron scheduler. Any number of processes may run it: each tick still yields one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Whether this process runs it. Defaults to true.
    pub enabled: bool,
    /// The longest it sleeps between looks: it wakes at the next tick of any schedule and
    /// when a schedule changes in any process, so this bounds only a change it missed.
    /// Defaults to 60 s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            enabled: true,
            interval: Duration::from_secs(60),
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            queues: BTreeMap::from([("default".to_owned(), QueueConfig::default())]),
            lease: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            idle_poll_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(5),
            rescue_interval: Duration::from_secs(5),
            retention: RetentionConfig::default(),
            scheduler: SchedulerConfig::default(),
            trace_attempts: TraceAttempts::default(),
        }
    }
}

/// Retention of finished work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Completed and cancelled jobs are deleted this long after they finish. Defaults to 24 h.
    #[serde(with = "humantime_serde")]
    pub completed: Duration,
    /// Discarded jobs are deleted this long after they finish. Defaults to 7 days.
    #[serde(with = "humantime_serde")]
    pub discarded: Duration,
    /// Events are deleted this long after they are written. Defaults to 3 days.
    #[serde(with = "humantime_serde")]
    pub events: Duration,
    /// Pushes are deleted this long after they are stored: a gateway may resume from any
    /// position younger than this. Defaults to 24 h.
    #[serde(with = "humantime_serde")]
    pub pushes: Duration,
    /// Workers not seen for this long are deleted. Defaults to 1 h.
    #[serde(with = "humantime_serde")]
    pub workers: Duration,
    /// Idempotency keys of API requests are forgotten after this long. Defaults to 24 h.
    #[serde(with = "humantime_serde")]
    pub idempotency_keys: Duration,
    /// Audit records are deleted this long after they are written. Defaults to 90 days.
    #[serde(with = "humantime_serde")]
    pub audit: Duration,
    /// When retention runs: a cron expression with seconds, in UTC, for the built-in
    /// schedule `longshore:prune`. Defaults to every minute (`0 * * * * *`).
    pub schedule: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            completed: Duration::from_secs(24 * 3600),
            discarded: Duration::from_secs(7 * 24 * 3600),
            events: Duration::from_secs(3 * 24 * 3600),
            pushes: Duration::from_secs(24 * 3600),
            workers: Duration::from_secs(3600),
            idempotency_keys: Duration::from_secs(24 * 3600),
            audit: Duration::from_secs(90 * 24 * 3600),
            schedule: "0 * * * * *".to_owned(),
        }
    }
}

impl PoolConfig {
    /// Checks the config, naming the bad field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, message: &str| Err((field.to_owned(), message.to_owned()));
        for (name, queue) in &self.queues {
            if longshore_jobs::client::check_queue_name(name).is_err() {
                return bad(
                    &format!("queues.{name}"),
                    "queue names are 1 to 100 of A-Z a-z 0-9 _ - . :",
                );
            }
            if queue.concurrency == 0 || queue.concurrency > 10_000 {
                return bad(&format!("queues.{name}.concurrency"), "must be 1 to 10000");
            }
        }
        if self.lease < Duration::from_millis(100) {
            return bad("lease", "must be at least 100ms");
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval * 2 >= self.lease {
            return bad(
                "heartbeat_interval",
                "must be above zero and under half the lease",
            );
        }
        for (field, value) in [
            ("poll_interval", self.poll_interval),
            ("idle_poll_interval", self.idle_poll_interval),
            ("rescue_interval", self.rescue_interval),
            ("scheduler.interval", self.scheduler.interval),
        ] {
            if value.is_zero() {
                return bad(field, "must be above zero");
            }
        }
        if let Err(e) = longshore_jobs::cron::CronSpec::parse(&self.retention.schedule, "UTC") {
            return bad("retention.schedule", &e.message);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(PoolConfig::default().validate(), Ok(()));
    }

    #[test]
    fn a_heartbeat_slower_than_half_the_lease_is_refused() {
        let config = PoolConfig {
            heartbeat_interval: Duration::from_secs(20),
            ..PoolConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().0, "heartbeat_interval");
    }

    #[test]
    fn durations_read_as_human_strings() {
        let config: PoolConfig =
            toml::from_str("lease = \"10s\"\n[queues.mail]\nconcurrency = 3\n").unwrap();
        assert_eq!(config.lease, Duration::from_secs(10));
        assert_eq!(config.queues["mail"].concurrency, 3);
        assert_eq!(config.queues["mail"].prefetch, Prefetch::Auto);
    }

    #[test]
    fn prefetch_reads_auto_or_a_number_and_refuses_anything_else() {
        let read = |v: &str| toml::from_str::<QueueConfig>(&format!("prefetch = {v}"));
        assert_eq!(read("\"auto\"").unwrap().prefetch, Prefetch::Auto);
        assert_eq!(read("8").unwrap().prefetch, Prefetch::Fixed(8));
        for bad in ["\"lots\"", "-1", "1.5", "true"] {
            let error = read(bad).unwrap_err().to_string();
            assert!(
                error.contains("expected \"auto\" or a number"),
                "{bad}: {error}"
            );
        }
        let written = toml::to_string(&QueueConfig::default()).unwrap();
        assert!(written.contains("prefetch = \"auto\""), "{written}");
    }

    #[test]
    fn auto_prefetch_follows_the_pace_up_to_three_times_the_concurrency() {
        // Jobs of seconds: nothing claimed ahead, or one at most.
        assert_eq!(Prefetch::Auto.ahead(16, 0.0), 0);
        assert_eq!(Prefetch::Auto.ahead(16, 8.0), 1);
        // 2,000 jobs/s: what starts in the next 10 ms.
        assert_eq!(Prefetch::Auto.ahead(16, 2_000.0), 20);
        // Jobs of microseconds: capped.
        assert_eq!(Prefetch::Auto.ahead(16, 1e9), 48);
        assert_eq!(Prefetch::Fixed(5).ahead(16, 1e9), 5);
    }
}
