//! The HTTP server: hyper 1 on tokio (whole-request deadlines, a bounded number of
//! connections, each on its own thread with its handler), routing to handlers that read through the
//! store's reader pool and write through its writer. Every failure becomes a JSON error;
//! nothing here may panic on a request.
//!
//! - [`http`]: connections, framing checks, limits, deadlines, the watchdog's probe.  [`server`]: state and start-up.
//! - [`routes`]: method + path -> handler, with the checks every request gets.
//! - [`request`]: URL, token, content type.  [`reply`]: the response type.
//! - [`replication`]: the standbys' feed and base, promotion and fencing.
//! - [`api`]: the JSON API's writes and ledger reads; [`lists`]: its other read-only listings.  [`health`]: `/health`.  [`metrics`]: `/metrics`.
//! - [`status`] gathers and [`page`] renders the status page, with [`charts`], [`style`] and [`script`] (search as you type) in the [`frame`] every page shares; [`product`]: a product's page and JSON; [`find`]: the search box's page; [`csv`]: lists as CSV.

mod api;
mod body;
mod charts;
mod csv;
mod fault;
mod find;
mod flow;
mod frame;
mod health;
mod http;
mod lists;
mod metrics;
mod openapi;
mod page;
mod product;
mod replication;
mod reply;
mod request;
mod routes;
mod script;
mod server;
mod status;
mod style;

pub use server::{bind, serve, AppState};
