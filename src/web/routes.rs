//! Routing: method + path -> handler -> JSON response. Every error becomes
//! `{"error": "...", "code": "..."}` with the status from [`Error::http_status`].

use std::io::Cursor;

use tiny_http::{Header, Request, Response};

use super::server::AppState;
use crate::error::Error;

type Reply = Response<Cursor<Vec<u8>>>;

/// Answers one request; never panics, never leaves it unanswered.
pub fn handle(state: &AppState, req: Request) {
    let method = req.method().as_str().to_string();
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let reply = match (method.as_str(), path.as_str()) {
        ("GET", "/health") => health(state),
        (_, "/health") => Err(method_not_allowed("GET")),
        _ => Err(Error::NoRoute(format!("no route for {method} {path}"))),
    };
    let reply = reply.unwrap_or_else(|e| error_reply(&e));
    if let Err(e) = req.respond(reply) {
        log::debug!("http: could not send the response: {e}");
    }
}

fn method_not_allowed(allowed: &str) -> Error {
    Error::MethodNotAllowed(format!("method not allowed; use {allowed}"))
}

fn json_header() -> Header {
    Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .unwrap_or_else(|_| Header::from_bytes(&b"X"[..], &b"x"[..]).expect("static header"))
}

/// A JSON reply with a status code.
pub fn json_reply(status: u16, value: &serde_json::Value) -> Reply {
    Response::from_data(value.to_string().into_bytes())
        .with_status_code(status)
        .with_header(json_header())
}

fn error_reply(e: &Error) -> Reply {
    let (status, code) = e.http_status();
    json_reply(
        status,
        &serde_json::json!({ "error": e.to_string(), "code": code }),
    )
}

fn health(state: &AppState) -> Result<Reply, Error> {
    let conn = state.store.read()?;
    let products: i64 = conn
        .query_row("SELECT count(*) FROM inventory_current", [], |r| r.get(0))
        .map_err(|e| crate::store::StoreError::sqlite("health", e))?;
    Ok(json_reply(
        200,
        &serde_json::json!({
            "status": "ok",
            "database": state.store.path().display().to_string(),
            "products": products,
            "uptime_seconds": state.started.elapsed().as_secs(),
        }),
    ))
}
