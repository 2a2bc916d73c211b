//! `ora archive`: removes the backups no retention rule keeps, then packs the kept ones older
//! than the daily window (the newest of each week and month, [`catalog::Keep`]) into one tar
//! per month (`archive/<stem>-backups-YYYY-MM.tar` in the backup directory), fsyncs it, and
//! only then removes the packed files. The members are already gzip-compressed, so the tar is
//! not compressed again (that would cost minutes and save nothing). The newest good backup is
//! never archived.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::catalog::{self, BackupFile};
use crate::error::{Error, Result};
use crate::fsutil::PendingFile;

/// What an archive run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArchiveReport {
    /// Archives written (one per month of the packed backups).
    pub archives: Vec<PathBuf>,
    /// Backups packed and removed.
    pub packed: Vec<String>,
    /// Backups no retention rule keeps, removed.
    pub removed: Vec<String>,
}

/// Packs the expired backups of `db` found in `dir`; the run is recorded in ops_log.
pub fn run(db: &Path, dir: &Path, keep: catalog::Keep) -> Result<ArchiveReport> {
    let started = crate::model::now_utc();
    let result = pack(db, dir, keep);
    let details = match &result {
        Ok(r) => {
            serde_json::json!({ "archives": r.archives, "packed": r.packed.len(), "removed": r.removed.len() })
        }
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    if db.is_file() {
        crate::file::oplog::record(db, "archive", &started, result.is_ok(), &details);
    }
    result
}

/// Removes the backups no retention rule keeps; their names.
fn remove_expired(
    all: &[BackupFile],
    keep: &catalog::Keep,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for b in catalog::expired(all, keep, now) {
        catalog::remove(&b)
            .map_err(|e| Error::io(format!("archive: remove expired {}", b.path.display()), e))?;
        removed.push(b.name);
    }
    Ok(removed)
}

fn pack(db: &Path, dir: &Path, keep: catalog::Keep) -> Result<ArchiveReport> {
    // Not while a backup (or another archive) writes into the directory.
    let _lock = if dir.is_dir() {
        Some(super::tidy::lock(dir, super::DIR_WAIT, "archive")?)
    } else {
        None
    };
    let all = catalog::list(dir, db)
        .map_err(|e| Error::io(format!("archive: list {}", dir.display()), e))?;
    let now = crate::clock::now();
    let removed = remove_expired(&all, &keep, now)?;
    let mut by_month: BTreeMap<String, Vec<BackupFile>> = BTreeMap::new();
    for b in catalog::aged_keepers(&all, &keep, now) {
        by_month
            .entry(b.taken.format("%Y-%m").to_string())
            .or_default()
            .push(b);
    }
    let out_dir = dir.join("archive");
    if !by_month.is_empty() {
        std::fs::create_dir_all(&out_dir)
            .map_err(|e| Error::io(format!("archive: create {}", out_dir.display()), e))?;
    }
    let mut report = ArchiveReport {
        archives: Vec::new(),
        packed: Vec::new(),
        removed,
    };
    for (month, backups) in by_month {
        let dest = out_dir.join(format!("{}-backups-{month}.tar", catalog::stem(db)));
        let dest = (1..)
            .map(|n| {
                if n == 1 {
                    dest.clone()
                } else {
                    dest.with_extension(format!("{n}.tar"))
                }
            })
            .find(|p| !p.exists())
            .unwrap_or(dest);
        let io = |e: std::io::Error| {
            Error::io(
                format!("archive: write {} (nothing was removed)", dest.display()),
                e,
            )
        };
        let mut pending = PendingFile::create(&dest).map_err(io)?;
        {
            let mut tar = tar::Builder::new(pending.file());
            for b in &backups {
                tar.append_path_with_name(&b.path, &b.name).map_err(io)?;
                let side = catalog::sidecar(&b.path);
                if side.is_file() {
                    tar.append_path_with_name(&side, format!("{}.sha256", b.name))
                        .map_err(io)?;
                }
            }
            tar.finish().map_err(io)?;
        }
        let written = pending.commit().map_err(io)?;
        for b in &backups {
            catalog::remove(b).map_err(|e| {
                Error::io(
                    format!(
                        "archive: remove {} (it is in {})",
                        b.path.display(),
                        written.display()
                    ),
                    e,
                )
            })?;
            report.packed.push(b.name.clone());
        }
        report.archives.push(written);
    }
    Ok(report)
}
