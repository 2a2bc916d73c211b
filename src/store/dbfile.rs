//! The one door to the bytes of a database file outside SQLite, and the gate every SQLite
//! connection of this process opens through.
//!
//! POSIX record locks belong to the process, not to the descriptor: closing *any* descriptor
//! of a file drops every lock the process holds on it. A process with an SQLite connection that
//! opens the database (or its `-shm`) itself, reads a few bytes and closes it, silently gives
//! up the locks SQLite relies on; the next neighbour (a `sqlite3` shell, a backup job) then
//! thinks it is the last user, checkpoints and deletes the WAL that this process goes on
//! writing into, and acknowledged movements vanish. So:
//! - [`open`] is the only way ora reads a database-like file byte by byte (the database, its
//!   WAL, a backup, a salvage source). It refuses, with [`std::io::ErrorKind::ResourceBusy`],
//!   when any descriptor of this process already refers to the file or to the database it
//!   belongs to (read off `/proc/self/fd`, which counts SQLite's own descriptors, including the
//!   ones it keeps after a connection closed). [`remove`] and [`rename`] refuse the same way,
//!   so a live WAL or shm is never deleted or moved from under a connection of this process.
//! - [`connecting`] wraps every SQLite open of a file in ora (`store::connection`, the reader
//!   pool): it refuses while a byte-level descriptor from [`open`] is alive on that database,
//!   and holds the same mutex as [`open`], so the check and the open cannot interleave.
//!
//! Must never hand out a descriptor of a file that a connection of this process may hold locks
//! on, and must never itself lock, write or truncate a database file.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// (device, inode) of a file.
type FileId = (u64, u64);

/// Database files with a byte-level descriptor from [`open`] alive now (one entry per
/// descriptor, so two readers of one file are counted twice).
static RAW_OPEN: Mutex<Vec<FileId>> = Mutex::new(Vec::new());

fn registry() -> MutexGuard<'static, Vec<FileId>> {
    // A panic while holding the lock cannot leave the list half-changed (push/remove are
    // single steps), so a poisoned lock is still right to use.
    RAW_OPEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// The suffixes SQLite gives the files that belong to a database.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The database a path belongs to: `x.db` for `x.db`, `x.db-wal`, `x.db-shm`, `x.db-journal`.
fn main_of(path: &Path) -> PathBuf {
    let s = path.as_os_str().to_string_lossy();
    for suffix in COMPANIONS {
        if let Some(base) = s.strip_suffix(suffix) {
            if !base.is_empty() {
                return PathBuf::from(base);
            }
        }
    }
    path.to_path_buf()
}

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn id_of(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The files of the database `path` belongs to that exist now (the path itself included).
fn family(path: &Path) -> Vec<FileId> {
    let db = main_of(path);
    let mut ids: Vec<FileId> = std::iter::once(path.to_path_buf())
        .chain(std::iter::once(db.clone()))
        .chain(COMPANIONS.iter().map(|s| with_suffix(&db, s)))
        .filter_map(|p| id_of(&p))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether any descriptor of this process refers to one of `ids`.
fn held_by_this_process(ids: &[FileId]) -> io::Result<bool> {
    if ids.is_empty() {
        return Ok(false);
    }
    let entries = std::fs::read_dir("/proc/self/fd").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("list this process's open files in /proc/self/fd: {e}"),
        )
    })?;
    for entry in entries.flatten() {
        // stat through the magic link: the file the descriptor refers to, without opening it.
        if let Ok(m) = std::fs::metadata(entry.path()) {
            if ids.contains(&(m.dev(), m.ino())) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn busy(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!(
            "{what} {}: this process has the database open through SQLite, and touching its files directly would drop SQLite's locks (this is a bug in ora; please report it)",
            path.display()
        ),
    )
}

/// A read-only descriptor of a database-like file, handed out only while no SQLite connection
/// of this process can hold locks on it. While it lives, SQLite connections to that database
/// are refused in this process (see [`connecting`]).
pub struct RawFile {
    /// `Some` until drop, which closes it before unregistering (so a connection can never
    /// open in between and lose its locks to this close).
    file: Option<File>,
    registered: Vec<FileId>,
}

impl RawFile {
    pub fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("a RawFile's descriptor is open until drop")
    }
}

impl io::Read for RawFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut self.file(), buf)
    }
}

impl Drop for RawFile {
    fn drop(&mut self) {
        drop(self.file.take());
        let mut reg = registry();
        for id in &self.registered {
            if let Some(at) = reg.iter().position(|x| x == id) {
                reg.swap_remove(at);
            }
        }
    }
}

