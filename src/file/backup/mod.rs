//! `ora backup`: an online, consistent, compressed copy of the database taken in one step while
//! writers go on. One read transaction streams every page through `sqlite_dbpage` (the same
//! page copy as the backup API, without an intermediate file) into parallel gzip, then runs
//! quick_check on that same snapshot before the file is kept. The output is written under a
//! temporary name, fsynced, given a SHA-256 sidecar, renamed into place (sidecar first, so a
//! half-made backup never looks like one) and the directory fsynced; mode 0600. Then retention.
//! A stepwise backup would restart at every concurrent write and never finish under load.
//! One run at a time writes into a backup directory ([`tidy`]): a second waits for the first,
//! then takes the next free name; each run first removes what a run cut short left behind.

pub mod archive;
pub mod catalog;
pub mod compress;
pub mod drill;
pub mod forecast;
pub mod keys;
pub mod source;
mod tidy;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::file::check::{open_source, quick_check};
use crate::file::oplog;
use crate::file::progress::Progress;
use crate::fsutil::PendingFile;
use crate::store::connection::{self, Tuning};
use crate::store::StoreError;

pub const DEFAULT_KEEP_DAYS: u32 = 30;
pub const DEFAULT_KEEP_WEEKS: u32 = 8;
pub const DEFAULT_KEEP_MONTHS: u32 = 24;
/// libdeflate level: close to `gzip -6`'s size for a fraction of its CPU time (benches/RESULTS.md).
pub const DEFAULT_LEVEL: u32 = 2;

/// Where and how to back up.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub dir: PathBuf,
    /// The directory is the default one (created when missing) rather than one the user named.
    pub dir_is_default: bool,
    pub keep_days: u32,
    /// After `keep_days`, the newest backup of each week is kept this many weeks, and of
    /// each month this many months; the rest is removed.
    pub keep_weeks: u32,
    pub keep_months: u32,
    /// `ora archive` packs the kept backups older than `keep_days` into monthly tars.
    pub archive: bool,
    pub level: u32,
    /// Compression threads (0: one per core).
    pub threads: usize,
    pub tuning: Tuning,
    /// Encrypt backups to this age public key (`age1...`, checked when the config loads).
    pub encrypt_to: Option<String>,
}

impl BackupOptions {
    /// Defaults for a database: `<db dir>/backups`, 30 days, archive on, level 2.
    pub fn for_db(db: &Path) -> BackupOptions {
        BackupOptions {
            dir: crate::fsutil::parent_dir(db).join("backups"),
            dir_is_default: true,
            keep_days: DEFAULT_KEEP_DAYS,
            keep_weeks: DEFAULT_KEEP_WEEKS,
            keep_months: DEFAULT_KEEP_MONTHS,
            archive: true,
            level: DEFAULT_LEVEL,
            threads: 0,
            tuning: Tuning::default(),
            encrypt_to: None,
        }
    }

    /// The retention rules.
    pub fn keep(&self) -> catalog::Keep {
        catalog::Keep {
            days: self.keep_days,
            weeks: self.keep_weeks,
            months: self.keep_months,
        }
    }

    fn threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }
}

/// What a backup run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    pub file: PathBuf,
    pub sha256: String,
    pub database_bytes: u64,
    pub bytes: u64,
    pub check: String,
    pub seconds: f64,
    /// Expired backups removed by retention.
    pub removed: Vec<String>,
    /// Expired backups left for `ora archive`.
    pub left_for_archive: usize,
    /// What interrupted runs had left in the directory, removed before this one.
    pub leftovers_removed: Vec<String>,
}

