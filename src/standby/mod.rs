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

pub mod base;
pub mod client;
mod error;
pub mod feed;
pub mod follower;
pub mod node;
mod peers;
pub mod rejoin;
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
#[derive(Clone)]
pub struct StandbyConfig {
    /// The bearer token of the replication routes (both boxes have the same); without one
    /// they answer only on a loopback-bound server.
    pub token: Option<String>,
    /// This box's name among the primary's standbys (default: the host name).
    pub name: String,
    /// Where other boxes reach this one (default: `http://` + the bind address).
    pub advertise: Option<String>,
    pub mode: Mode,
    pub sync_timeout: Duration,
    pub on_timeout: OnTimeout,
    /// Records kept for a standby that is away, at most.
    pub keep_records: u64,
    /// What this box trusts of the other boxes' HTTPS (`tls_pins`, `tls_ca`).
    pub trust: crate::tls::Trust,
}

impl std::fmt::Debug for StandbyConfig {
    // The token is never printed, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandbyConfig")
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .field("name", &self.name)
            .field("advertise", &self.advertise)
            .field("mode", &self.mode)
            .field("sync_timeout", &self.sync_timeout)
            .field("on_timeout", &self.on_timeout)
            .field("keep_records", &self.keep_records)
            .field("trust", &self.trust)
            .finish()
    }
}

impl Default for StandbyConfig {
    fn default() -> Self {
        StandbyConfig {
            token: None,
            name: String::new(),
            advertise: None,
            mode: Mode::Async,
            sync_timeout: Duration::from_millis(DEFAULT_SYNC_TIMEOUT_MS),
            on_timeout: OnTimeout::Refuse,
            keep_records: DEFAULT_KEEP_RECORDS,
            trust: crate::tls::Trust::default(),
        }
    }
}
