//! Who owns a replica directory. A replica belongs to one database lineage (the marker's id)
//! and, at any time, to one place that continues it: a database file at one path on one
//! machine. The owner at the start is the database `ora replica init` ran for; an explicit
//! take-over (`ora replica init DIR --take-over`) appends the next owner, so the directory
//! keeps the history of hand-overs:
//!
//! ```text
//! DIR/owners/0000000002.json (+ .sha256)   epoch 2: database id, machine, host, path, why
//! DIR/refused/<place>.json (+ .sha256)      a database that tried to ship here and was refused
//! ```
//!
//! A database at another place (a copy made with `cp`, a file moved, another box) is refused
//! before it writes a byte of history; it leaves one small note under `refused/` so that the
//! owner's health can say someone tried. Never changes a generation.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::dir::{self, DirProblem, ReplicaDir};

const OWNERS: &str = "owners";
const REFUSED: &str = "refused";
/// A refused database notes itself again at most this often.
const NOTE_EVERY_MS: i64 = 60_000;
/// Notes older than this are removed by the owner's housekeeping.
const NOTE_KEEP_MS: i64 = 7 * 86_400_000;
/// Size limit of an owner file or a note.
const FILE_LIMIT: u64 = 64 * 1024;
/// At most this many owner files or notes are read.
const MAX_FILES: usize = 1000;

/// Where a database lives: a machine (its `/etc/machine-id`), the host name (for people) and
/// the database file's absolute path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    #[serde(default)]
    pub machine: String,
    #[serde(default)]
    pub host: String,
    pub database: String,
}

impl Place {
    /// The place of the database file `db` on this machine.
    pub fn of(db: &Path) -> Place {
        Place {
            machine: machine_id(),
            host: host_name(),
            database: absolute(db),
        }
    }

    /// Whether `self` and `other` are the same file on the same machine. An unknown machine id
    /// (an older marker, a machine without one) matches any.
    pub fn same(&self, other: &Place) -> bool {
        self.database == other.database
            && (self.machine.is_empty()
                || other.machine.is_empty()
                || self.machine == other.machine)
    }

    /// "the database at PATH on HOST", for messages.
    pub fn describe(&self) -> String {
        if self.host.is_empty() {
            format!("the database at {}", self.database)
        } else {
            format!("the database at {} on {}", self.database, self.host)
        }
    }
}

/// The absolute path of `db` (its directory resolved; the file need not exist yet).
pub fn absolute(db: &Path) -> String {
    if let Ok(p) = std::fs::canonicalize(db) {
        return p.display().to_string();
    }
    let dir = crate::fsutil::parent_dir(db);
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    match db.file_name() {
        Some(n) => dir.join(n).display().to_string(),
        None => dir.display().to_string(),
    }
}

fn machine_id() -> String {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty() && s.len() <= 128)
        .unwrap_or_default()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().chars().take(255).collect())
        .unwrap_or_default()
}

/// One owner of the replica, from `epoch` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub epoch: u64,
    /// The lineage's id (the marker's; a take-over keeps it).
    pub database_id: String,
    #[serde(flatten)]
    pub place: Place,
    /// Since when (RFC 3339, UTC).
    pub since: String,
    #[serde(default)]
    pub since_ms: i64,
    /// Why: "replica init", or the take-over and whom it replaced.
    #[serde(default)]
    pub reason: String,
}

/// The first owner, as the marker names it.
fn from_marker(m: &dir::Marker) -> Owner {
    Owner {
        epoch: 1,
        database_id: m.database_id.clone(),
        place: Place {
            machine: m.machine.clone(),
            host: m.host.clone(),
            database: m.database.clone(),
        },
        since: m.created.clone(),
        since_ms: 0,
        reason: "replica init".into(),
    }
}

/// Lists `sub`'s `.json` files (at most [`MAX_FILES`]), as (name stem, path).
fn json_files(dir: &Path, sub: &str) -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
    let path = dir.join(sub);
    let rd = match std::fs::read_dir(&path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".json") {
            if !stem.starts_with('.') {
                out.push((stem.to_string(), e.path()));
            }
        }
        if out.len() >= MAX_FILES {
            break;
        }
    }
    Ok(out)
}

