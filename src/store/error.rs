//! The store layer's error: what went wrong with a read or a write, as a [`StoreKind`] the
//! caller can match (bad input, a conflict, a busy lock, a failing disk), the operator's
//! sentence naming the value involved and what to do, and SQLite's error underneath. Messages
//! never carry a Rust debug dump. Converts into the application's `Error` here, and only here.

use std::sync::Arc;

use rusqlite::ErrorCode;

use crate::error::{Error, Kind};
use crate::model::Problem;

/// What kind of failure a store call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The request itself is malformed or out of range (a quantity of zero, a bad date).
    Invalid,
    /// The request names something that does not exist (an unknown sku or workflow).
    NotFound,
    /// The request is well formed but conflicts with the current state (stock would go
    /// negative, a stale workflow version, a request_id reused for a different request).
    Conflict,
    /// Several parts of one request are bad (CSV rows, batch items); nothing was applied.
    Rejected,
    /// The file is not a database ora can use (not SQLite, made by a newer ora, another
    /// application's database, missing). Nothing was changed.
    BadDatabase,
    /// Another process held the write lock for longer than the configured wait.
    Busy,
    /// An operational failure: I/O, disk full, permissions, damaged file, writer stopped.
    Failed,
    /// In strict replica mode, the change could not be made durable on the replica in time;
    /// nothing was applied.
    ReplicaDown,
    /// This database takes no writes: it is a standby, or an old primary fenced off by a
    /// promotion. Nothing was applied.
    NotPrimary,
}

