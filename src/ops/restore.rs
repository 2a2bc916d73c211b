//! `ora restore FILE`: replaces the database with a backup, atomically. The backup's checksum
//! is verified (when it has a sidecar), it is decompressed into a temporary file beside the
//! database, fsynced and checked (quick_check when the checksum proved the bytes identical to
//! a snapshot that passed quick_check when it was taken, full integrity_check otherwise). The
//! current database is checkpointed and kept as `<stem>_before_restore_<time>.db` (a hard
//! link, so the live name never disappears), then the new file is renamed over it and the
//! directory fsynced. A kill at any instant leaves the old or the new database at the path,
//! never a broken one; if the new file cannot be opened afterwards, the old one is put back.
//! Refuses while a server holds the database. The swap itself is [`install::replace`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::file::backup::catalog::{self, Checksum};
use crate::file::backup::source;
use crate::file::check::pragma_check;
use crate::file::install::{self, companion};
use crate::file::oplog;
use crate::file::progress::Progress;
use crate::fsutil;
use crate::store::lineage::Origin;
use crate::store::StoreError;
use crate::store::{connection, dbfile, schema};

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore even though a server holds the database's lock.
    pub force: bool,
    /// Tuning of the connections opened on the restored file.
    pub tuning: crate::store::Tuning,
    /// What opens an encrypted backup.
    pub identities: crate::file::backup::keys::Identities,
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    pub database: PathBuf,
    pub restored_from: PathBuf,
    pub checksum: Checksum,
    /// "quick_check" or "integrity_check", and its result.
    pub check: String,
    pub database_bytes: u64,
    /// Where the replaced database was kept.
    pub kept_previous: Option<PathBuf>,
    pub seconds: f64,
}

