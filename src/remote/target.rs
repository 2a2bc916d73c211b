//! What the forwarder needs from a target, and the error a target reports. One file per target
//! (postgres, qdrant) implements it; nothing here talks to a network.

use rusqlite::Connection;

use super::outbox::Change;

/// What kind of failure a target met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// The target cannot be reached (down, refused, timed out).
    Unreachable,
    /// The target refused our credentials.
    Auth,
    /// The target's setup does not fit ours (TLS, an existing collection of another vector
    /// size, a mirror of another site).
    Mismatch,
    /// Anything else the target answered with.
    Failed,
}

/// Why a delivery failed; the forwarder keeps the outbox and retries with backoff. The
/// operator's sentence, its kind, and the client library's error underneath.
#[derive(Debug, Clone)]
pub struct RemoteError {
    kind: RemoteKind,
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl RemoteError {
    pub fn new(kind: RemoteKind, message: impl Into<String>) -> RemoteError {
        RemoteError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn unreachable(message: impl Into<String>) -> RemoteError {
        RemoteError::new(RemoteKind::Unreachable, message)
    }

    pub fn auth(message: impl Into<String>) -> RemoteError {
        RemoteError::new(RemoteKind::Auth, message)
    }

    pub fn mismatch(message: impl Into<String>) -> RemoteError {
        RemoteError::new(RemoteKind::Mismatch, message)
    }

    pub fn failed(message: impl Into<String>) -> RemoteError {
        RemoteError::new(RemoteKind::Failed, message)
    }

    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> RemoteError {
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    pub fn kind(&self) -> RemoteKind {
        self.kind
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(s) => Some(s.as_ref()),
            None => None,
        }
    }
}

impl From<RemoteError> for crate::error::Error {
    /// A setup that does not fit is the configuration's to fix; anything else is an
    /// operational failure.
    fn from(e: RemoteError) -> crate::error::Error {
        let kind = match e.kind {
            RemoteKind::Mismatch => crate::error::Kind::Config,
            _ => crate::error::Kind::Io,
        };
        let message = e.message.clone();
        crate::error::Error::new(kind, message).with_source(e)
    }
}

/// A place changes are delivered to.
pub trait Target: Send {
    /// The name recorded in `sync_control` ("postgres", "qdrant").
    fn name(&self) -> &'static str;

    /// Connects and makes sure the remote schema or collection exists and fits.
    fn prepare(&mut self) -> Result<(), RemoteError>;

    /// Asks the target, now, whether it answers (changes nothing): what it said.
    fn probe(&mut self) -> Result<String, RemoteError>;

    /// The last sequence the target itself recorded, for targets that record one in the same
    /// transaction as the data (then it, not our bookkeeping, says where to resume).
    fn remote_position(&mut self) -> Result<Option<i64>, RemoteError>;

    /// Why the target needs a full copy whatever the positions say (its layout grew since it
    /// took this site's rows), if it does.
    fn needs_copy(&mut self) -> Result<Option<String>, RemoteError> {
        Ok(None)
    }

    /// Starts a full copy (the first delivery): everything before `up_to` comes as rows.
    fn begin_copy(&mut self) -> Result<(), RemoteError>;
    /// Rows of one table for the full copy. `local` reads the store as of the copy (for
    /// targets that need more than the rows, such as client-supplied vectors); never write
    /// through it.
    fn copy_rows(
        &mut self,
        table: &str,
        rows: &[serde_json::Value],
        local: &Connection,
    ) -> Result<(), RemoteError>;
    /// Ends the full copy, recording `up_to` as delivered.
    fn end_copy(&mut self, up_to: i64) -> Result<(), RemoteError>;

    /// Delivers folded changes and records `up_to` as delivered, atomically where the target
    /// can. `local` reads the store as it is now (never write through it).
    fn deliver(
        &mut self,
        changes: &[Change],
        up_to: i64,
        local: &Connection,
    ) -> Result<(), RemoteError>;
}
