//! ora keeps a small warehouse's inventory ledger, shipments, workflow states and daily KPIs in
//! one SQLite file and looks after that file by itself.
//!
//! # Layers
//! Each module uses only modules of lower layers (a test in `layers.rs` holds it):
//!
//! | layer | modules |
//! |---|---|
//! | 0 | [`clock`], [`awake`], [`shutdown`], [`error`] |
//! | 1 | [`model`], [`fsutil`], [`sdnotify`], [`words`] |
//! | 2 | [`store`], [`tls`] (beside each other) |
//! | 3 | [`import`], [`sample`] |
//! | 4 | [`file`] |
//! | 5 | [`replica`], [`remote`], [`standby`] (beside each other: none uses another) |
//! | 6 | [`ops`] |
//! | 7 | [`config`] |
//! | 8 | [`web`] |
//! | 9 | [`cli`] (and `main.rs`) |
//!
//! # Layout
//! - [`clock`]: the one clock ora reads dates from (`ORA_NOW` moves it, for tests).
//! - [`awake`]: waiting awake for a moment before sleeping, one thread at a time (the HTTP
//!   connections, the writer's waiting callers and its leader gathering a group).
//! - [`shutdown`]: the stop token of background loops and the SIGTERM/SIGINT watcher.
//! - [`error`]: the error every command and request ends in (a kind, the sentence, a hint, the
//!   source), and the one place it becomes an exit code.
//! - [`model`]: the domain's value types (sku, quantity, movement kinds, dates, verdict levels)
//!   and their validation. Pure, no I/O.
//! - [`fsutil`]: the OS-facing bits: lock files, directory checks, crash-safe files.
//! - [`sdnotify`]: readiness and watchdog notifications to systemd.
//! - [`words`]: how ora says times and statuses to people (pure).
//! - [`tls`]: the server's certificate (reloaded on SIGHUP), what a client of another box
//!   trusts (a pinned fingerprint, a CA), and self-signed pairs.
//! - [`store`]: the SQLite file: connection tuning, migrations, the reader pool, the single
//!   writer thread with group commit, every domain read and write, the invariants, the capture
//!   of every write transaction for the replica, the file's lineage, and the one door to a
//!   database file's bytes.
//! - [`import`]: CSV files of movements -> validated rows with line numbers.
//! - [`sample`]: deterministic sample data for benchmarks and tests.
//! - [`file`]: the whole-file toolkit: checks, the run log, building and installing a database
//!   beside the live one, progress, backups (snapshot, compression, catalog, drills, archive).
//! - [`replica`]: the continuous replica on a second disk, its owner, point-in-time restore.
//! - [`remote`]: outbox, forwarder, PostgreSQL and Qdrant targets, product search.
//! - [`standby`]: a second box following the primary over HTTP, and its promotion.
//! - [`ops`]: the commands on the whole file (health, maintain, restore, recover, adopt,
//!   verify, dump, metrics, report, ...), each recorded in `ops_log`.
//! - [`config`]: TOML file + environment -> a validated `Config`, defaults as named constants.
//! - [`web`]: the HTTP server, the page, the JSON API, `/health` and `/metrics`.
//! - [`cli`]: the command line (one file per command group); parses arguments, calls the
//!   library, prints for humans or as JSON.
//!
//! # Size
//! A function of more than 80 lines says why at its top, in a line beginning `Kept whole:`
//! (a test in `shape.rs` holds it).

pub mod awake;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod file;
pub mod fsutil;
pub mod import;
pub mod model;
pub mod ops;
pub mod remote;
pub mod replica;
pub mod sample;
pub mod sdnotify;
pub mod shutdown;
pub mod standby;
pub mod store;
pub mod tls;
pub mod web;
pub mod words;

pub use error::Error;

#[cfg(test)]
mod layers;
#[cfg(test)]
mod shape;