/// Restores `file` over `db`. A successful restore is recorded in the new database's
/// ops_log; a refused or failed one only in the log, so the database it leaves in place is
/// byte-for-byte what it was.
pub fn run(
    db: &Path,
    file: &Path,
    o: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreReport> {
    let started = crate::model::now_utc();
    let result = restore(db, file, o, progress);
    match &result {
        Ok(r) => {
            let details = serde_json::json!({
                "from": r.restored_from.display().to_string(), "check": r.check,
                "kept_previous": r.kept_previous.as_ref().map(|p| p.display().to_string()),
                "seconds": r.seconds,
            });
            oplog::record(db, "restore", &started, true, &details);
        }
        Err(e) => log::info!(
            "restore of {} from {} failed: {e}",
            db.display(),
            file.display()
        ),
    }
    result
}

/// Kept whole: refusals, extraction, checks and the install of one file restore, in the order that
/// keeps the database untouched until the checked copy is renamed over it.
fn restore(
    db: &Path,
    file: &Path,
    o: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreReport> {
    let t0 = Instant::now();
    let dir = fsutil::parent_dir(db);
    if !dir.is_dir() {
        return Err(Error::usage(format!(
            "restore: the directory {} of the database does not exist; check --db",
            dir.display()
        )));
    }
    if let Some(pid) = fsutil::server_holding(db) {
        if !o.force {
            return Err(Error::failed(format!(
                "restore: an ora server (pid {pid}) has {} open; stop it first (`systemctl stop ora`; scripts/restore.sh does this), nothing was changed",
                db.display()
            )));
        }
        log::warn!("restore: forced while server pid {pid} holds the database");
    }
    if !file.is_file() {
        return Err(Error::usage(format!(
            "restore: {} is not a file; pick a backup from `ora backups list`",
            file.display()
        )));
    }
    let checksum = catalog::check_sum(file)
        .map_err(|e| Error::io(format!("restore: read {}", file.display()), e))?;
    if let Checksum::Mismatch { .. } = checksum {
        return Err(Error::usage(format!(
            "restore: backup checksum mismatch for {}; the file is damaged, pick another with `ora backups list` (nothing was changed)",
            file.display()
        )));
    }
    remove_stale_temps(db);
    // Extract beside the database so the final rename stays on one filesystem.
    let mut pending = fsutil::PendingFile::create(&companion(db, ".restore")).map_err(|e| {
        Error::io(
            format!("restore: create a temporary file in {}", dir.display()),
            e,
        )
    })?;
    let bytes = source::extract(
        file,
        pending.file(),
        "restore",
        progress,
        o.identities.as_slice(),
    )?;
    match_owner(db, pending.file())?;
    pending
        .close()
        .map_err(|e| Error::io("restore: fsync the restored file", e))?;
    progress.finish();
    let tmp = pending.temp_path().to_path_buf();
    let check = check_candidate(&tmp, checksum == Checksum::Ok)?;

    let fate = crate::replica::setup::fate_in_place(
        db,
        &o.tuning,
        &tmp,
        Some(format!(
            "restored in place from the backup {}",
            file.display()
        )),
        Origin::copy("restore", &file.display().to_string()),
        None,
    );
    install::apply(&tmp, "restore", &fate)?;
    let kept = install::replace(db, &tmp, "restore")?;
    drop(pending);
    crate::remote::after_replace(db, &o.tuning);
    Ok(RestoreReport {
        database: db.to_path_buf(),
        restored_from: file.to_path_buf(),
        checksum,
        check,
        database_bytes: bytes,
        kept_previous: kept,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Gives the restored file the owner and mode of the database it replaces (a restore run by
/// root must not leave a file the service user cannot write), or of the directory when there
/// is no database yet.
fn match_owner(db: &Path, f: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (meta, mode) = match std::fs::metadata(db) {
        Ok(m) => {
            let mode = m.mode() & 0o777;
            (m, mode)
        }
        Err(_) => match std::fs::metadata(fsutil::parent_dir(db)) {
            Ok(m) => (m, 0o600),
            Err(_) => return Ok(()),
        },
    };
    let io = |e| Error::io("restore: set the owner and mode of the restored file", e);
    std::os::unix::fs::fchown(f, Some(meta.uid()), Some(meta.gid())).map_err(io)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)
}

/// Removes temporary files of earlier restores whose process is gone (killed mid-way).
fn remove_stale_temps(db: &Path) {
    let Some(name) = db.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.restore.tmp-");
    let Ok(entries) = std::fs::read_dir(fsutil::parent_dir(db)) else {
        return;
    };
    for e in entries.flatten() {
        let fname = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = fname
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Checks the extracted file before it may replace anything, and leaves no -wal/-shm of it.
fn check_candidate(tmp: &Path, checksum_ok: bool) -> Result<String> {
    let shown = tmp.display().to_string();
    let which = if checksum_ok {
        "quick_check"
    } else {
        "integrity_check"
    };
    let verdict = {
        let conn = connection::open_with_flags(tmp, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| StoreError::sqlite("restore: open the restored copy", e))?;
        schema::check_compatible(schema::identify(&conn, &shown)?, &shown)
            .map_err(|e| Error::usage(format!("restore: the backup is not usable: {e}")))?;
        pragma_check(&conn, which)?
    };
    for suffix in ["-wal", "-shm"] {
        dbfile::remove(&companion(tmp, suffix))
            .map_err(|e| Error::io("restore: remove the checked copy's WAL", e))?;
    }
    if verdict != "ok" {
        return Err(Error::usage(format!(
            "restore: the backup fails {which} ({verdict}); pick another with `ora backups list` (nothing was changed)"
        )));
    }
    Ok(format!("{which} ok"))
}

/// `ora restore --from-replica`: the database rebuilt at a point from the replica
/// (`replica::restore`); after an in-place restore the remote targets are told that the
/// history jumped.
pub fn from_replica(
    db: &Path,
    o: &crate::replica::restore::PitrOptions,
    progress: &Progress,
) -> Result<crate::replica::restore::PitrReport> {
    let r = crate::replica::restore::run(db, o, progress)?;
    if o.out.is_none() {
        crate::remote::after_replace(db, &crate::store::connection::Tuning::default());
    }
    Ok(r)
}
