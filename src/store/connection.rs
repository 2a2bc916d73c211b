//! Opening connections: the checks made before SQLite touches a file, and the PRAGMAs every
//! connection gets (connection tuning). Every SQLite connection to a file in ora is opened here
//! (or by the reader pool, through [`super::dbfile::connecting`] too). Must never open a file it
//! has not checked first, never write to a file it cannot identify, and never read a
//! database's bytes except through [`super::dbfile`].

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::error::{Result, SqlContext, StoreError};

pub const DEFAULT_BUSY_TIMEOUT_MS: u32 = 8_000;
pub const DEFAULT_CACHE_SIZE_KIB: i64 = 20_000;
pub const DEFAULT_WAL_AUTOCHECKPOINT: u32 = 10_000;
pub const DEFAULT_READERS: u32 = 4;

/// How hard a commit is pushed to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at every commit: an acknowledged movement survives a power cut (the default).
    #[default]
    Full,
    /// fsync at checkpoints only: safe against a crash of ora, may lose the last commits on
    /// power loss.
    Normal,
}

impl Synchronous {
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Connection tuning shared by the writer and the readers.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub busy_timeout_ms: u32,
    pub cache_size_kib: i64,
    pub synchronous: Synchronous,
    pub wal_autocheckpoint: u32,
    /// Statements slower than this are counted in the slow-statement log (0: off).
    pub slow_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            busy_timeout_ms: DEFAULT_BUSY_TIMEOUT_MS,
            cache_size_kib: DEFAULT_CACHE_SIZE_KIB,
            synchronous: Synchronous::Full,
            wal_autocheckpoint: DEFAULT_WAL_AUTOCHECKPOINT,
            slow_ms: super::slowlog::DEFAULT_SLOW_MS,
        }
    }
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Writer,
    Reader,
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks `path` before SQLite opens it: refuses directories, files that are not SQLite, a
/// missing parent directory, and (unless `create`) a missing file. Reads at most 100 bytes,
/// and only while this process has no connection to the file: once one is open, SQLite has
/// accepted the header and a read of our own would drop its locks, so the header check is
/// skipped (SQLite itself refuses a file that is not a database).
pub fn check_path(path: &Path, create: bool) -> Result<()> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(StoreError::bad_database(format!(
            "{shown} is a directory; --db must name a database file"
        ))),
        Ok(meta) if meta.len() == 0 => Ok(()),
        Ok(_) => {
            let head = match super::dbfile::read_header(path) {
                Ok(head) => head,
                Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => return Ok(()),
                Err(e) => {
                    return Err(StoreError::failed(format!(
                        "open {shown}: {e}; check the file's owner and permissions"
                    )))
                }
            };
            if head.len() < 100 || &head[..16] != SQLITE_MAGIC {
                return Err(StoreError::bad_database(format!(
                    "{shown} is not a SQLite database (its first bytes are not the SQLite header); check --db, nothing was changed"
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if !parent.is_dir() {
                return Err(StoreError::bad_database(format!(
                    "the directory {} of database {shown} does not exist; create it or point --db elsewhere",
                    parent.display()
                )));
            }
            if create {
                Ok(())
            } else {
                Err(StoreError::bad_database(format!(
                    "no database at {shown}; create one with `ora init --db {shown}` or point --db at the right file"
                )))
            }
        }
        Err(e) => Err(StoreError::failed(format!(
            "open {shown}: {e}; check the path and its permissions"
        ))),
    }
}

/// Opens a raw connection without any tuning (the caller has run [`check_path`]).
pub fn open_raw(path: &Path, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    open_with_flags(path, flags).ctx(&format!("open {}", path.display()))
}

/// Opens (creating if needed) a connection with SQLite's defaults: for files ora made itself
/// and checks before anything else sees them (a restore candidate, a drill's scratch copy, a
/// salvage output, the sample generator).
pub fn open_plain(path: &Path) -> rusqlite::Result<Connection> {
    open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// Every SQLite open of a file in ora: through the byte-reader gate.
pub(crate) fn open_with_flags(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    super::dbfile::connecting(path, || Connection::open_with_flags(path, flags))
        .map_err(gate_error)?
}

/// The gate's refusal as an SQLite "cannot open" error, for callers that speak rusqlite.
pub(crate) fn gate_error(e: std::io::Error) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
        Some(e.to_string()),
    )
}

/// Makes `conn` wait up to `timeout` for a lock another connection holds, trying again every
/// millisecond. SQLite's own busy timeout backs off to a try every 100 ms, so a process that
/// takes the write lock again right after each short transaction (maintenance and archive
/// slices, another process's writer) would keep a waiting writer out for as long as it runs;
/// with a try every millisecond, a pause of [`super::capture::HAND_OVER`] lets it in.
pub fn wait_when_busy(conn: &Connection, timeout: Duration) -> rusqlite::Result<()> {
    /// SQLite calls this with how many times it has already called it for the same lock;
    /// the context is the timeout in milliseconds, carried in the pointer's value itself.
    extern "C" fn every_millisecond(
        ctx: *mut std::ffi::c_void,
        tries: std::ffi::c_int,
    ) -> std::ffi::c_int {
        let limit = ctx as usize;
        if usize::try_from(tries).unwrap_or(usize::MAX) >= limit {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(1));
        1
    }
    let ms = usize::try_from(timeout.as_millis()).unwrap_or(usize::MAX);
    if ms == 0 {
        return conn.busy_timeout(Duration::ZERO);
    }
    // SAFETY: the handle is this open connection's; the callback never dereferences its
    // context (an integer), and SQLite replaces the handler when another is set.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_busy_handler(conn.handle(), Some(every_millisecond), ms as *mut _)
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rc),
            None,
        ))
    }
}

