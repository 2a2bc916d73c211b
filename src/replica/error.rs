//! The replica's error: a [`ReplicaKind`] a caller can match (the directory cannot be used, a
//! file operation failed, the database could not be read, a file is damaged, a wait ran out,
//! the shipper stopped), the operator's sentence, and what failed underneath (an OS error, so a
//! full or read-only disk stays recognisable all the way to a strict write's refusal), and the
//! one word the page and `/health` show for it ([`ReplicaError::condition`]).

use std::sync::Arc;

/// What kind of failure the replica met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaKind {
    /// The directory cannot be used as this database's replica (missing, no marker, another
    /// database's, another owner's).
    Directory,
    /// Reading or writing the replica's files failed.
    Io,
    /// The database could not be read or written.
    Database,
    /// A replica file is damaged or does not fit the history.
    Damaged,
    /// A strict write waited longer than `strict_timeout_ms`.
    Timeout,
    /// The shipper stopped (the process is ending).
    Stopped,
    /// The encryption secret or a generation's key.
    Keys,
}

/// A replica operation that failed.
#[derive(Debug, Clone)]
pub struct ReplicaError {
    kind: ReplicaKind,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ReplicaError {
    pub fn new(kind: ReplicaKind, message: impl Into<String>) -> ReplicaError {
        ReplicaError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A file operation on the replica: "{context}: {err}", the OS error kept underneath.
    pub fn io(context: impl std::fmt::Display, err: std::io::Error) -> ReplicaError {
        ReplicaError::new(ReplicaKind::Io, format!("{context}: {err}")).with_source(err)
    }

    pub fn directory(message: impl Into<String>) -> ReplicaError {
        ReplicaError::new(ReplicaKind::Directory, message)
    }

    pub fn damaged(message: impl Into<String>) -> ReplicaError {
        ReplicaError::new(ReplicaKind::Damaged, message)
    }

    pub fn stopped(message: impl Into<String>) -> ReplicaError {
        ReplicaError::new(ReplicaKind::Stopped, message)
    }

    pub fn keys(message: impl Into<String>) -> ReplicaError {
        ReplicaError::new(ReplicaKind::Keys, message)
    }

    /// The database could not be read or written while doing `what`.
    pub fn database(
        what: &str,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> ReplicaError {
        ReplicaError::new(ReplicaKind::Database, format!("{what}: {err}")).with_source(err)
    }

    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ReplicaError {
        self.source = Some(Arc::new(source));
        self
    }

    pub fn kind(&self) -> ReplicaKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the operator faces, in one word the page and `/health` show: `missing` (the
    /// directory or its disk is gone), `disk_full`, `read_only`, `damaged`, or `unreachable`
    /// (anything else, perhaps passing). Read from the kind and the OS error underneath, never
    /// from the message.
    pub fn condition(&self) -> &'static str {
        let os = self
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<std::io::Error>());
        match (self.kind, os) {
            (ReplicaKind::Directory, _) => "missing",
            (ReplicaKind::Damaged, _) => "damaged",
            (_, Some(e))
                if e.raw_os_error() == Some(libc::ENOSPC)
                    || e.raw_os_error() == Some(libc::EDQUOT) =>
            {
                "disk_full"
            }
            (_, Some(e))
                if e.raw_os_error() == Some(libc::EROFS)
                    || e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                "read_only"
            }
            (_, Some(e)) if e.kind() == std::io::ErrorKind::NotFound => "missing",
            _ => "unreachable",
        }
    }
}

impl std::fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ReplicaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(s) => Some(s.as_ref()),
            None => None,
        }
    }
}

impl From<ReplicaError> for crate::error::Error {
    fn from(e: ReplicaError) -> crate::error::Error {
        use crate::error::Kind;
        let kind = match e.kind {
            ReplicaKind::Directory => Kind::Usage,
            ReplicaKind::Damaged => Kind::CheckFailed,
            ReplicaKind::Keys => Kind::Config,
            ReplicaKind::Timeout => Kind::ReplicaDown,
            ReplicaKind::Io | ReplicaKind::Database | ReplicaKind::Stopped => Kind::Io,
        };
        let message = e.message.clone();
        crate::error::Error::new(kind, message).with_source(e)
    }
}
