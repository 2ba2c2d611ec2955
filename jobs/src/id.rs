//! Identifiers: job ids are UUIDv7 (time-ordered), event ids are monotonic integers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of a job: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        JobId(Uuid::now_v7())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(JobId)
    }
}

impl From<Uuid> for JobId {
    fn from(id: Uuid) -> Self {
        JobId(id)
    }
}

/// The start of job ids, as git abbreviates commits: 4 to 32 hex digits (either case), with
/// dashes optional where a UUID has them (`0193ab4c-5d6e`). The ids it matches are one
/// contiguous range, so a store finds them on its primary key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdPrefix(String);

impl IdPrefix {
    /// The fewest hex digits a prefix may have.
    pub const MIN_DIGITS: usize = 4;

    /// Reads a prefix, or says in plain words what one looks like.
    pub fn parse(text: &str) -> Result<IdPrefix, String> {
        let mut digits = String::with_capacity(32);
        let mut dash_allowed = false;
        for c in text.chars() {
            if c == '-' && dash_allowed {
                dash_allowed = false;
            } else if c.is_ascii_hexdigit() && digits.len() < 32 {
                digits.push(c.to_ascii_lowercase());
                dash_allowed = matches!(digits.len(), 8 | 12 | 16 | 20);
            } else {
                return Err(Self::expected());
            }
        }
        if digits.len() < Self::MIN_DIGITS {
            return Err(Self::expected());
        }
        Ok(IdPrefix(digits))
    }

    fn expected() -> String {
        format!(
            "must be {} to 32 hex digits of a job id, dashes optional where the id has them \
             (e.g. 0193ab4c or 0193ab4c-5d6e)",
            Self::MIN_DIGITS
        )
    }

    /// The first and the last id that start with the prefix.
    pub fn range(&self) -> (JobId, JobId) {
        let id = |fill: char| {
            let mut hex = self.0.clone();
            hex.extend(std::iter::repeat_n(fill, 32 - hex.len()));
            JobId(Uuid::parse_str(&hex).unwrap_or_default())
        };
        (id('0'), id('f'))
    }
}

impl fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<String> for IdPrefix {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        IdPrefix::parse(&text)
    }
}

impl From<IdPrefix> for String {
    fn from(prefix: IdPrefix) -> String {
        prefix.0
    }
}

/// The id of an event in the outbox. Ids only grow, and a reader that resumes after an id
/// never misses an event written before or after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub i64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EventId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(EventId)
    }
}

/// The id of a worker: one apalis worker bound to one queue in one process start.
///
/// It is unique per process start (`{queue}@{host}:{pid}:{nonce}`), so a restarted process
/// never inherits the leases of the process it replaced.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub String);

impl WorkerId {
    /// The worker id for `queue` in the process identified by `process`.
    pub fn new(queue: &str, process: &ProcessId) -> Self {
        WorkerId(format!("{queue}@{process}"))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one start of one process: host, pid and a random nonce.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The host name.
    pub host: String,
    /// The operating system's process id.
    pub pid: u32,
    nonce: String,
}

impl ProcessId {
    /// The id of the current process start.
    pub fn current() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let nonce = Uuid::new_v4().simple().to_string()[..8].to_owned();
        ProcessId {
            host,
            pid: std::process::id(),
            nonce,
        }
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.pid, self.nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_time_ordered_and_round_trip() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<JobId>().unwrap(), a);
    }

    #[test]
    fn worker_ids_differ_between_process_starts() {
        let a = WorkerId::new("default", &ProcessId::current());
        let b = WorkerId::new("default", &ProcessId::current());
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("default@"));
    }

    #[test]
    fn an_id_prefix_is_the_range_of_ids_it_starts() {
        let prefix = IdPrefix::parse("0193AB4C-5d").unwrap();
        assert_eq!(prefix.to_string(), "0193ab4c5d");
        let (first, last) = prefix.range();
        assert_eq!(first.to_string(), "0193ab4c-5d00-0000-0000-000000000000");
        assert_eq!(last.to_string(), "0193ab4c-5dff-ffff-ffff-ffffffffffff");
        let id = JobId::new();
        let (first, last) = IdPrefix::parse(&id.to_string()).unwrap().range();
        assert_eq!((first, last), (id, id));
        for bad in ["019", "0193-ab", "0193ab4c--5d", "0193abx", "-0193"] {
            assert!(IdPrefix::parse(bad).is_err(), "{bad}");
        }
    }
}