/// An error underneath another, shared (a store error is cloned to every caller of a group).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A failed store call. Cloneable, because the writer answers a whole group of callers with
/// the same failure when a shared COMMIT fails.
#[derive(Clone)]
pub struct StoreError {
    kind: StoreKind,
    message: String,
    /// What to do, said after the message ("run `ora verify`, then ...").
    hint: Option<String>,
    /// The individual problems of a [`StoreKind::Rejected`] request, in order (at most a
    /// listing's worth).
    problems: Vec<Problem>,
    /// How many parts of a [`StoreKind::Rejected`] request were refused (may exceed the
    /// problems listed).
    refused: usize,
    /// The field of the request the error is about (`sku`, `quantity`, ...), when one is.
    field: Option<&'static str>,
    /// SQLite's (or the replica's) error underneath.
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    pub fn new(kind: StoreKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            hint: None,
            problems: Vec::new(),
            refused: 0,
            field: None,
            source: None,
        }
    }

    /// The same error, about `field` of the request.
    pub fn on(mut self, field: &'static str) -> StoreError {
        self.field = Some(field);
        self
    }

    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    pub fn invalid(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreKind::Conflict, message)
    }

    pub fn bad_database(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreKind::BadDatabase, message)
    }

    pub fn busy(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreKind::Busy, message)
    }

    pub fn failed(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreKind::Failed, message)
    }

    pub fn replica_down(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreKind::ReplicaDown, message)
    }

    pub fn not_primary(message: impl Into<String>) -> StoreError {
        StoreError::new(StoreKind::NotPrimary, message)
    }

    /// Several bad parts of one request: `summary` says how many, `refused` counts them and
    /// `problems` lists them (or the first of them).
    pub fn rejected(
        summary: impl Into<String>,
        refused: usize,
        problems: Vec<Problem>,
    ) -> StoreError {
        StoreError {
            problems,
            refused,
            ..StoreError::new(StoreKind::Rejected, summary)
        }
    }

    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        self.source = Some(Arc::new(source));
        self
    }

    /// The same, with an error already shared as the cause.
    pub fn with_cause(mut self, cause: Cause) -> StoreError {
        self.source = Some(cause);
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> StoreError {
        self.hint = Some(hint.into());
        self
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// What failed, without the hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The list of individual problems, for errors that carry one (empty otherwise).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// How many parts of a rejected request were refused.
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// An operational failure (a failing disk, a busy lock, an unusable file) rather than a
    /// problem with the request: it ends a batch instead of being listed in it.
    pub fn is_operational(&self) -> bool {
        matches!(
            self.kind,
            StoreKind::Failed | StoreKind::Busy | StoreKind::BadDatabase
        )
    }

    /// The same error with another summary (a rejected batch said in the caller's words).
    pub fn with_message(mut self, message: impl Into<String>) -> StoreError {
        self.message = message.into();
        self
    }

    /// Classifies a SQLite error met while doing `context` (a lower-case phrase such as
    /// "open /var/lib/ora/ora.db") into a kind with a message an operator can act on.
    pub fn sqlite(context: &str, err: rusqlite::Error) -> StoreError {
        let code = err.sqlite_error_code();
        let (kind, message, hint) = match code {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => (
                StoreKind::Busy,
                format!("{context}: the database is locked by another process ({err})"),
                Some("retry, or look for a stuck `ora` process"),
            ),
            Some(ErrorCode::DiskFull) => (
                StoreKind::Failed,
                format!("{context}: the disk is full"),
                Some("free space on the database's filesystem and retry (nothing was written)"),
            ),
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => (
                StoreKind::Failed,
                format!("{context}: the database or its directory is read-only for this user ({err})"),
                Some("run ora as the owner of the database file and its directory"),
            ),
            Some(ErrorCode::CannotOpen) => (
                StoreKind::Failed,
                format!("{context}: cannot open the database file ({err})"),
                Some("check that its directory exists and is writable by this user"),
            ),
            Some(ErrorCode::NotADatabase) => (
                StoreKind::BadDatabase,
                format!("{context}: the file is not a SQLite database or is encrypted"),
                Some("check --db"),
            ),
            Some(ErrorCode::DatabaseCorrupt) => (
                StoreKind::Failed,
                format!("{context}: the database file is damaged ({err})"),
                Some("run `ora verify`, then restore the last good backup or salvage with `ora recover`"),
            ),
            Some(ErrorCode::SystemIoFailure) => (
                StoreKind::Failed,
                format!("{context}: disk I/O error ({err})"),
                Some("check the disk and the kernel log, then run `ora verify`"),
            ),
            _ => (StoreKind::Failed, format!("{context}: {err}"), None),
        };
        let e = StoreError::new(kind, message).with_source(err);
        match hint {
            Some(h) => e.with_hint(h),
            None => e,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("problems", &self.problems)
            .finish()
    }
}

impl PartialEq for StoreError {
    fn eq(&self, other: &StoreError) -> bool {
        self.kind == other.kind && self.message == other.message && self.problems == other.problems
    }
}

impl Eq for StoreError {}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(s) => Some(s.as_ref()),
            None => None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        let kind = match e.kind {
            StoreKind::Invalid => Kind::Invalid,
            StoreKind::NotFound => Kind::NotFound,
            StoreKind::Conflict => Kind::Conflict,
            StoreKind::Rejected => Kind::Rejected,
            StoreKind::BadDatabase => Kind::BadDatabase,
            StoreKind::Busy => Kind::Busy,
            StoreKind::Failed => Kind::Unavailable,
            StoreKind::ReplicaDown => Kind::ReplicaDown,
            StoreKind::NotPrimary => Kind::NotPrimary,
        };
        let problems = e.problems.iter().map(Problem::to_string).collect();
        let details = e
            .problems
            .iter()
            .map(|p| crate::error::Detail {
                item: p.line,
                field: p.field,
                message: p.what.clone(),
            })
            .collect();
        let message = e.message.clone();
        let hint = e.hint.clone();
        let out = Error::new(kind, message)
            .with_problems(problems)
            .with_details(details)
            .with_field(e.field);
        let out = match hint {
            Some(h) => out.with_hint(h),
            None => out,
        };
        out.with_source(e)
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