/// Applies ora's PRAGMAs to a connection (WAL, foreign keys, busy timeout, cache, sync).
pub fn tune(conn: &Connection, t: &Tuning, role: Role) -> std::result::Result<(), rusqlite::Error> {
    super::slowlog::install(conn, t.slow_ms);
    wait_when_busy(conn, Duration::from_millis(u64::from(t.busy_timeout_ms)))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "the database cannot use WAL journaling here (journal_mode stays {mode}); keep it on a local disk"
            )),
        ));
    }
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{};
         PRAGMA synchronous = {};",
        t.cache_size_kib,
        t.synchronous.as_str()
    ))?;
    match role {
        Role::Writer => conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {};",
            t.wal_autocheckpoint
        ))?,
        Role::Reader => conn.execute_batch("PRAGMA query_only = ON;")?,
    }
    Ok(())
}

/// Opens a tuned connection for writing to an existing, checked database: the writer thread's
/// connection, or a benchmark's naive client.
pub fn open_writer(path: &Path, t: &Tuning) -> Result<Connection> {
    let conn = open_raw(path, false)?;
    tune(&conn, t, Role::Writer).ctx(&format!("open {}", path.display()))?;
    ensure_writable(&conn, path)?;
    Ok(conn)
}

/// Refuses a connection that SQLite silently opened read-only (file not writable by us).
pub fn ensure_writable(conn: &Connection, path: &Path) -> Result<()> {
    let ro = conn
        .is_readonly(rusqlite::MAIN_DB)
        .ctx(&format!("open {}", path.display()))?;
    if ro {
        return Err(StoreError::failed(format!(
            "open {}: the database file is read-only for this user; run ora as the owner of the database file and its directory",
            path.display()
        )));
    }
    Ok(())
}

/// The reader pool's connection factory: r2d2_sqlite's manager, opened through the byte-reader
/// gate like every other connection.
pub struct ReaderManager {
    inner: r2d2_sqlite::SqliteConnectionManager,
    path: std::path::PathBuf,
}

impl ReaderManager {
    pub fn new(path: &Path, tuning: &Tuning) -> ReaderManager {
        let t = tuning.clone();
        let inner = r2d2_sqlite::SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(move |c| tune(c, &t, Role::Reader));
        ReaderManager {
            inner,
            path: path.to_path_buf(),
        }
    }
}

impl r2d2::ManageConnection for ReaderManager {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> std::result::Result<Connection, rusqlite::Error> {
        super::dbfile::connecting(&self.path, || self.inner.connect()).map_err(gate_error)?
    }

    fn is_valid(&self, conn: &mut Connection) -> std::result::Result<(), rusqlite::Error> {
        self.inner.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        self.inner.has_broken(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked(dir: &Path) -> (std::path::PathBuf, Connection) {
        let db = dir.join("t.db");
        let holder = Connection::open(&db).unwrap();
        holder
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); BEGIN IMMEDIATE;")
            .unwrap();
        (db, holder)
    }

    // A write lock held a moment elsewhere is waited for and taken.
    #[test]
    fn a_busy_lock_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let (db, holder) = locked(dir.path());
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            holder.execute_batch("COMMIT").unwrap();
        });
        let conn = Connection::open(&db).unwrap();
        wait_when_busy(&conn, Duration::from_secs(3600)).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1); COMMIT;")
            .expect("the lock, once free");
        release.join().unwrap();
    }

    // A lock held for good is given up on after the timeout (none: at once), as SQLITE_BUSY.
    #[test]
    fn a_lock_held_for_good_is_given_up_on() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _holder) = locked(dir.path());
        let conn = Connection::open(&db).unwrap();
        for timeout in [Duration::from_millis(20), Duration::ZERO] {
            wait_when_busy(&conn, timeout).unwrap();
            let err = conn.execute_batch("BEGIN IMMEDIATE").unwrap_err();
            assert_eq!(
                err.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy),
                "{err}"
            );
        }
    }
}
