//! The store layer's error: what went wrong with a read or a write, classified so that the
//! caller can tell bad input from a conflict from a failing disk. Messages are whole sentences
//! that name the value involved and what to do; they never carry a Rust debug dump.

use rusqlite::ErrorCode;

/// Every way a store call can fail. Cloneable, because the writer answers a whole group of
/// callers with the same failure when a shared COMMIT fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The request itself is malformed or out of range (a quantity of zero, a bad date).
    #[error("{0}")]
    Invalid(String),
    /// The request names something that does not exist (an unknown sku or workflow).
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but conflicts with the current state (stock would go
    /// negative, a stale workflow version, a request_id reused for a different request).
    #[error("{0}")]
    Conflict(String),
    /// Several parts of one request are bad (CSV rows, batch items); nothing was applied.
    #[error("{summary}")]
    Rejected {
        summary: String,
        problems: Vec<String>,
    },
    /// The file is not a database ora can use (not SQLite, made by a newer ora, another
    /// application's database, missing). Nothing was changed.
    #[error("{0}")]
    BadDatabase(String),
    /// Another process held the write lock for longer than the configured wait.
    #[error("{0}")]
    Busy(String),
    /// An operational failure: I/O, disk full, permissions, damaged file, writer stopped.
    #[error("{0}")]
    Failed(String),
    /// In strict replica mode, the change could not be made durable on the replica in time;
    /// nothing was applied.
    #[error("{0}")]
    ReplicaDown(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// Classifies a SQLite error met while doing `context` (a lower-case phrase such as
    /// "open /var/lib/ora/ora.db") into a variant with a message an operator can act on.
    pub fn sqlite(context: &str, err: rusqlite::Error) -> StoreError {
        let code = err.sqlite_error_code();
        match code {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Busy(
                format!("{context}: the database is locked by another process ({err}); retry, or look for a stuck `ora` process"),
            ),
            Some(ErrorCode::DiskFull) => StoreError::Failed(format!(
                "{context}: the disk is full; free space on the database's filesystem and retry (nothing was written)"
            )),
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => StoreError::Failed(format!(
                "{context}: the database or its directory is read-only for this user ({err}); run ora as the owner of the database file and its directory"
            )),
            Some(ErrorCode::CannotOpen) => StoreError::Failed(format!(
                "{context}: cannot open the database file ({err}); check that its directory exists and is writable by this user"
            )),
            Some(ErrorCode::NotADatabase) => StoreError::BadDatabase(format!(
                "{context}: the file is not a SQLite database or is encrypted; check --db"
            )),
            Some(ErrorCode::DatabaseCorrupt) => StoreError::Failed(format!(
                "{context}: the database file is damaged ({err}); run `ora verify`, then restore the last good backup or salvage with `ora recover`"
            )),
            Some(ErrorCode::SystemIoFailure) => StoreError::Failed(format!(
                "{context}: disk I/O error ({err}); check the disk and the kernel log, then run `ora verify`"
            )),
            _ => StoreError::Failed(format!("{context}: {err}")),
        }
    }

    /// The list of individual problems, for errors that carry one (empty otherwise).
    pub fn problems(&self) -> &[String] {
        match self {
            StoreError::Rejected { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// Shorthand for `.map_err(StoreError::sqlite(context, e))` at call sites.
pub(crate) trait SqlContext<T> {
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> SqlContext<T> for std::result::Result<T, rusqlite::Error> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|e| StoreError::sqlite(context, e))
    }
}