/// Opens `path` for reading its bytes. Refuses (ResourceBusy) when this process has the file,
/// or the database it belongs to, open in any other way.
pub fn open(path: &Path) -> io::Result<RawFile> {
    let mut reg = registry();
    let ids = family(path);
    // A byte reader of this database already open means no connection has opened since (they
    // are refused meanwhile) and none was open before (it was checked): the descriptors found
    // would be byte readers only, which hold no locks.
    let reader_open = ids.iter().any(|id| reg.contains(id));
    if !reader_open && held_by_this_process(&ids)? {
        return Err(busy(path, "read"));
    }
    let file = File::open(path)?;
    reg.extend_from_slice(&ids);
    if let Ok(m) = file.metadata() {
        // The file may have been created between the stat and the open.
        let id = (m.dev(), m.ino());
        if !ids.contains(&id) {
            reg.push(id);
            let mut registered = ids;
            registered.push(id);
            return Ok(RawFile {
                file: Some(file),
                registered,
            });
        }
    }
    Ok(RawFile {
        file: Some(file),
        registered: ids,
    })
}

/// The first 100 bytes of a database file (its header), or fewer when the file is shorter.
/// Refuses like [`open`] while the database is open through SQLite in this process.
pub fn read_header(path: &Path) -> io::Result<Vec<u8>> {
    use io::Read;
    let raw = open(path)?;
    let mut head = Vec::with_capacity(100);
    raw.file().take(100).read_to_end(&mut head)?;
    Ok(head)
}

/// fsyncs a database file that this process has no connection to (a salvage output just
/// finished). Refuses like [`open`].
pub fn sync(path: &Path) -> io::Result<()> {
    open(path)?.file().sync_all()
}

/// Creates a new file for a database image (a scratch copy to check), failing if it exists.
/// A file that did not exist cannot be open through SQLite in this process.
pub fn create_new(path: &Path) -> io::Result<File> {
    let _guard = registry();
    crate::fsutil::create_private(path)
}

/// Removes a database file or companion (`-wal`, `-shm`) that no descriptor of this process
/// refers to. A missing file is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    let _guard = registry();
    if held_by_this_process(&family(path))? {
        return Err(busy(path, "remove"));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Renames a database file or companion that no descriptor of this process refers to.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    let _guard = registry();
    if held_by_this_process(&family(from))? {
        return Err(busy(from, "move"));
    }
    std::fs::rename(from, to)
}

