//! The replica directory on disk: its marker, its lock, and its generations.
//!
//! ```text
//! DIR/ora-replica.json (+ .sha256)   marker: this database's id, site, format
//! DIR/.ora-replica.lock              flock held by whoever appends
//! DIR/gen-0000000001/base.db.gz      a full copy (gzip, + .sha256 sidecar)
//!                    (base.db.gz.age  the same, encrypted, + key.age: see `seal`)
//! DIR/gen-0000000001/base.json       what the copy holds: seq, chain hash, time (+ .sha256)
//! DIR/gen-0000000001/<seq>.seg       the commits after the base, in order (see `format`)
//! DIR/owners/, DIR/refused/           who continues the replica, who was refused (`owner`)
//! ```
//!
//! A generation is complete once its `base.json` exists (written last); an incomplete one is
//! ignored and removed. Every file is either self-checking (segments) or has a SHA-256 sidecar.
//! Never writes into a directory that does not carry this database's marker.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::file::backup::catalog;
use crate::fsutil::{self, PendingFile};

pub const MARKER: &str = "ora-replica.json";
const LOCK: &str = ".ora-replica.lock";
pub const FORMAT: u32 = 1;

/// The marker that makes a directory this database's replica.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Marker {
    pub format: u32,
    pub kind: String,
    pub database_id: String,
    pub site: String,
    pub database: String,
    pub created: String,
    /// The machine (`/etc/machine-id`) and host the first owner ran on (empty in a marker
    /// written before ownership was recorded: the path alone then names the owner).
    #[serde(default)]
    pub machine: String,
    #[serde(default)]
    pub host: String,
}

/// What a generation's base holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BaseMeta {
    pub format: u32,
    pub database_id: String,
    pub generation: u64,
    /// The last captured commit the copy contains.
    pub seq: i64,
    /// That commit's chain hash (hex): the first record after the base chains from it.
    pub hash: String,
    pub taken: String,
    pub taken_ms: i64,
    /// Why it was taken: "init", "daily", "restart", or what broke the chain.
    pub reason: String,
    /// Whether the history continues without a hole from the previous generation's records
    /// (false after a gap: the state between the two is unknown).
    pub continues: bool,
    pub bytes: u64,
    pub database_bytes: u64,
    pub sha256: String,
    /// The age public key the generation is encrypted to (see `seal`); none: not encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_to: Option<String>,
    /// The salt its key is derived with, and a short check of that key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_salt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_check: String,
}

/// A generation found on disk.
#[derive(Debug, Clone)]
pub struct Generation {
    pub number: u64,
    pub path: PathBuf,
    pub base: BaseMeta,
    /// Segments, oldest first: (first seq in the name, path).
    pub segments: Vec<(i64, PathBuf)>,
}

impl Generation {
    pub fn base_file(&self) -> PathBuf {
        self.path.join(base_name(self.base.encrypted_to.is_some()))
    }

    pub fn sealed(&self) -> bool {
        self.base.encrypted_to.is_some()
    }
}

/// The base copy's file name.
pub fn base_name(sealed: bool) -> &'static str {
    if sealed {
        "base.db.gz.age"
    } else {
        "base.db.gz"
    }
}

/// Why a directory cannot be used as this database's replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirProblem {
    /// The directory does not exist (a disk that is not mounted).
    Missing,
    /// It exists but holds no marker (an empty mount point).
    NoMarker,
    /// Its marker names another database.
    Foreign { database_id: String, site: String },
    /// The marker is damaged or unreadable.
    Unreadable(String),
    /// It is this lineage's replica, but another database (at another place) continues it:
    /// this one is a copy, a moved file, or the old owner after a take-over.
    NotOwner {
        owner: Box<super::owner::Owner>,
        here: super::owner::Place,
    },
}

