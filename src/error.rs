//! The error a command or an HTTP request ends in: a [`Kind`] a caller can match, the
//! operator's sentence (what failed, with the value involved), an optional hint (what to do),
//! the individual problems of a rejected batch, and the underlying error as its source. Each
//! layer has its own error and converts it into this one in its own module (`From`), so this
//! file imports nothing else of ora. The exit code is decided here, in [`Error::exit_code`];
//! the HTTP status in one place in `web`. No code reads an error's text to decide anything.

use std::fmt;

/// What kind of failure it is: what the caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The command line, a request or a file given to ora is malformed.
    Usage,
    /// A value is out of range or the wrong shape (a quantity of zero, a bad date).
    Invalid,
    /// Several parts of one request are bad (CSV rows, batch items); nothing was applied.
    Rejected,
    /// Something named does not exist (an unknown sku, a workflow).
    NotFound,
    /// Well formed, but it conflicts with the current state (stock would go negative, a stale
    /// version, a request id reused for another request).
    Conflict,
    /// The file is not a database ora can use (not SQLite, made by a newer ora, another
    /// application's). Nothing was changed.
    BadDatabase,
    /// The configuration file or an environment override is invalid.
    Config,
    /// A check ran and found a problem (verify, health, a drill, a damaged replica).
    CheckFailed,
    /// Another process held the write lock for longer than the wait.
    Busy,
    /// In strict replica mode, the change could not be made durable on the replica in time.
    ReplicaDown,
    /// The database cannot be used now (damaged, read-only, the writer stopped).
    Unavailable,
    /// This box takes no writes: a standby (write to its primary) or a fenced old primary.
    NotPrimary,
    /// Input/output outside the database failed (a file, a socket, a disk).
    Io,
}

/// The exit codes: 0 ok; 1 a check failed; 2 usage or bad input; 3 operational failure.
pub mod exit {
    pub const OK: i32 = 0;
    pub const CHECK_FAILED: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const OPERATIONAL: i32 = 3;
}

/// One problem of a rejected request, for a program to match: which item and which field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Detail {
    /// The line, row or movement (from 1), when the problem has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u64>,
    /// The field (`sku`, `quantity`, `date`, ...), when the problem is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    pub message: String,
}

/// The parts of an [`Error`] only some errors have.
#[derive(Debug, Default)]
struct Extra {
    /// The individual problems of a [`Kind::Rejected`] batch, in order.
    problems: Vec<String>,
    /// The same problems for a program: the item (line, row or movement, from 1) and the
    /// field each is about, when known.
    details: Vec<Detail>,
    /// The field of the request the error is about, when one is.
    field: Option<&'static str>,
}

/// What a command or request failed with.
pub struct Error {
    kind: Kind,
    /// The sentence for the operator: what failed, with the value or path involved.
    message: String,
    /// What to do about it, when the message does not say it already.
    hint: Option<String>,
    /// What only some errors have (boxed: an error stays small to pass around).
    extra: Option<Box<Extra>>,
    /// What went wrong underneath (an OS error, SQLite's, a remote's).
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            hint: None,
            extra: None,
            source: None,
        }
    }

    /// A malformed command line, request or input.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }

    /// An invalid configuration.
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(Kind::Config, message)
    }

    /// A check that found a problem.
    pub fn check_failed(message: impl Into<String>) -> Error {
        Error::new(Kind::CheckFailed, message)
    }

    /// An operational failure outside the database, in words (no OS error at hand).
    pub fn failed(message: impl Into<String>) -> Error {
        Error::new(Kind::Io, message)
    }

    /// An operational failure with the OS error behind it: "{context}: {err}", the error kept
    /// as the source, so its kind (disk full, permission denied) reaches the HTTP status, the
    /// JSON error and the log.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Error {
        Error::new(Kind::Io, format!("{context}: {err}")).with_source(err)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    pub fn with_problems(mut self, problems: Vec<String>) -> Error {
        if !problems.is_empty() {
            self.extra().problems = problems;
        }
        self
    }

    /// The same error with its message rewritten (more context, an outcome appended).
    pub fn map_message(mut self, f: impl FnOnce(&str) -> String) -> Error {
        self.message = f(&self.message);
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    pub fn problems(&self) -> &[String] {
        self.extra.as_ref().map_or(&[], |x| &x.problems)
    }

    pub fn details(&self) -> &[Detail] {
        self.extra.as_ref().map_or(&[], |x| &x.details)
    }

    pub fn with_details(mut self, details: Vec<Detail>) -> Error {
        if !details.is_empty() {
            self.extra().details = details;
        }
        self
    }

    pub fn field(&self) -> Option<&'static str> {
        self.extra.as_ref().and_then(|x| x.field)
    }

    pub fn with_field(mut self, field: Option<&'static str>) -> Error {
        if field.is_some() {
            self.extra().field = field;
        }
        self
    }

    /// The kind of the OS error somewhere underneath, if there is one.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = match &self.source {
            Some(s) => Some(s.as_ref()),
            None => None,
        };
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                return Some(io.kind());
            }
            cause = c.source();
        }
        None
    }

    /// The stable machine-readable code of this error (the `code` of a JSON error, from the
    /// command line and over HTTP alike).
    pub fn code(&self) -> &'static str {
        match self.kind {
            Kind::Usage => "bad_request",
            Kind::Invalid | Kind::Rejected => "invalid",
            Kind::NotFound => "not_found",
            Kind::Conflict => "conflict",
            Kind::BadDatabase | Kind::Config | Kind::Unavailable => "unavailable",
            Kind::CheckFailed => "unhealthy",
            Kind::Busy => "busy",
            Kind::ReplicaDown => "replica_unavailable",
            Kind::NotPrimary => "not_primary",
            Kind::Io => match self.io_kind() {
                Some(std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) => {
                    "disk_full"
                }
                Some(
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem,
                ) => "not_writable",
                _ => "unavailable",
            },
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Usage
            | Kind::Invalid
            | Kind::Rejected
            | Kind::NotFound
            | Kind::BadDatabase
            | Kind::Config => exit::BAD_INPUT,
            Kind::Conflict | Kind::CheckFailed => exit::CHECK_FAILED,
            Kind::Busy | Kind::ReplicaDown | Kind::Unavailable | Kind::NotPrimary | Kind::Io => {
                exit::OPERATIONAL
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("hint", &self.hint)
            .field("extra", &self.extra)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(s) => Some(s.as_ref()),
            None => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::io("input/output", e)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentence_is_the_message_then_the_hint() {
        let e = Error::usage("restore: x.db already exists").with_hint("pass another --out");
        assert_eq!(
            e.to_string(),
            "restore: x.db already exists; pass another --out"
        );
        assert_eq!(e.exit_code(), exit::BAD_INPUT);
    }

    #[test]
    fn an_os_error_keeps_its_kind_underneath() {
        let e = Error::io(
            "backup: write /b",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        );
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::StorageFull));
        assert!(e.to_string().starts_with("backup: write /b: "));
        assert_eq!(e.exit_code(), exit::OPERATIONAL);
        assert_eq!(Error::usage("x").io_kind(), None);
    }
}
