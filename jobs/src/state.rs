//! The one list of job states, shared by SQL, the API, events and the dashboard.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
///
/// `completed`, `cancelled` and `discarded` are terminal: a job leaves them only by an
/// explicit retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `run_at` to come.
    Scheduled,
    /// Ready to be claimed by a worker.
    Available,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Failed, waiting for its stored backoff before the next attempt.
    Retryable,
    /// Finished successfully.
    Completed,
    /// Cancelled by an operator or by its handler.
    Cancelled,
    /// Failed for good: attempts exhausted or a fatal error.
    Discarded,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 7] = [
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Cancelled,
        JobState::Discarded,
    ];

    /// The name used in SQL, the API and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Cancelled => "cancelled",
            JobState::Discarded => "discarded",
        }
    }

    /// Whether the job is finished (left only by an explicit retry).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Cancelled | JobState::Discarded
        )
    }

    /// Whether the job waits to be claimed.
    pub const fn is_pending(self) -> bool {
        matches!(
            self,
            JobState::Scheduled | JobState::Available | JobState::Retryable
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of the seven.
#[derive(Debug, thiserror::Error)]
#[error("unknown job state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
        }
        assert!("dead".parse::<JobState>().is_err());
    }

    #[test]
    fn only_three_states_are_terminal() {
        let terminal: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                JobState::Completed,
                JobState::Cancelled,
                JobState::Discarded
            ]
        );
    }
}
