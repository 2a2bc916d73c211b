//! What the forwarder needs from a target, and the error a target reports. One file per target
//! (postgres, qdrant) implements it; nothing here talks to a network.

use rusqlite::Connection;

use super::outbox::Change;

/// Why a delivery failed; the forwarder keeps the outbox and retries with backoff.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// The target cannot be reached (down, refused, timed out).
    #[error("{0}")]
    Unreachable(String),
    /// The target refused our credentials.
    #[error("{0}")]
    Auth(String),
    /// The target's setup does not fit ours (an existing collection of another vector size).
    #[error("{0}")]
    Mismatch(String),
    /// Anything else the target answered with.
    #[error("{0}")]
    Failed(String),
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