/// How long a backup waits for another run writing into the same directory.
pub const DIR_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Makes sure the backup directory exists (creating the default one) and is a directory.
fn prepare_dir(o: &BackupOptions) -> Result<()> {
    let dir = &o.dir;
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        return Err(Error::usage(format!(
            "backup: {} is not a directory; pass --dir or set backup.dir",
            dir.display()
        )));
    }
    if !o.dir_is_default {
        return Err(Error::usage(format!(
            "backup: the backup directory {} does not exist; create it or pass another --dir",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::io(
            format!("backup: create the backup directory {}", dir.display()),
            e,
        )
    })
}

/// Takes a backup of `db` and applies retention; the run is recorded in ops_log.
pub fn run(db: &Path, o: &BackupOptions, progress: &Progress) -> Result<BackupReport> {
    let started = crate::model::now_utc();
    let result = take(db, o, progress);
    let details = match &result {
        Ok(r) => serde_json::json!({
            "file": r.file.display().to_string(), "bytes": r.bytes, "database_bytes": r.database_bytes,
            "sha256": r.sha256, "seconds": r.seconds, "removed": r.removed.len(),
            "integrity": r.check,
        }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    if db.is_file() {
        oplog::record(db, "backup", &started, result.is_ok(), &details);
    }
    result
}

fn take(db: &Path, o: &BackupOptions, progress: &Progress) -> Result<BackupReport> {
    let t0 = Instant::now();
    prepare_dir(o)?;
    let _lock = tidy::lock(&o.dir, DIR_WAIT, "backup")?;
    let leftovers_removed = tidy::remove_leftovers(&o.dir, db);
    let now = crate::clock::now();
    let recipient = o
        .encrypt_to
        .as_deref()
        .map(keys::recipient)
        .transpose()
        .map_err(|m| Error::config(format!("config: {m}")))?;
    let sealed = recipient.is_some();
    let dest = (0..)
        .map(|n| o.dir.join(catalog::file_name(db, now, n, sealed)))
        .find(|p| !p.exists() && !catalog::sidecar(p).exists())
        .unwrap_or_else(|| o.dir.join(catalog::file_name(db, now, 0, sealed)));
    let dest_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let write_err = |e: std::io::Error| {
        Error::io(
            format!("backup: write {} (nothing was kept)", dest.display()),
            e,
        )
    };
    let mut pending = PendingFile::create(&dest).map_err(write_err)?;
    let opts = SnapshotOptions {
        tuning: &o.tuning,
        level: o.level,
        threads: o.threads(),
        what: "backup",
        dir: &o.dir,
        parallel_check: true,
    };
    // The sidecar's checksum is of the file as written: the gzip stream, or its age
    // encryption.
    let (snap, sha256, bytes) = match &recipient {
        None => {
            let mut out = crate::fsutil::Paced::new(pending.file());
            let snap = snapshot_into(db, &opts, &mut out, progress, |_| Ok(()))?;
            let (sha, n) = (snap.compressed.sha256.clone(), snap.compressed.bytes_out);
            (snap, sha, n)
        }
        Some(to) => {
            let paced = crate::fsutil::Paced::new(pending.file());
            let mut out = keys::encrypt(to, keys::Hashing::new(paced)).map_err(write_err)?;
            let snap = snapshot_into(db, &opts, &mut out, progress, |_| Ok(()))?;
            let (sha, n) = out.finish().map_err(write_err)?.finish();
            (snap, sha, n)
        }
    };
    let side = catalog::sidecar(&dest);
    let mut sum = PendingFile::create(&side).map_err(write_err)?;
    sum.file()
        .write_all(catalog::sidecar_line(&sha256, &dest_name).as_bytes())
        .map_err(write_err)?;
    sum.commit().map_err(write_err)?;
    if let Err(e) = pending.commit() {
        let _ = std::fs::remove_file(&side);
        return Err(write_err(e));
    }
    let (removed, left_for_archive) = retention(db, o)?;
    Ok(BackupReport {
        file: dest,
        sha256,
        database_bytes: snap.database_bytes,
        bytes,
        check: snap.check,
        seconds: t0.elapsed().as_secs_f64(),
        removed,
        left_for_archive,
        leftovers_removed,
    })
}

/// How to take a compressed snapshot.
pub(crate) struct SnapshotOptions<'a> {
    pub tuning: &'a Tuning,
    pub level: u32,
    pub threads: usize,
    /// The operation, for messages ("backup", "replica base").
    pub what: &'a str,
    /// Where the output goes, for messages.
    pub dir: &'a Path,
    /// Run quick_check on a second connection in parallel with the copy (both snapshots are
    /// lined up by briefly taking the write lock); otherwise it runs after the copy on the
    /// same connection, and the write lock is never touched (a caller that may run while a
    /// writer holds the lock and waits for it, such as a strict replica's base).
    pub parallel_check: bool,
}

/// A snapshot written by [`snapshot_into`].
pub(crate) struct Snapshot<T> {
    pub compressed: compress::Compressed,
    /// quick_check's verdict on the same snapshot ("ok").
    pub check: String,
    pub database_bytes: u64,
    /// What `read` returned, read in the same snapshot.
    pub value: T,
}

/// Streams one consistent snapshot of `db` as gzip into `out` while quick_check runs on the
/// same snapshot, and `read` runs on it first (for facts that must match the copy exactly).
/// Fails, leaving `out` to the caller to discard, when the check fails or the copy is short.
///
/// Kept whole: the copy, the compression and the quick_check run on one read snapshot and two
/// threads inside one scope; splitting the scope would split the snapshot's lifetime from the
/// threads that use it.
pub(crate) fn snapshot_into<T, W: std::io::Write + Send>(
    db: &Path,
    o: &SnapshotOptions,
    out: &mut W,
    progress: &Progress,
    read: impl FnOnce(&rusqlite::Connection) -> Result<T>,
) -> Result<Snapshot<T>> {
    let what = o.what;
    let sql = |e| StoreError::sqlite(&format!("{what}: read the database"), e);
    let (conn, checker) = if o.parallel_check {
        let (a, b) = twin_snapshots(db, o.tuning)?;
        (a, Some(b))
    } else {
        let c = open_source(db, o.tuning, what)?;
        c.execute_batch("BEGIN").map_err(sql)?;
        c.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(sql)?;
        (c, None)
    };
    let value = read(&conn)?;
    let page_size = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .map_err(sql)?
        .unsigned_abs();
    let page_count = conn
        .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
        .map_err(sql)?
        .unsigned_abs();
    let total = page_size.saturating_mul(page_count);
    // quick_check runs on its own thread and connection, on the same snapshot as the copy.
    let (compressed, check) = std::thread::scope(|s| {
        let checking = checker.map(|checker| {
            s.spawn(move || {
                let verdict = quick_check(&checker);
                let _ = checker.execute_batch("COMMIT");
                verdict
            })
        });
        let compressed = compress::compress(out, o.level, o.threads, |send| {
            let mut st = conn
                .prepare("SELECT data FROM sqlite_dbpage")
                .map_err(sql)?;
            let mut rows = st.query([]).map_err(sql)?;
            let mut chunk = Vec::with_capacity(compress::CHUNK_BYTES);
            while let Some(row) = rows.next().map_err(sql)? {
                let page = row
                    .get_ref(0)
                    .map_err(sql)?
                    .as_blob()
                    .map_err(|e| sql(e.into()))?;
                chunk.extend_from_slice(page);
                progress.inc(page.len() as u64);
                if chunk.len() >= compress::CHUNK_BYTES {
                    send(std::mem::replace(
                        &mut chunk,
                        Vec::with_capacity(compress::CHUNK_BYTES),
                    ))?;
                }
            }
            if !chunk.is_empty() {
                send(chunk)?;
            }
            progress.set_message("checking");
            Ok::<(), Error>(())
        })
        .map_err(|e| match e.kind() {
            crate::error::Kind::Io => e.map_message(|m| {
                format!(
                    "{m} (nothing was kept; check free space and permissions of {})",
                    o.dir.display()
                )
            }),
            _ => e,
        });
        let check = match checking {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(Error::failed(format!(
                    "{what}: the checking thread panicked"
                )))
            }),
            None if compressed.is_ok() => quick_check(&conn),
            None => Ok(String::new()),
        };
        (compressed, check)
    });
    let (compressed, check) = (compressed?, check?);
    progress.finish();
    let _ = conn.execute_batch("COMMIT");
    if check != "ok" {
        return Err(Error::check_failed(format!(
            "{what}: the database fails quick_check ({check}); nothing was kept. Run `ora verify`, then see the runbook (docs/operations.md)"
        )));
    }
    if compressed.bytes_in != total {
        return Err(Error::failed(format!(
            "{what}: copied {} bytes but the database has {total}; nothing was kept",
            compressed.bytes_in
        )));
    }
    out.flush()
        .map_err(|e| Error::io(format!("{what}: write to {}", o.dir.display()), e))?;
    Ok(Snapshot {
        compressed,
        check,
        database_bytes: total,
        value,
    })
}

