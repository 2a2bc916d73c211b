//! The HTTP server (DESIGN section 6): a small pool of threads over tiny_http, routing to
//! handlers that read through the store's reader pool and write through its writer. Handlers
//! turn every failure into a JSON error; nothing here may panic on a request.

mod routes;
mod server;

pub use server::{bind, serve, AppState};
