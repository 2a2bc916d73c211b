//! The helpers every whole-file operation shares: the query-only connection an operation reads
//! a live database through, and SQLite's own checks (`quick_check`, `integrity_check`) as one
//! line, alone or beside other work on a private file. Opens nothing but through
//! `store::connection`; never writes.

use std::path::Path;

use crate::error::Result;
use crate::store::connection::{self, Role};
use crate::store::StoreError;
use crate::store::{schema, Tuning};

/// Opens a tuned, query-only connection on an existing ora database.
pub fn open_source(db: &Path, tuning: &Tuning, what: &str) -> Result<rusqlite::Connection> {
    connection::check_path(db, false)?;
    let conn = connection::open_raw(db, false)?;
    let shown = db.display().to_string();
    schema::check_compatible(schema::identify(&conn, &shown)?, &shown)?;
    connection::tune(&conn, tuning, Role::Reader)
        .map_err(|e| StoreError::sqlite(&format!("{what}: open {shown}"), e))?;
    Ok(conn)
}

/// quick_check's verdict: "ok" or the first messages joined.
pub fn quick_check(conn: &rusqlite::Connection) -> Result<String> {
    pragma_check(conn, "quick_check")
}

/// Runs `PRAGMA quick_check` or `integrity_check`: "ok", or the first five problems on one
/// line.
pub fn pragma_check(conn: &rusqlite::Connection, which: &str) -> Result<String> {
    let sql = |e| StoreError::sqlite(which, e);
    let mut st = conn.prepare(&format!("PRAGMA {which}(5)")).map_err(sql)?;
    let msgs = st
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sql)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql)?;
    let joined = msgs
        .join("; ")
        .replace("*** in database main ***\n", "")
        .replace('\n', "; ");
    Ok(joined)
}

/// `check` (quick_check or integrity_check) of the private file at `path`, on a connection
/// (set up by `setup`, SQL) and thread of its own, while `rows` runs on the caller's thread:
/// the two take about the longer of them, not their sum. Nothing may write the file meanwhile.
/// `what` names the operation in messages.
pub fn page_check_beside<T>(
    path: &Path,
    check: &str,
    setup: &str,
    what: &str,
    rows: impl FnOnce() -> T,
) -> (Result<String>, T) {
    std::thread::scope(|s| {
        let pages = s.spawn(|| -> Result<String> {
            let c = connection::open_plain(path)
                .and_then(|c| c.execute_batch(setup).map(|()| c))
                .map_err(|e| StoreError::sqlite(&format!("{what}: open {}", path.display()), e))?;
            pragma_check(&c, check)
        });
        let rows = rows();
        let pages = pages.join().unwrap_or_else(|_| {
            Err(crate::error::Error::failed(format!(
                "{what}: the checking thread panicked"
            )))
        });
        (pages, rows)
    })
}
