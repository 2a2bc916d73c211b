//! What an HTTP request can fail with: the transport's own refusals (no such route, a method
//! the route does not take, no or a wrong token, a body too large, a media type, a stalled
//! client, a host name this server does not answer to), or the application's [`Error`].
//! [`Fault::status`] is the one place a failure becomes an HTTP status and its stable code.
//! (Heads over the limits are answered 431 by hyper itself, before any of this.)

use crate::error::{Error, Kind};

/// Why a request failed.
#[derive(Debug)]
pub enum Fault {
    /// The path names no route or resource.
    NoRoute(String),
    /// The route does not accept this method.
    MethodNotAllowed(String),
    /// A write came without the right bearer token.
    Unauthorized(String),
    /// A request body over the size limit.
    TooLarge(String),
    /// A request body that is not JSON where JSON is expected.
    UnsupportedMedia(String),
    /// The client stopped sending in the middle of a request.
    Timeout(String),
    /// A host name this server does not answer to (DNS rebinding).
    Misdirected(String),
    /// A standby's position the primary no longer keeps (take a new base).
    Gone(String),
    /// A standby's position that is not in the primary's history (take a new base).
    Diverged(String),
    /// The request reached the application, which refused or failed it.
    App(Error),
}

pub type Result<T> = std::result::Result<T, Fault>;

impl From<Error> for Fault {
    fn from(e: Error) -> Fault {
        Fault::App(e)
    }
}

impl From<crate::store::StoreError> for Fault {
    fn from(e: crate::store::StoreError) -> Fault {
        Fault::App(e.into())
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::NoRoute(m)
            | Fault::MethodNotAllowed(m)
            | Fault::Unauthorized(m)
            | Fault::TooLarge(m)
            | Fault::UnsupportedMedia(m)
            | Fault::Timeout(m)
            | Fault::Misdirected(m)
            | Fault::Gone(m)
            | Fault::Diverged(m) => f.write_str(m),
            Fault::App(e) => e.fmt(f),
        }
    }
}

impl Fault {
    /// A malformed request (400).
    pub fn usage(message: impl Into<String>) -> Fault {
        Fault::App(Error::usage(message))
    }

    /// A well-formed body with values out of range or of the wrong shape (422).
    pub fn invalid(message: impl Into<String>) -> Fault {
        Fault::App(Error::new(Kind::Invalid, message))
    }

    /// The HTTP status and the stable machine-readable `code` of the JSON error body.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Fault::NoRoute(_) => (404, "not_found"),
            Fault::MethodNotAllowed(_) => (405, "method_not_allowed"),
            Fault::Unauthorized(_) => (401, "unauthorized"),
            Fault::TooLarge(_) => (413, "too_large"),
            Fault::UnsupportedMedia(_) => (415, "unsupported_media_type"),
            Fault::Timeout(_) => (408, "timeout"),
            Fault::Misdirected(_) => (421, "misdirected"),
            Fault::Gone(_) => (410, "gone"),
            Fault::Diverged(_) => (409, "diverged"),
            Fault::App(e) => {
                let status = match e.kind() {
                    Kind::Usage => 400,
                    Kind::Invalid | Kind::Rejected => 422,
                    Kind::NotFound => 404,
                    Kind::Conflict => 409,
                    Kind::Io if e.code() == "disk_full" => 507,
                    Kind::BadDatabase
                    | Kind::Config
                    | Kind::CheckFailed
                    | Kind::Busy
                    | Kind::ReplicaDown
                    | Kind::NotPrimary
                    | Kind::Unavailable
                    | Kind::Io => 503,
                };
                (status, e.code())
            }
        }
    }

    /// The individual problems of a rejected batch (empty otherwise).
    pub fn problems(&self) -> &[String] {
        match self {
            Fault::App(e) => e.problems(),
            _ => &[],
        }
    }

    /// The same problems with their item and field.
    pub fn details(&self) -> Option<&[crate::error::Detail]> {
        match self {
            Fault::App(e) => Some(e.details()),
            _ => None,
        }
    }

    /// The field of the request the error is about, when one is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Fault::App(e) => e.field(),
            _ => None,
        }
    }
}
