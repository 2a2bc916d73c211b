//! The base a standby starts from, on the primary: one checked, compressed snapshot of the
//! database at a time, written beside it under a hidden name, with the position (record,
//! hash, epoch, database id) read in the very snapshot that was copied. A standby downloads
//! it in pieces of at most [`CHUNK`] bytes (a broken download resumes where it stopped) and
//! checks its sha256. A newer base, or an hour without a download, removes the file. Reads
//! the database only through SQLite's snapshot; never writes it.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::file::backup;
use crate::file::progress::Progress;
use crate::fsutil::{self, PendingFile};
use crate::store::capture;
use crate::store::connection::Tuning;

/// The largest piece of a base served in one answer.
pub const CHUNK: u64 = 8 << 20;
/// A base nobody downloaded for this long is removed.
const UNUSED: Duration = Duration::from_secs(3_600);

/// What a standby learns about a base before it downloads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseInfo {
    pub id: String,
    pub bytes: u64,
    pub sha256: String,
    pub seq: i64,
    pub hash: String,
    pub epoch: i64,
    pub database_id: String,
}

struct Current {
    info: BaseInfo,
    path: PathBuf,
    used: Instant,
}

/// The primary's current base, if any.
#[derive(Default)]
pub struct Bases {
    current: Mutex<Option<Current>>,
}

/// A hidden file beside the database: `.NAME.{suffix}` (a base here, or one arriving).
pub(super) fn beside(db: &Path, suffix: &str) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ora.db".into());
    db.with_file_name(format!(".{name}.{suffix}"))
}

impl Bases {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a new base of `db` (replacing the previous one) and describes it.
    pub fn make(&self, db: &Path, tuning: &Tuning) -> Result<BaseInfo> {
        let id = fsutil::hex(&random16()?);
        let path = beside(db, &format!("standby-base-{id}.gz"));
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut pending = PendingFile::create(&path)
            .map_err(|e| Error::io(format!("standby base: create {}", path.display()), e))?;
        let opts = backup::SnapshotOptions {
            tuning,
            level: 1,
            threads: 2,
            what: "standby base",
            dir,
            parallel_check: false,
        };
        let read = |conn: &rusqlite::Connection| {
            capture::state(conn)?.ok_or_else(|| {
                Error::usage("standby base: the database has no replica state; run `ora init`")
            })
        };
        let mut out = crate::fsutil::Paced::new(pending.file());
        let snap = backup::snapshot_into(db, &opts, &mut out, &Progress::hidden(), read)?;
        pending
            .commit()
            .map_err(|e| Error::io(format!("standby base: write {}", path.display()), e))?;
        let st = snap.value;
        let info = BaseInfo {
            id,
            bytes: snap.compressed.bytes_out,
            sha256: snap.compressed.sha256,
            seq: st.seq,
            hash: fsutil::hex(&st.last_hash),
            epoch: st.epoch,
            database_id: st.database_id,
        };
        let old = self.lock().replace(Current {
            info: info.clone(),
            path,
            used: Instant::now(),
        });
        if let Some(old) = old {
            let _ = std::fs::remove_file(&old.path);
        }
        log::info!(
            "standby: base {} taken at record {} ({} bytes)",
            info.id,
            info.seq,
            info.bytes
        );
        Ok(info)
    }

    /// Up to [`CHUNK`] bytes of base `id` from `offset`; `None` when there is no such base.
    pub fn chunk(&self, id: &str, offset: u64) -> Result<Option<Vec<u8>>> {
        let mut g = self.lock();
        let Some(cur) = g.as_mut().filter(|c| c.info.id == id) else {
            return Ok(None);
        };
        cur.used = Instant::now();
        if offset > cur.info.bytes {
            return Err(Error::usage(format!(
                "standby base: offset {offset} is past the end of the base ({} bytes)",
                cur.info.bytes
            )));
        }
        let len = CHUNK.min(cur.info.bytes - offset);
        let io = |e| Error::io(format!("standby base: read {}", cur.path.display()), e);
        let raw = crate::store::dbfile::open(&cur.path).map_err(io)?;
        let mut f = raw.file();
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.take(len).read_to_end(&mut out).map_err(io)?;
        Ok(Some(out))
    }

    /// Removes base `id` (the standby has it), or the current base when nobody used it for
    /// an hour (`id` `None`).
    pub fn drop_base(&self, id: Option<&str>) {
        let mut g = self.lock();
        let gone = match (g.as_ref(), id) {
            (Some(c), Some(id)) => c.info.id == id,
            (Some(c), None) => c.used.elapsed() > UNUSED,
            (None, _) => false,
        };
        if gone {
            if let Some(c) = g.take() {
                let _ = std::fs::remove_file(&c.path);
            }
        }
    }
}

impl Drop for Bases {
    fn drop(&mut self) {
        if let Some(c) = self.lock().take() {
            let _ = std::fs::remove_file(&c.path);
        }
    }
}

fn random16() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b)
        .map_err(|e| Error::failed(format!("standby base: no randomness for an id: {e}")))?;
    Ok(b)
}