/// Runs `open` (an SQLite open of the database at `path`) unless a byte-level descriptor of
/// that database from [`open`] is alive in this process; the check and the open happen under
/// one lock, so no byte-level reader can start in between.
pub fn connecting<T>(path: &Path, open: impl FnOnce() -> T) -> io::Result<T> {
    let reg = registry();
    if !reg.is_empty() {
        let ids = family(path);
        if ids.iter().any(|id| reg.contains(id)) {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "open {}: this process is reading the file's bytes directly, and a connection now would lose its locks when that reader closes (this is a bug in ora; please report it)",
                    path.display()
                ),
            ));
        }
    }
    Ok(open())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this process holds any descriptor of the database `path` belongs to (an
    /// SQLite connection, or a byte-level reader).
    fn in_use_here(path: &Path) -> io::Result<bool> {
        let _guard = registry();
        held_by_this_process(&family(path))
    }

    fn db_with_wal() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(a); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        (dir, db)
    }

    #[test]
    fn byte_reads_are_refused_while_a_connection_is_open_and_allowed_after() {
        let (_dir, db) = db_with_wal();
        assert_eq!(read_header(&db).unwrap().len(), 100);
        let conn = crate::store::connection::open_raw(&db, false).unwrap();
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap();
        for p in [
            db.clone(),
            with_suffix(&db, "-wal"),
            with_suffix(&db, "-shm"),
        ] {
            let err = open(&p).err().expect("refused while the connection lives");
            assert_eq!(err.kind(), io::ErrorKind::ResourceBusy, "{p:?}: {err}");
            let err = remove(&p).expect_err("remove refused while the connection lives");
            assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
            assert!(p.exists(), "{p:?} must still be there");
        }
        assert!(in_use_here(&db).unwrap());
        drop(conn);
        assert!(!in_use_here(&db).unwrap());
        assert_eq!(read_header(&db).unwrap().len(), 100);
    }

    #[test]
    fn connections_are_refused_while_a_byte_reader_is_open() {
        let (_dir, db) = db_with_wal();
        let raw = open(&db).unwrap();
        let err = crate::store::connection::open_raw(&db, false)
            .expect_err("a connection must wait for the byte reader");
        assert!(
            err.to_string().contains("reading the file's bytes"),
            "{err}"
        );
        drop(raw);
        crate::store::connection::open_raw(&db, false).unwrap();
    }

    #[test]
    fn other_files_are_not_affected() {
        let (dir, db) = db_with_wal();
        let other = dir.path().join("backup.db");
        std::fs::copy(&db, &other).unwrap();
        let _conn = crate::store::connection::open_raw(&db, false).unwrap();
        assert_eq!(read_header(&other).unwrap().len(), 100);
    }

    /// Every place in `src/` that opens a file itself, with why it cannot be a database that a
    /// connection of the process holds. A new open of a database, WAL, shm or backup must go
    /// through this module instead; anything else is added here with its reason.
    const ALLOWED_OPENS: &[(&str, &str, usize, &str)] = &[
        (
            "store/dbfile.rs",
            "File::open(",
            1,
            "the guarded door itself",
        ),
        (
            "store/connection.rs",
            "Connection::open_with_flags(",
            1,
            "the gated SQLite open",
        ),
        (
            "fsutil.rs",
            "OpenOptions::new(",
            2,
            "the server's lock file; new private files",
        ),
        (
            "fsutil.rs",
            "File::open(",
            2,
            "the lock file probe; a directory to fsync",
        ),
        ("fsutil.rs", "fs::read_to_string(", 2, "the lock file's pid"),
        (
            "file/backup/catalog.rs",
            "fs::read_to_string(",
            1,
            "a backup's checksum sidecar",
        ),
        ("cli/vector_arg.rs", "File::open(", 1, "a JSON vector file"),
        (
            "config/standby.rs",
            "fs::read_to_string(",
            1,
            "the host name",
        ),
        (
            "file/backup/keys.rs",
            "fs::read_to_string(",
            1,
            "an age identity file",
        ),
        ("tls/client.rs", "fs::read(", 1, "a CA certificate"),
        (
            "standby/peers.rs",
            "fs::read_to_string(",
            1,
            "the addresses of known boxes",
        ),
        (
            "tls/server.rs",
            "File::open(",
            1,
            "the server's certificate or key",
        ),
        (
            "tls/pair.rs",
            "OpenOptions::new(",
            1,
            "a new certificate or key file",
        ),
        ("cli/tls.rs", "fs::read(", 1, "a certificate to fingerprint"),
        (
            "cli/standby.rs",
            "fs::read(",
            1,
            "this box's own certificate",
        ),
        (
            "ops/adopt/mod.rs",
            "File::open(",
            1,
            "the old file's header, read before any connection opens it",
        ),
        ("config/mod.rs", "fs::read(", 1, "the TOML configuration"),
        (
            "config/remote.rs",
            "fs::read_to_string(",
            1,
            "/proc/sys/kernel/hostname",
        ),
        ("import.rs", "fs::read(", 1, "a CSV file of movements"),
        (
            "ops/health.rs",
            "fs::read_to_string(",
            1,
            "/proc/locks (who holds the write lock)",
        ),
        (
            "ops/health.rs",
            "fs::read(",
            1,
            "/proc/PID/cmdline of that process",
        ),
        (
            "file/backup/tidy.rs",
            "File::open(",
            1,
            "the backup directory itself, for its lock",
        ),
        (
            "replica/owner.rs",
            "fs::read_to_string(",
            2,
            "/etc/machine-id and the host name",
        ),
        (
            "replica/dir.rs",
            "File::open(",
            1,
            "replica markers and base.json (JSON, never SQLite)",
        ),
        (
            "replica/dir.rs",
            "OpenOptions::new(",
            1,
            "the replica directory's lock file",
        ),
        (
            "replica/history.rs",
            "fs::read(",
            1,
            "replica log segments (own format)",
        ),
        (
            "replica/history.rs",
            "fs::read_to_string(",
            1,
            "a base's checksum sidecar",
        ),
        (
            "replica/segment.rs",
            "OpenOptions::new(",
            1,
            "appending to a replica log segment",
        ),
        (
            "replica/segment.rs",
            "fs::read(",
            1,
            "replica log segments (own format)",
        ),
        (
            "replica/status.rs",
            "fs::read(",
            1,
            "replica log segments (own format)",
        ),
    ];
    const OPENERS: &[&str] = &[
        "File::open(",
        "File::create(",
        "OpenOptions::new(",
        "fs::read(",
        "fs::read_to_string(",
        "fs::copy(",
        "Connection::open(",
        "Connection::open_with_flags(",
    ];

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn every_file_open_in_src_is_guarded_or_listed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        let mut found = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            // Unit tests (at the end of a file) open scratch files freely.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let rel = f
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for pat in OPENERS {
                // `PendingFile::create(` is not `File::create(`: the match must start a name.
                let n = code
                    .match_indices(pat)
                    .filter(|(at, _)| {
                        !code[..*at]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_')
                    })
                    .count();
                if n > 0 {
                    found.push((rel.clone(), pat.to_string(), n));
                }
            }
        }
        found.sort();
        let mut allowed: Vec<(String, String, usize)> = ALLOWED_OPENS
            .iter()
            .map(|(f, p, n, _)| (f.to_string(), p.to_string(), *n))
            .collect();
        allowed.sort();
        assert_eq!(
            found, allowed,
            "a file open in src/ changed: database files, WALs, backups and scratch copies go through store::dbfile (open/create_new) and store::connection; anything else is listed in ALLOWED_OPENS with its reason"
        );
    }

    #[test]
    fn companions_map_to_their_database() {
        assert_eq!(main_of(Path::new("/a/x.db-wal")), PathBuf::from("/a/x.db"));
        assert_eq!(main_of(Path::new("/a/x.db-shm")), PathBuf::from("/a/x.db"));
        assert_eq!(main_of(Path::new("/a/x.db")), PathBuf::from("/a/x.db"));
        assert_eq!(main_of(Path::new("-wal")), PathBuf::from("-wal"));
    }
}
