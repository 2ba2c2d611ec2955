//! Errors of the store and of enqueueing.

use crate::id::JobId;

/// A store operation failed.
///
/// The driver's error is said once, in the message: what the database said (on Postgres its
/// message, detail and hint, without the line of Postgres's own C source that sqlx adds), and
/// not again as `source()`, which every printer of an error chain would repeat after it.
/// [`StoreError::driver`] gives the driver's error itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no supported backend.
    #[error("unsupported database url {0:?}: expected postgres://… or sqlite:…")]
    UnsupportedUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot connect to the database: {}", describe(.0))]
    Connect(sqlx::Error),
    /// The database the URL names does not exist (or the directory of the SQLite file).
    #[error("cannot open the database: {what}; {fix}")]
    Missing {
        /// What is missing, e.g. `database "app" does not exist on db:5432`.
        what: String,
        /// What to do, e.g. `create it with createdb …`.
        fix: String,
    },
    /// The schema migrations failed.
    #[error("cannot apply the schema migrations: {}", describe_migrate(.0))]
    Migrate(sqlx::migrate::MigrateError),
    /// A query failed; `op` names the operation.
    #[error("database operation {op} failed: {}", describe(.error))]
    Query {
        /// The operation that failed, e.g. `claim`.
        op: &'static str,
        /// The driver's error.
        error: sqlx::Error,
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
            StoreError::Query { error, .. } => error,
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
                error: sqlx::Error::Database(db),
                ..
            } => db.code().is_some_and(|code| code.starts_with("22")),
            StoreError::Query {
                error: sqlx::Error::Encode(_),
                ..
            } => true,
            _ => false,
        }
    }
}

/// Wraps a driver error with the name of the operation that failed.
pub(crate) fn query(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| StoreError::Query { op, error }
}

impl StoreError {
    /// The driver's error, when the database or the driver failed.
    pub fn driver(&self) -> Option<&sqlx::Error> {
        match self {
            StoreError::Connect(error) | StoreError::Query { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What a driver error says, for people: the database's own message once (on Postgres with
/// its detail and hint), without sqlx's "error returned from database" and without the line
/// of the database's C source ("at line 948") that sqlx's Display of a Postgres error adds.
pub fn describe(error: &sqlx::Error) -> String {
    let sqlx::Error::Database(db) = error else {
        return error.to_string();
    };
    let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() else {
        return db.message().to_owned();
    };
    let mut text = pg.message().to_owned();
    let extra: Vec<String> = [("detail", pg.detail()), ("hint", pg.hint())]
        .into_iter()
        .filter_map(|(label, value)| Some(format!("{label}: {}", value?.trim_end_matches('.'))))
        .collect();
    if !extra.is_empty() {
        text.push_str(&format!(" ({})", extra.join("; ")));
    }
    text
}

/// [`describe`] for a migration's error.
fn describe_migrate(error: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match error {
        MigrateError::Execute(error) => format!("while executing migrations: {}", describe(error)),
        MigrateError::ExecuteMigration(error, version) => {
            format!("while executing migration {version}: {}", describe(error))
        }
        other => other.to_string(),
    }
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