impl DirProblem {
    pub fn message(&self, dir: &Path) -> String {
        let d = dir.display();
        match self {
            DirProblem::Missing => format!(
                "the replica directory {d} does not exist; is the replica disk plugged in and mounted?"
            ),
            DirProblem::NoMarker => format!(
                "{d} is not this database's replica (no {MARKER}): if the replica disk is not mounted this is its empty mount point; mount it, or prepare a new replica with `ora replica init {d}`"
            ),
            DirProblem::Foreign { database_id, site } => format!(
                "{d} holds the replica of another database (id {database_id}, site {site}); point [replica] dir at this database's replica or prepare an empty directory with `ora replica init`"
            ),
            DirProblem::Unreadable(why) => format!("the replica marker in {d} cannot be read: {why}"),
            DirProblem::NotOwner { owner, here } => {
                let taken_over = if owner.epoch > 1 {
                    format!(" since a take-over at {}", owner.since)
                } else {
                    String::new()
                };
                format!(
                    "{d} is the replica of {} (id {}){taken_over}; this database ({}) is not its owner (a copy, a moved file, or a box that was replaced), so it does not write there. Give it a replica of its own with `ora replica init NEWDIR`, or turn its replica off with `ora replica disable --yes`; only if the owner is gone for good and this database must continue its replica: `ora replica init {d} --take-over`",
                    owner.place.describe(),
                    owner.database_id,
                    here.describe()
                )
            }
        }
    }
}

