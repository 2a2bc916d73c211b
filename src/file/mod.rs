//! The whole-file toolkit the operations and the replica are built from: the query-only source
//! connection and SQLite's checks ([`check`]), the run log ([`oplog`]), building a database
//! beside the live one and installing it atomically with its lineage ([`install`]), progress on
//! a terminal ([`progress`]), and verified compressed snapshots with their catalog, drills and
//! archive ([`backup`]). Knows nothing of the replica, the remote targets or the commands above.

pub mod backup;
pub mod check;
pub mod install;
pub mod oplog;
pub mod progress;
