//! Opening connections: the checks made before SQLite touches a file, and the PRAGMAs every
//! connection gets (DESIGN section 3). Must never open a file it has not checked first, and
//! never write to a file it cannot identify.

use std::io::Read;
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
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            busy_timeout_ms: DEFAULT_BUSY_TIMEOUT_MS,
            cache_size_kib: DEFAULT_CACHE_SIZE_KIB,
            synchronous: Synchronous::Full,
            wal_autocheckpoint: DEFAULT_WAL_AUTOCHECKPOINT,
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
/// missing parent directory, and (unless `create`) a missing file. Reads at most 100 bytes.
pub fn check_path(path: &Path, create: bool) -> Result<()> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(StoreError::BadDatabase(format!(
            "{shown} is a directory; --db must name a database file"
        ))),
        Ok(meta) if meta.len() == 0 => Ok(()),
        Ok(_) => {
            let mut head = Vec::with_capacity(100);
            std::fs::File::open(path)
                .and_then(|f| f.take(100).read_to_end(&mut head))
                .map_err(|e| {
                    StoreError::Failed(format!(
                        "open {shown}: {e}; check the file's owner and permissions"
                    ))
                })?;
            if head.len() < 100 || &head[..16] != SQLITE_MAGIC {
                return Err(StoreError::BadDatabase(format!(
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
                return Err(StoreError::BadDatabase(format!(
                    "the directory {} of database {shown} does not exist; create it or point --db elsewhere",
                    parent.display()
                )));
            }
            if create {
                Ok(())
            } else {
                Err(StoreError::BadDatabase(format!(
                    "no database at {shown}; create one with `ora init --db {shown}` or point --db at the right file"
                )))
            }
        }
        Err(e) => Err(StoreError::Failed(format!(
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
    Connection::open_with_flags(path, flags).ctx(&format!("open {}", path.display()))
}

/// Applies the PRAGMAs of DESIGN section 3 to a connection.
pub fn tune(conn: &Connection, t: &Tuning, role: Role) -> std::result::Result<(), rusqlite::Error> {
    conn.busy_timeout(Duration::from_millis(u64::from(t.busy_timeout_ms)))?;
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
        return Err(StoreError::Failed(format!(
            "open {}: the database file is read-only for this user; run ora as the owner of the database file and its directory",
            path.display()
        )));
    }
    Ok(())
}
