//! The standby's error: a [`StandbyKind`] a caller can match (the primary cannot be reached or
//! refuses us, its feed is damaged, the two histories no longer fit, a sync write waited too
//! long, the database refused), the operator's sentence and what failed underneath.

use std::sync::Arc;

use crate::error::{Error, Kind};

/// What kind of failure a standby or a feed met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyKind {
    /// The other box cannot be reached, or answered with a server error.
    Unreachable,
    /// The other box refused us: a wrong token, a certificate that is not the pinned one.
    Refused,
    /// What came over the network is damaged or not a feed.
    Damaged,
    /// This standby needs a new base (its position is gone from the primary, or the histories
    /// diverged).
    NeedsBase,
    /// A sync write waited longer than `sync_timeout_ms` for a standby.
    Timeout,
    /// This database is not in the role the operation needs (promote a primary, follow a
    /// newer epoch's old primary).
    Role,
    /// The local database failed.
    Database,
    /// The feed is stopping (the process is ending).
    Stopped,
}

/// A standby operation that failed.
#[derive(Debug, Clone)]
pub struct StandbyError {
    kind: StandbyKind,
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StandbyError {
    pub fn new(kind: StandbyKind, message: impl Into<String>) -> StandbyError {
        StandbyError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StandbyError {
        self.source = Some(Arc::new(source));
        self
    }

    pub fn kind(&self) -> StandbyKind {
        self.kind
    }
}

impl std::fmt::Display for StandbyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StandbyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<crate::store::StoreError> for StandbyError {
    fn from(e: crate::store::StoreError) -> StandbyError {
        StandbyError::new(StandbyKind::Database, e.to_string()).with_source(e)
    }
}

impl From<StandbyError> for Error {
    fn from(e: StandbyError) -> Error {
        let kind = match e.kind {
            StandbyKind::Unreachable | StandbyKind::Timeout | StandbyKind::Stopped => {
                Kind::Unavailable
            }
            StandbyKind::Refused => Kind::Config,
            StandbyKind::Damaged | StandbyKind::NeedsBase => Kind::CheckFailed,
            StandbyKind::Role => Kind::Conflict,
            StandbyKind::Database => Kind::Unavailable,
        };
        let message = e.message.clone();
        Error::new(kind, message).with_source(e)
    }
}
