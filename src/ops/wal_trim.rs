//! The daily routine's WAL step: copy the WAL back into the database without ever holding
//! the writers, and give the WAL's disk space back only when it grew far past its working
//! size. Owns nothing but that step; never opens, truncates or removes the WAL itself (SQLite
//! does, under its own locks; only the file's length is looked at).
//!
//! Why not `wal_checkpoint(TRUNCATE)` every night: it takes the write lock first and then,
//! holding it, waits (up to the busy timeout) for every reader still on an older state (a
//! backup, a verify) and copies what is left; its truncation then held a writer 36-60 ms on
//! the 20M-row file (the ftruncate alone 43 ms), in proportion to the WAL's size. A PASSIVE
//! checkpoint copies everything it can without any lock a writer needs; the WAL it leaves is
//! reused from its start by SQLite, so its size is only the busiest night's, and the server
//! needs that size again the next night. A WAL past a quarter of the database (at least
//! 64 MB) is taken for a one-off (a reader left open for hours) and truncated, which costs
//! the writers a moment in proportion to its size (about 40 ms per 100 MB here).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::Result;
use crate::store::StoreError;

/// A WAL larger than this, and than a quarter of the database, after the checkpoint is
/// truncated (a reader left open far longer than the nightly jobs let it grow).
pub const KEEP_BYTES: u64 = 64 << 20;

/// Tries at truncating, each without waiting for a writer or a reader.
const TRUNCATE_TRIES: u32 = 20;
/// The pause between two tries.
const TRUNCATE_PAUSE: Duration = Duration::from_millis(50);

/// Copies the WAL into the database (PASSIVE), then truncates it if it is over
/// [`KEEP_BYTES`] and a quarter of the database, and no writer or reader is in the way at
/// one of a few tries. Leaves the connection's busy timeout at `busy_timeout`.
pub fn checkpoint(conn: &Connection, db: &Path, busy_timeout: Duration) -> Result<String> {
    let database = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    checkpoint_keeping(conn, db, busy_timeout, KEEP_BYTES.max(database / 4))
}

fn checkpoint_keeping(
    conn: &Connection,
    db: &Path,
    busy_timeout: Duration,
    keep_bytes: u64,
) -> Result<String> {
    let (_, log, done) = run(conn, "PASSIVE")?;
    let copied = format!("{done} of {log} frames copied");
    let size = wal_len(db);
    if size <= keep_bytes {
        return Ok(format!(
            "{copied}; the WAL ({}) is kept for reuse",
            megabytes(size)
        ));
    }
    let sql = |e| StoreError::sqlite("maintain: checkpoint", e);
    conn.busy_timeout(Duration::ZERO).map_err(sql)?;
    let truncated = try_truncate(conn);
    crate::store::connection::wait_when_busy(conn, busy_timeout).map_err(sql)?;
    Ok(if truncated? {
        format!("{copied}; the WAL ({}) truncated", megabytes(size))
    } else {
        format!(
            "{copied}; the WAL ({}) is in use by a writer or a reader, it will be truncated another night",
            megabytes(size)
        )
    })
}

fn try_truncate(conn: &Connection) -> Result<bool> {
    for attempt in 0..TRUNCATE_TRIES {
        if attempt > 0 {
            std::thread::sleep(TRUNCATE_PAUSE);
        }
        if run(conn, "TRUNCATE")?.0 == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `PRAGMA wal_checkpoint(mode)`: busy (1 when it could not finish), WAL frames, frames copied.
fn run(conn: &Connection, mode: &str) -> Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .map_err(|e| StoreError::sqlite("maintain: checkpoint", e).into())
}

/// The WAL's length on disk (0 when there is none), read from its metadata: no descriptor of
/// it is opened.
fn wal_len(db: &Path) -> u64 {
    let wal = crate::file::install::companion(db, "-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: u64 = 64 << 10;
    /// Long enough that a checkpoint waiting on it would never end within the test run.
    const PATIENT: Duration = Duration::from_secs(3600);

    fn wal_db(dir: &Path) -> (std::path::PathBuf, Connection) {
        let db = dir.join("w.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t(b BLOB);",
        )
        .unwrap();
        (db, conn)
    }

    fn grow(conn: &Connection, kb: i64) {
        conn.execute("INSERT INTO t VALUES (zeroblob(?1))", [kb * 1024])
            .unwrap();
    }

    #[test]
    fn a_wal_of_working_size_is_kept_and_a_grown_one_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let (db, conn) = wal_db(dir.path());
        grow(&conn, 16);
        let said = checkpoint_keeping(&conn, &db, PATIENT, KEEP).unwrap();
        assert!(said.contains("kept for reuse"), "{said}");
        assert!(wal_len(&db) > 0);
        grow(&conn, 256);
        let said = checkpoint_keeping(&conn, &db, PATIENT, KEEP).unwrap();
        assert!(said.contains("truncated"), "{said}");
        assert_eq!(wal_len(&db), 0);
        let count: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 2, "nothing lost");
    }

    static WAITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A busy handler that counts the waits it is asked for and grants none.
    fn count_waits(_: i32) -> bool {
        WAITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        false
    }

    // A reader on an older state keeps the WAL: the step gives up and says so instead of
    // waiting for it. A TRUNCATE checkpoint waits for readers holding the write lock, every
    // writer behind it: here it never asks its connection's busy handler for a wait.
    #[test]
    fn a_reader_in_the_way_is_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let (db, conn) = wal_db(dir.path());
        grow(&conn, 16);
        let reader = Connection::open(&db).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM t;")
            .unwrap();
        grow(&conn, 256);
        let size = wal_len(&db);
        conn.busy_handler(Some(count_waits)).unwrap();
        let said = checkpoint_keeping(&conn, &db, PATIENT, KEEP).unwrap();
        assert_eq!(
            WAITS.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "waited on the reader"
        );
        assert!(said.contains("another night"), "{said}");
        assert_eq!(wal_len(&db), size, "left as it was");
        // The connection waits for locks again: a write lock held a moment elsewhere is
        // waited for, not refused.
        let holder = Connection::open(&db).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            holder.execute_batch("COMMIT").unwrap();
        });
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
            .expect("the connection's busy wait is given back");
        release.join().unwrap();
        reader.execute_batch("COMMIT").unwrap();
        let said = checkpoint_keeping(&conn, &db, PATIENT, KEEP).unwrap();
        assert!(said.contains("truncated"), "{said}");
    }
}
