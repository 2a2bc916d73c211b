//! Operations on the whole database file. Each takes an options struct,
//! records its run in `ops_log`, and returns a report; none prints (the CLI does).
//!
//! - [`adopt`]: the old system's database brought into ora.
//! - [`health`]: is everything all right (exit 1 when not).
//! - [`maintain`]: the daily and weekly routines ([`wal_trim`]: their WAL step).
//! - [`restore`]: atomic replacement of the database by a backup.
//! - [`dump`]: logical SQL dump.
//! - [`from_mirror`]: a lost box's database rebuilt from the central PostgreSQL mirror.
//! - [`recover`]: page-level salvage of a damaged file.
//! - [`shipment_archive`]: old shipments moved to archive files, and read back.
//! - [`upgrade`]: the backup taken before a schema migration.
//! - [`verify`]: the invariants.
//! - [`metrics`]: the metrics report and `explain`.
//! - [`report`]: the monthly review.
//! - [`round`]: how long the nightly round and the weekly full pass take.

pub mod adopt;
pub mod dump;
#[cfg(feature = "postgres")]
pub mod from_mirror;
pub mod health;
pub mod maintain;
pub mod metrics;
pub mod recover;
pub mod report;
pub mod restore;
pub mod round;
pub mod shipment_archive;
pub mod upgrade;
pub mod verify;
pub mod wal_trim;
pub mod warehouse;