/// A replica directory whose marker names our database.
#[derive(Debug, Clone)]
pub struct ReplicaDir {
    pub path: PathBuf,
    pub marker: Marker,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

/// Writes `bytes` to `path` with a `.sha256` sidecar, crash-safely (sidecar first).
pub fn write_checked(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use sha2::{Digest, Sha256};
    let sum = fsutil::hex(&Sha256::digest(bytes));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut side = PendingFile::create(&catalog::sidecar(path))?;
    side.file()
        .write_all(catalog::sidecar_line(&sum, &name).as_bytes())?;
    side.commit()?;
    let mut f = PendingFile::create(path)?;
    f.file().write_all(bytes)?;
    f.commit()?;
    Ok(())
}

/// Reads a file written by [`write_checked`], refusing it when the sidecar disagrees.
pub fn read_checked(path: &Path, limit: u64) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{} is larger than any such file", path.display()));
    }
    match catalog::check_sum(path) {
        Ok(catalog::Checksum::Ok) => Ok(bytes),
        Ok(catalog::Checksum::Missing) => {
            Err(format!("{} has no checksum sidecar", path.display()))
        }
        Ok(catalog::Checksum::Mismatch { .. }) => Err(format!(
            "{} fails its checksum (the file is damaged)",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Reads and checks the marker of `dir`.
fn read_marker(dir: &Path) -> std::result::Result<Marker, DirProblem> {
    if !dir.is_dir() {
        return Err(DirProblem::Missing);
    }
    let path = dir.join(MARKER);
    if !path.exists() {
        return Err(DirProblem::NoMarker);
    }
    let bytes = read_checked(&path, 64 * 1024).map_err(DirProblem::Unreadable)?;
    let m: Marker = serde_json::from_slice(&bytes)
        .map_err(|e| DirProblem::Unreadable(format!("not a replica marker ({e})")))?;
    if m.kind != "ora-replica" || m.format != FORMAT {
        return Err(DirProblem::Unreadable(format!(
            "format {} of kind {:?} is not one this ora reads",
            m.format, m.kind
        )));
    }
    Ok(m)
}

impl ReplicaDir {
    /// Opens `dir` as the replica that the database `database_id` at `here` continues, or
    /// says why it cannot be (not there, another lineage's, or another place owns it).
    pub fn open(
        dir: &Path,
        database_id: &str,
        here: &super::owner::Place,
    ) -> std::result::Result<ReplicaDir, DirProblem> {
        let rd = ReplicaDir::open_any(dir)?;
        super::owner::check(&rd, database_id, here)?;
        Ok(rd)
    }

    /// Opens `dir` whatever database it belongs to (restoring on a new machine).
    pub fn open_any(dir: &Path) -> std::result::Result<ReplicaDir, DirProblem> {
        let marker = read_marker(dir)?;
        Ok(ReplicaDir {
            path: dir.to_path_buf(),
            marker,
        })
    }

    /// Makes an empty directory the replica of `database_id` (writes the marker). A directory
    /// that is already this database's replica, owned by the database at the marker's place,
    /// is accepted as it is; one that another place owns is refused.
    pub fn init(dir: &Path, marker: Marker) -> Result<ReplicaDir> {
        match read_marker(dir) {
            Ok(m) if m.database_id == marker.database_id => {
                let rd = ReplicaDir {
                    path: dir.to_path_buf(),
                    marker: m,
                };
                let here = super::owner::Place {
                    machine: marker.machine.clone(),
                    host: marker.host.clone(),
                    database: marker.database.clone(),
                };
                super::owner::check(&rd, &marker.database_id, &here)
                    .map_err(|p| Error::usage(format!("replica init: {}", p.message(dir))))?;
                return Ok(rd);
            }
            Ok(m) => {
                return Err(Error::usage(
                    DirProblem::Foreign {
                        database_id: m.database_id,
                        site: m.site,
                    }
                    .message(dir),
                ))
            }
            Err(DirProblem::Missing) => {
                return Err(Error::usage(format!(
                    "replica init: {} does not exist; mount the replica disk and create the directory first",
                    dir.display()
                )))
            }
            Err(DirProblem::NoMarker) => {}
            Err(p) => return Err(Error::usage(p.message(dir))),
        }
        let entries =
            std::fs::read_dir(dir).map_err(io(format!("replica init: list {}", dir.display())))?;
        let others: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lost+found")
            .collect();
        if !others.is_empty() {
            return Err(Error::usage(format!(
                "replica init: {} is not empty ({} and {} more); give ora an empty directory of its own on the replica disk",
                dir.display(),
                others[0],
                others.len() - 1
            )));
        }
        let bytes = serde_json::to_vec_pretty(&marker)
            .map_err(|e| Error::failed(format!("replica init: encode the marker: {e}")))?;
        write_checked(&dir.join(MARKER), &bytes).map_err(io(format!(
            "replica init: write the marker into {}",
            dir.display()
        )))?;
        Ok(ReplicaDir {
            path: dir.to_path_buf(),
            marker,
        })
    }

    /// Takes the directory's append lock (blocking while another process appends).
    pub fn lock(&self) -> std::io::Result<DirLock> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path.join(LOCK))?;
        // SAFETY: flock on a descriptor we own; released when it closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(DirLock { _file: file })
    }

    pub fn generation_path(&self, number: u64) -> PathBuf {
        self.path.join(format!("gen-{number:010}"))
    }

    /// Every complete generation, oldest first. Damaged `base.json` files are reported in the
    /// second list and their generation left out.
    pub fn generations(&self) -> std::io::Result<(Vec<Generation>, Vec<String>)> {
        let mut gens = Vec::new();
        let mut problems = Vec::new();
        for e in std::fs::read_dir(&self.path)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(number) = name
                .strip_prefix("gen-")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let path = e.path();
            let meta_path = path.join("base.json");
            if !meta_path.exists() {
                continue;
            }
            let meta = read_checked(&meta_path, 64 * 1024).and_then(|b| {
                serde_json::from_slice::<BaseMeta>(&b)
                    .map_err(|e| format!("{}: {e}", meta_path.display()))
            });
            let base = match meta {
                Ok(m) if m.generation == number && m.database_id == self.marker.database_id => m,
                Ok(_) => {
                    problems.push(format!(
                        "{} does not belong to this generation or database",
                        meta_path.display()
                    ));
                    continue;
                }
                Err(why) => {
                    problems.push(why);
                    continue;
                }
            };
            let mut segments = Vec::new();
            for s in std::fs::read_dir(&path)?.flatten() {
                let sname = s.file_name().to_string_lossy().into_owned();
                if let Some(first) = sname
                    .strip_suffix(".seg")
                    .and_then(|n| n.parse::<i64>().ok())
                {
                    segments.push((first, s.path()));
                }
            }
            segments.sort();
            gens.push(Generation {
                number,
                path,
                base,
                segments,
            });
        }
        gens.sort_by_key(|g| g.number);
        Ok((gens, problems))
    }

    /// The highest generation number on disk, complete or not.
    pub fn last_generation_number(&self) -> std::io::Result<u64> {
        let mut max = 0;
        for e in std::fs::read_dir(&self.path)?.flatten() {
            if let Some(n) = e
                .file_name()
                .to_string_lossy()
                .strip_prefix("gen-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                max = max.max(n);
            }
        }
        Ok(max)
    }

    /// Bytes the replica takes on disk.
    pub fn size(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.path)
    }
}

/// The replica's append lock; released on drop.
pub struct DirLock {
    _file: std::fs::File,
}

/// The segment file name for records starting at `first_seq`.
pub fn segment_name(first_seq: i64) -> String {
    format!("{first_seq:020}.seg")
}
