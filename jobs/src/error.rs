//! Errors of the store and of enqueueing.

use crate::id::JobId;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no supported backend.
    #[error("unsupported database url {0:?}: expected postgres://… or sqlite:…")]
    UnsupportedUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// The schema migrations failed.
    #[error("cannot apply the schema migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed; `op` names the operation.
    #[error("database operation {op} failed")]
    Query {
        /// The operation that failed, e.g. `claim`.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored row could not be read back.
    #[error("stored {what} is invalid: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// No job has this id.
    #[error("job {0} not found")]
    JobNotFound(JobId),
    /// The database was not asked: it has been unreachable. Nothing was stored or changed.
    #[error("the database is unavailable: {reason}")]
    Unavailable {
        /// Why nothing was sent.
        reason: &'static str,
    },
    /// The database did not answer before the operation's deadline, and nothing was
    /// committed (the transaction was abandoned before its commit was sent).
    #[error("database operation {op} timed out before its commit; nothing was stored")]
    TimedOut {
        /// The operation, e.g. `insert jobs`.
        op: &'static str,
    },
    /// The database did not answer within the store's timeout (a frozen server, a stuck
    /// query): a change may or may not have been made.
    #[error("the database did not answer in time")]
    NoAnswer,
    /// The commit was sent but not confirmed before the deadline: the jobs may or may not be
    /// stored.
    #[error("the database did not confirm the commit in time; {} job(s) may or may not be stored", jobs.len())]
    Unconfirmed {
        /// The jobs of the unconfirmed commit.
        jobs: Vec<JobId>,
    },
    /// The job's state does not allow the operation.
    #[error("job {id} is {state}: {reason}")]
    Conflict {
        /// The job.
        id: JobId,
        /// Its current state.
        state: String,
        /// Why the operation is refused.
        reason: &'static str,
    },
}

impl StoreError {
    /// Whether the database was unreachable (worth a 503 and a retry), as opposed to a
    /// problem with the request.
    pub fn is_unavailable(&self) -> bool {
        let source = match self {
            StoreError::Connect(_)
            | StoreError::Unavailable { .. }
            | StoreError::TimedOut { .. }
            | StoreError::NoAnswer => return true,
            StoreError::Query { source, .. } => source,
            _ => return false,
        };
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Connection exceptions (08) and the server shutting down or starting up (57P).
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }

    /// Whether the store refused without asking the database (it is known to be down).
    pub fn is_fail_fast(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

impl StoreError {
    /// Whether the database refused a value as invalid (SQLSTATE class 22, e.g. a NUL
    /// character or a number out of range): the request is at fault, not the database.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            StoreError::Query {
                source: sqlx::Error::Database(db),
                ..
            } => db.code().is_some_and(|code| code.starts_with("22")),
            StoreError::Query {
                source: sqlx::Error::Encode(_),
                ..
            } => true,
            _ => false,
        }
    }
}

/// Wraps a driver error with the name of the operation that failed.
pub(crate) fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

/// An enqueue was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// A field of the request is invalid; `field` names it.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field, e.g. `args` or `max_attempts`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A field is larger than allowed.
    #[error("{field} too large: {message}")]
    TooLarge {
        /// The field, e.g. `args`.
        field: String,
        /// By how much.
        message: String,
    },
    /// No kind of this name is registered.
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EnqueueError {
    /// An invalid-field error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        EnqueueError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
