//! ora keeps a small warehouse's inventory ledger, shipments, workflow states and daily KPIs in
//! one SQLite file and looks after that file by itself.
//!
//! # Layout
//! - [`cli`]: the command line (one file per command group); parses arguments into a validated
//!   [`config::Config`] and calls the library. The only place that prints for humans.
//! - [`config`]: TOML file + environment -> a validated `Config`, defaults as named constants.
//! - [`error`]: the top-level error type and the one place it becomes exit codes and HTTP
//!   statuses.
//! - [`model`]: the domain's value types (sku, quantity, movement kinds, dates) and their
//!   validation. Pure, no I/O.
//! - [`store`]: the SQLite file: connection tuning, migrations, the reader pool, the single
//!   writer thread with group commit, every domain read and write, the capture of every write
//!   transaction for the replica, and the one door to a database file's bytes.
//! - [`import`]: CSV files of movements -> validated rows with line numbers.
//! - [`ops`]: operations on the whole file (verify, ...), each recorded in `ops_log`.
//! - [`web`]: the HTTP server.
//! - [`remote`]: outbox, forwarder, PostgreSQL and Qdrant targets, product search.
//! - [`replica`]: the continuous replica on a second disk and point-in-time restore from it.
//! - [`fsutil`]: the OS-facing bits: lock files, directory checks, crash-safe files.
//! - [`awake`]: waiting awake for a moment before sleeping, one thread at a time (the HTTP
//!   connections, the writer's waiting callers and its leader gathering a group).
//! - [`sdnotify`]: readiness and watchdog notifications to systemd.
//! - [`sample`]: deterministic sample data for benchmarks and tests.
//! - [`shutdown`]: the stop token of background loops and the SIGTERM/SIGINT watcher.

pub mod awake;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod import;
pub mod model;
pub mod ops;
pub mod remote;
pub mod replica;
pub mod sample;
pub mod sdnotify;
pub mod shutdown;
pub mod store;
pub mod web;

pub use error::Error;
