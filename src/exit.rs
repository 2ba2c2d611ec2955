//! The exit codes of the command line, one per outcome a script may want to tell apart
//! (README's "Exit codes" lists them). An error carries its code as a [`Fail`]; any other
//! error exits 1.

use std::fmt;

/// Why a command did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Anything not listed below.
    Failure = 1,
    /// The command line, the configuration or the request is invalid (the server said 400
    /// or 422, or a flag's value is wrong).
    Usage = 2,
    /// Nothing has that id or name (404).
    NotFound = 3,
    /// The state does not allow it now (409), or an id prefix matches several jobs.
    Conflict = 4,
    /// No token, or one without the scope (401, 403).
    Denied = 5,
    /// The server cannot be reached, or its database is unavailable (503, 504).
    Unavailable = 6,
    /// The job waited for ended `discarded`.
    Discarded = 10,
    /// The job waited for ended `cancelled`.
    Cancelled = 11,
    /// Waiting gave up before the job finished (it goes on).
    TimedOut = 12,
}

/// An error with its exit code.
#[derive(Debug)]
pub struct Fail {
    pub exit: Exit,
    pub message: String,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// An error that exits with `exit`.
pub fn fail(exit: Exit, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Fail {
        exit,
        message: message.into(),
    })
}

/// The exit code of `error`: its [`Fail`]'s, else 1.
pub fn code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Fail>())
        .map_or(Exit::Failure as u8, |fail| fail.exit as u8)
}
