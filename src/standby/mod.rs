//! Standbys: a second box that follows the primary commit by commit over HTTP, serves reads
//! while it follows, and takes over with one command.
//!
//! - [`wire`]: the bytes of a batch of records on the network, checked before use.
//! - [`feed`]: the primary's side: answers standbys' polls, holds sync writes until a
//!   standby has them, keeps the records standbys still need.
//!
//! Beside the replica and the remote targets (layer 5): uses the store's capture and its
//! writer, never the replica's directory. A standby's data change only through its primary's
//! records, checked link by link; a feed that does not fit never changes them.

mod error;
pub mod feed;
pub mod wire;

use std::time::Duration;

pub use error::{StandbyError, StandbyKind};

pub const DEFAULT_SYNC_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_KEEP_RECORDS: u64 = 100_000;

/// When the primary acknowledges a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// At the local commit; standbys follow as fast as they can.
    Async,
    /// Only once a standby has the commit durably.
    Sync,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Sync => "sync",
        }
    }
}

/// What a sync write does when no standby confirms in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// Refuse it (nothing applied): no acknowledged write exists on one box only.
    Refuse,
    /// Acknowledge it at the local commit, and every write after it, until a standby catches
    /// up again (said on the page, in `/health` and `/metrics`).
    Async,
}

/// The `[standby]` settings, validated.
#[derive(Debug, Clone)]
pub struct StandbyConfig {
    pub mode: Mode,
    pub sync_timeout: Duration,
    pub on_timeout: OnTimeout,
    /// Records kept for a standby that is away, at most.
    pub keep_records: u64,
}

impl Default for StandbyConfig {
    fn default() -> Self {
        StandbyConfig {
            mode: Mode::Async,
            sync_timeout: Duration::from_millis(DEFAULT_SYNC_TIMEOUT_MS),
            on_timeout: OnTimeout::Refuse,
            keep_records: DEFAULT_KEEP_RECORDS,
        }
    }
}