/// The owner now: the newest hand-over under `owners/`, else the database the marker names.
pub fn current(rd: &ReplicaDir) -> Result<Owner, DirProblem> {
    let files = json_files(&rd.path, OWNERS)
        .map_err(|e| DirProblem::Unreadable(format!("list its owners: {e}")))?;
    let newest = files
        .iter()
        .filter_map(|(stem, p)| stem.parse::<u64>().ok().map(|n| (n, p)))
        .max_by_key(|(n, _)| *n);
    let Some((epoch, path)) = newest else {
        return Ok(from_marker(&rd.marker));
    };
    let bytes = dir::read_checked(path, FILE_LIMIT).map_err(DirProblem::Unreadable)?;
    let o: Owner = serde_json::from_slice(&bytes).map_err(|e| {
        DirProblem::Unreadable(format!("{} is not an owner record ({e})", path.display()))
    })?;
    if o.epoch != epoch || o.database_id != rd.marker.database_id {
        return Err(DirProblem::Unreadable(format!(
            "{} does not belong to this replica",
            path.display()
        )));
    }
    Ok(o)
}

/// Checks that the database `database_id` at `here` may write to `rd`: the marker names its
/// lineage and `here` is the current owner's place.
pub fn check(rd: &ReplicaDir, database_id: &str, here: &Place) -> Result<Owner, DirProblem> {
    if rd.marker.database_id != database_id {
        return Err(DirProblem::Foreign {
            database_id: rd.marker.database_id.clone(),
            site: rd.marker.site.clone(),
        });
    }
    let owner = current(rd)?;
    if !owner.place.same(here) {
        return Err(DirProblem::NotOwner {
            owner: Box::new(owner),
            here: here.clone(),
        });
    }
    Ok(owner)
}

/// Records `next` as the owner from now on (its epoch one above the current). The caller holds
/// the directory's append lock.
pub fn hand_over(rd: &ReplicaDir, next: &Owner) -> std::io::Result<()> {
    let dir = rd.path.join(OWNERS);
    std::fs::create_dir_all(&dir)?;
    let bytes = serde_json::to_vec_pretty(next).map_err(std::io::Error::other)?;
    dir::write_checked(&dir.join(format!("{:010}.json", next.epoch)), &bytes)?;
    crate::fsutil::sync_dir(&rd.path)
}

/// A database that tried to write to a replica that is not its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    #[serde(flatten)]
    pub place: Place,
    pub database_id: String,
    pub at: String,
    pub at_ms: i64,
    /// Why it was refused, in the refused side's words.
    pub why: String,
}

/// Leaves a note that `here` was refused (at most once a minute per place). Best effort: a
/// replica that cannot be written to is left alone.
pub fn note_refusal(replica: &Path, database_id: &str, here: &Place, why: &str) {
    use sha2::{Digest, Sha256};
    if !replica.join(dir::MARKER).is_file() {
        return;
    }
    let key = crate::fsutil::hex(&Sha256::digest(
        format!("{}\n{}", here.machine, here.database).as_bytes(),
    ));
    let dir = replica.join(REFUSED);
    let path = dir.join(format!("{}.json", &key[..16]));
    let now = crate::store::capture::now_ms();
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| (age.as_millis() as i64) < NOTE_EVERY_MS);
    if fresh {
        return;
    }
    let note = Refusal {
        place: here.clone(),
        database_id: database_id.to_string(),
        at: crate::model::now_utc(),
        at_ms: now,
        why: why.chars().take(2000).collect(),
    };
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let bytes = serde_json::to_vec_pretty(&note).map_err(std::io::Error::other)?;
        dir::write_checked(&path, &bytes)
    });
    if let Err(e) = written {
        log::debug!("replica: could not leave a note in {}: {e}", dir.display());
    }
}

