//! The HTTP server (DESIGN section 6): a small pool of threads over tiny_http, routing to
//! handlers that read through the store's reader pool and queue writes to its writer. Every
//! failure becomes a JSON error; nothing here may panic on a request.
//!
//! - [`server`]: the loop, the responder for writes, large-body threads, HTTP statistics.
//! - [`routes`]: method + path -> handler, with the checks every request gets.
//! - [`request`]: URL, headers, token, body limits.  [`reply`]: the response type.
//! - [`api`]: the JSON API.  [`health`]: `/health`.  [`metrics`]: `/metrics`.
//! - [`status`] gathers and [`page`] renders the status page, with [`charts`].

pub mod api;
pub mod charts;
pub mod health;
pub mod metrics;
pub mod page;
pub mod reply;
pub mod request;
pub mod routes;
pub mod server;
pub mod status;

pub use server::{bind, serve, AppState};