/// Two query-only connections reading the same snapshot: while a third connection holds the
/// write lock for a moment no commit can land, so read transactions begun then see the same
/// state. The copy streams from one while quick_check runs on the other.
fn twin_snapshots(
    db: &Path,
    tuning: &Tuning,
) -> Result<(rusqlite::Connection, rusqlite::Connection)> {
    let a = open_source(db, tuning, "backup")?;
    let b = open_source(db, tuning, "backup")?;
    let gate = connection::open_raw(db, false)?;
    let sql = |e| StoreError::sqlite("backup: start the snapshot", e);
    connection::wait_when_busy(
        &gate,
        std::time::Duration::from_millis(u64::from(tuning.busy_timeout_ms)),
    )
    .map_err(sql)?;
    crate::store::capture::line_up(&gate, std::time::Duration::from_secs(60), &[&a, &b])?;
    Ok((a, b))
}

/// Applies retention: the backups no rule keeps (daily for `keep_days`, then weekly and
/// monthly) are deleted; with archiving on, the kept ones older than the daily window wait for
/// `ora archive`. The newest good backup is never touched.
fn retention(db: &Path, o: &BackupOptions) -> Result<(Vec<String>, usize)> {
    let all = catalog::list(&o.dir, db)
        .map_err(|e| Error::io(format!("backup: list {}", o.dir.display()), e))?;
    let now = crate::clock::now();
    let expired = catalog::expired(&all, &o.keep(), now);
    let waiting = if o.archive {
        catalog::aged_keepers(&all, &o.keep(), now).len()
    } else {
        0
    };
    let mut removed = Vec::new();
    for b in expired {
        catalog::remove(&b)
            .map_err(|e| Error::io(format!("backup: remove expired {}", b.path.display()), e))?;
        removed.push(b.name);
    }
    Ok((removed, waiting))
}
