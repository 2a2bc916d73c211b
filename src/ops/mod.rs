//! Operations on the whole database file (DESIGN section 4). Each is a function taking an
//! options struct, recording its run in `ops_log`, and returning a report; none prints.

pub mod oplog;
pub mod verify;
