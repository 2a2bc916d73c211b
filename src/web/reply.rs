//! A response before it is sent: status, content type, body, extra headers. Built by handlers
//! (pure data), sent by the server in one place.

use super::fault::Fault;
use crate::error::Error;

/// A response to send.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    /// Serializes any value as a JSON reply.
    pub fn of<T: serde::Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_value(value) {
            Ok(v) => Reply::json(status, &v),
            Err(e) => Reply::error(&Fault::App(Error::failed(format!(
                "could not encode the answer: {e}"
            )))),
        }
    }

    pub fn html(body: String) -> Reply {
        Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into_bytes(),
            headers: Vec::new(),
        }
    }

    /// `{"error": "...", "code": "..."}` with the status of [`Fault::status`].
    pub fn error(e: &Fault) -> Reply {
        let (status, code) = e.status();
        let mut body = serde_json::json!({ "error": e.to_string(), "code": code });
        if !e.problems().is_empty() {
            body["problems"] = serde_json::json!(e.problems());
        }
        if let Some(d) = e.details() {
            if !d.is_empty() {
                body["errors"] = serde_json::json!(d);
            }
        }
        if let Some(f) = e.field() {
            body["field"] = serde_json::json!(f);
        }
        let mut r = Reply::json(status, &body);
        match e {
            Fault::Unauthorized(_) => r.headers.push(("WWW-Authenticate", "Bearer".into())),
            Fault::App(a)
                if matches!(
                    a.kind(),
                    crate::error::Kind::Busy | crate::error::Kind::NotPrimary
                ) =>
            {
                r.headers.push(("Retry-After", "5".into()))
            }
            _ => {}
        }
        r
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}
