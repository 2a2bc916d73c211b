//! The top-level error, and the one place where it becomes an exit code and an HTTP
//! status. Every layer's error converts into this one.

use crate::store::StoreError;

/// What a command or request failed with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A store call failed; the store's classification decides the code.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The command line or a request was malformed.
    #[error("{0}")]
    Usage(String),
    /// An HTTP request named a route or resource that does not exist.
    #[error("{0}")]
    NoRoute(String),
    /// An HTTP request used a method the route does not accept.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A write came without the right bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// A request body over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A request body that is not JSON.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// Well-formed JSON of the wrong shape or with values out of range.
    #[error("{0}")]
    Unprocessable(String),
    /// Too many or too large request headers.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// A client stopped sending in the middle of a request.
    #[error("{0}")]
    Timeout(String),
    /// An HTTP request for a host name this server does not answer to (DNS rebinding).
    #[error("{0}")]
    Misdirected(String),
    /// The configuration file or an environment override is invalid.
    #[error("{0}")]
    Config(String),
    /// A check ran and found a problem (verify, health).
    #[error("{0}")]
    CheckFailed(String),
    /// An operational failure outside the store (a file, a socket), in words.
    #[error("{0}")]
    Io(String),
    /// An operational failure with the OS error behind it, kept as the source: its kind
    /// (disk full, permission denied, ...) reaches the HTTP status, the JSON error and the log.
    #[error("{context}: {source}")]
    IoFrom {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// An error with its causes, each said once ("error performing TLS handshake: invalid peer
/// certificate: ..."), for libraries whose top-level message leaves out why.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}

/// The exit codes: 0 ok, 1 a check failed, 2 usage or bad input, 3 operational failure.
pub mod exit {
    pub const OK: i32 = 0;
    pub const CHECK_FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const OPERATIONAL: i32 = 3;
}

impl From<crate::remote::target::RemoteError> for Error {
    fn from(e: crate::remote::target::RemoteError) -> Error {
        match e {
            crate::remote::target::RemoteError::Mismatch(m) => Error::Config(m),
            other => Error::Io(other.to_string()),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::IoFrom {
            context: "input/output".into(),
            source: e,
        }
    }
}

impl Error {
    /// Builds an [`Error::Io`] naming the action and the path involved.
    pub fn io(context: impl std::fmt::Display, err: std::io::Error) -> Error {
        Error::IoFrom {
            context: context.to_string(),
            source: err,
        }
    }

    /// The kind of the OS error behind this error, if there is one.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::IoFrom { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Store(e) => match e {
                StoreError::Invalid(_)
                | StoreError::NotFound(_)
                | StoreError::Rejected { .. }
                | StoreError::BadDatabase(_) => exit::BAD_INPUT,
                StoreError::Conflict(_) => exit::CHECK_FAILED,
                StoreError::Busy(_) | StoreError::Failed(_) | StoreError::ReplicaDown(_) => {
                    exit::OPERATIONAL
                }
            },
            Error::Usage(_)
            | Error::Config(_)
            | Error::NoRoute(_)
            | Error::MethodNotAllowed(_)
            | Error::Unauthorized(_)
            | Error::TooLarge(_)
            | Error::UnsupportedMedia(_)
            | Error::Unprocessable(_)
            | Error::HeadersTooLarge(_)
            | Error::Timeout(_)
            | Error::Misdirected(_) => exit::BAD_INPUT,
            Error::CheckFailed(_) => exit::CHECK_FAILED,
            Error::Io(_) | Error::IoFrom { .. } => exit::OPERATIONAL,
        }
    }

    /// The HTTP status and the stable machine-readable `code` of the JSON error body.
    pub fn http_status(&self) -> (u16, &'static str) {
        match self {
            Error::Store(e) => match e {
                StoreError::Invalid(_) | StoreError::Rejected { .. } => (422, "invalid"),
                StoreError::NotFound(_) => (404, "not_found"),
                StoreError::Conflict(_) => (409, "conflict"),
                StoreError::BadDatabase(_) | StoreError::Failed(_) => (503, "unavailable"),
                StoreError::Busy(_) => (503, "busy"),
                StoreError::ReplicaDown(_) => (503, "replica_unavailable"),
            },
            Error::Usage(_) => (400, "bad_request"),
            Error::NoRoute(_) => (404, "not_found"),
            Error::MethodNotAllowed(_) => (405, "method_not_allowed"),
            Error::Unauthorized(_) => (401, "unauthorized"),
            Error::TooLarge(_) => (413, "too_large"),
            Error::UnsupportedMedia(_) => (415, "unsupported_media_type"),
            Error::Unprocessable(_) => (422, "invalid"),
            Error::HeadersTooLarge(_) => (431, "headers_too_large"),
            Error::Timeout(_) => (408, "timeout"),
            Error::Misdirected(_) => (421, "misdirected"),
            Error::IoFrom { source, .. } => match source.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                    (507, "disk_full")
                }
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    (503, "not_writable")
                }
                _ => (503, "unavailable"),
            },
            Error::Config(_) | Error::Io(_) => (503, "unavailable"),
            Error::CheckFailed(_) => (503, "unhealthy"),
        }
    }
}