/// The refusal notes in `rd`, newest first (unreadable ones left out).
pub fn refusals(rd: &ReplicaDir) -> Vec<Refusal> {
    let mut out: Vec<Refusal> = json_files(&rd.path, REFUSED)
        .unwrap_or_default()
        .iter()
        .filter_map(|(_, p)| dir::read_checked(p, FILE_LIMIT).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by_key(|r: &Refusal| std::cmp::Reverse(r.at_ms));
    out
}

/// Removes refusal notes older than [`NOTE_KEEP_MS`]. The caller holds the append lock.
pub fn prune_refusals(rd: &ReplicaDir, now_ms: i64) {
    for (_, p) in json_files(&rd.path, REFUSED).unwrap_or_default() {
        let old = dir::read_checked(&p, FILE_LIMIT)
            .ok()
            .and_then(|b| serde_json::from_slice::<Refusal>(&b).ok())
            .is_none_or(|r| now_ms - r.at_ms > NOTE_KEEP_MS);
        if old {
            let _ = std::fs::remove_file(crate::file::backup::catalog::sidecar(&p));
            let _ = std::fs::remove_file(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(machine: &str, db: &str) -> Place {
        Place {
            machine: machine.into(),
            host: "h".into(),
            database: db.into(),
        }
    }

    #[test]
    fn a_place_is_a_path_on_a_machine() {
        assert!(place("m1", "/a/ora.db").same(&place("m1", "/a/ora.db")));
        assert!(!place("m1", "/a/ora.db").same(&place("m1", "/a/copy.db")));
        assert!(!place("m1", "/a/ora.db").same(&place("m2", "/a/ora.db")));
        // An older marker knows no machine: the path decides.
        assert!(place("", "/a/ora.db").same(&place("m2", "/a/ora.db")));
    }

    #[test]
    fn the_path_of_a_file_not_made_yet_is_absolute() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("new.db");
        let a = absolute(&p);
        assert!(a.starts_with('/') && a.ends_with("/new.db"), "{a}");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(absolute(&p), a);
    }

    fn replica(d: &Path) -> ReplicaDir {
        ReplicaDir::init(
            d,
            dir::Marker {
                format: dir::FORMAT,
                kind: "ora-replica".into(),
                database_id: "lineage".into(),
                site: "s".into(),
                database: "/a/ora.db".into(),
                created: "t".into(),
                machine: "m1".into(),
                host: "h".into(),
            },
        )
        .unwrap()
    }

    // The marker names the first owner; a hand-over names the next; others are refused.
    #[test]
    fn ownership_follows_the_hand_overs() {
        let d = tempfile::tempdir().unwrap();
        let rd = replica(d.path());
        assert_eq!(current(&rd).unwrap().epoch, 1);
        assert!(check(&rd, "lineage", &place("m1", "/a/ora.db")).is_ok());
        assert!(matches!(
            check(&rd, "lineage", &place("m1", "/a/copy.db")),
            Err(DirProblem::NotOwner { .. })
        ));
        assert!(matches!(
            check(&rd, "other", &place("m1", "/a/ora.db")),
            Err(DirProblem::Foreign { .. })
        ));
        let next = Owner {
            epoch: 2,
            database_id: "lineage".into(),
            place: place("m2", "/b/ora.db"),
            since: "t2".into(),
            since_ms: 2,
            reason: "take-over".into(),
        };
        hand_over(&rd, &next).unwrap();
        assert_eq!(current(&rd).unwrap(), next);
        assert!(check(&rd, "lineage", &place("m2", "/b/ora.db")).is_ok());
        let old = check(&rd, "lineage", &place("m1", "/a/ora.db")).unwrap_err();
        assert!(old.message(d.path()).contains("/b/ora.db"), "{old:?}");
    }

    // A damaged owner file refuses everyone rather than guessing.
    #[test]
    fn a_damaged_owner_file_refuses_everyone() {
        let d = tempfile::tempdir().unwrap();
        let rd = replica(d.path());
        std::fs::create_dir_all(d.path().join(OWNERS)).unwrap();
        dir::write_checked(&d.path().join(OWNERS).join("0000000002.json"), b"{}").unwrap();
        assert!(matches!(current(&rd), Err(DirProblem::Unreadable(_))));
        std::fs::write(d.path().join(OWNERS).join("0000000002.json"), b"junk").unwrap();
        assert!(matches!(
            check(&rd, "lineage", &place("m1", "/a/ora.db")),
            Err(DirProblem::Unreadable(_))
        ));
    }

    #[test]
    fn refusals_are_noted_once_a_minute_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let rd = replica(d.path());
        note_refusal(
            d.path(),
            "lineage",
            &place("m1", "/a/copy.db"),
            "not the owner",
        );
        let first = refusals(&rd);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].place.database, "/a/copy.db");
        note_refusal(d.path(), "lineage", &place("m1", "/a/copy.db"), "again");
        assert_eq!(refusals(&rd)[0].why, "not the owner");
        prune_refusals(&rd, first[0].at_ms + NOTE_KEEP_MS + 1);
        assert!(refusals(&rd).is_empty());
    }
}
