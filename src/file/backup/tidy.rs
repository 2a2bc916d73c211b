//! One writer at a time in a backup directory, and what interrupted runs left behind. `ora
//! backup` and `ora archive` hold the directory's lock (an advisory flock on the directory
//! itself, so no lock file is left in it; it dies with its process) while they pick a name and
//! write, so two runs started in the same second get two names; whoever holds it removes the
//! leftovers of runs that were cut
//! short: hidden temporary files (`.NAME.tmp-PID`), checksum sidecars whose backup never got
//! its name, and the scratch directories of restore drills whose process is gone. Never
//! removes a finished backup or its sidecar.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

use super::catalog;

/// The prefix of a drill's scratch directory: `.ora-drill-PID-XXXXXX`.
pub const DRILL_PREFIX: &str = ".ora-drill-";

/// The directory's lock; released when dropped.
pub struct DirLock {
    _file: std::fs::File,
}

/// Takes `dir`'s lock, waiting up to `wait` for another run to finish; `what` names the
/// operation in the refusal.
pub fn lock(dir: &Path, wait: Duration, what: &str) -> Result<DirLock> {
    let file = std::fs::File::open(dir)
        .map_err(|e| Error::io(format!("{what}: open {}", dir.display()), e))?;
    let deadline = Instant::now() + wait;
    loop {
        // SAFETY: flock on a descriptor we own; the kernel releases it when it closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::WouldBlock {
            return Err(Error::io(format!("{what}: lock {}", dir.display()), err));
        }
        if Instant::now() >= deadline {
            return Err(Error::failed(format!(
                "{what}: another `ora backup` or `ora archive` is still writing into {} after {} s; let it finish and run this again (nothing was written)",
                dir.display(),
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(DirLock { _file: file })
}

/// Whether process `pid` is alive (a process of another user counts as alive).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// What a leftover is, from its name: a temporary file, a drill's scratch directory (with the
/// pid that made it), or a sidecar; `None` for anything else.
#[derive(Debug, PartialEq, Eq)]
enum Leftover {
    Temp,
    Drill(i32),
    Sidecar(String),
}

fn classify(stem: &str, name: &str) -> Option<Leftover> {
    if let Some(rest) = name.strip_prefix(DRILL_PREFIX) {
        let pid = rest.split('-').next()?.parse().ok()?;
        return Some(Leftover::Drill(pid));
    }
    if let Some(hidden) = name.strip_prefix('.') {
        let (inner, pid) = hidden.rsplit_once(".tmp-")?;
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let backup = inner.strip_suffix(".sha256").unwrap_or(inner);
        let ours = catalog::parse_name(stem, backup).is_some()
            || (backup.starts_with(&format!("{stem}-backups-")) && backup.ends_with(".tar"));
        return ours.then_some(Leftover::Temp);
    }
    let backup = name.strip_suffix(".sha256")?;
    catalog::parse_name(stem, backup)?;
    Some(Leftover::Sidecar(backup.to_string()))
}

/// Removes what interrupted runs left in `dir` and its `archive/` (the caller holds the lock);
/// returns the names removed.
pub fn remove_leftovers(dir: &Path, db: &Path) -> Vec<String> {
    let mut removed = remove_in(dir, db);
    removed.extend(remove_in(&dir.join("archive"), db));
    removed
}

fn remove_in(dir: &Path, db: &Path) -> Vec<String> {
    let stem = catalog::stem(db);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let gone = match classify(&stem, &name) {
            Some(Leftover::Temp) => std::fs::remove_file(&path).is_ok(),
            Some(Leftover::Drill(pid)) if !alive(pid) => std::fs::remove_dir_all(&path).is_ok(),
            Some(Leftover::Sidecar(backup)) if !dir.join(&backup).exists() => {
                std::fs::remove_file(&path).is_ok()
            }
            _ => false,
        };
        if gone {
            log::warn!(
                "backup: removed {} in {}, left by a run that was cut short",
                name,
                dir.display()
            );
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_told_by_their_names() {
        let s = "ora";
        assert_eq!(
            classify(s, ".ora-20261206T051059Z.db.gz.tmp-4242"),
            Some(Leftover::Temp)
        );
        assert_eq!(
            classify(s, ".ora-20261206T051059Z-1.db.gz.age.sha256.tmp-7"),
            Some(Leftover::Temp)
        );
        assert_eq!(
            classify(s, ".ora-backups-2026-11.2.tar.tmp-9"),
            Some(Leftover::Temp)
        );
        assert_eq!(
            classify(s, ".ora-drill-123-AbC9"),
            Some(Leftover::Drill(123))
        );
        assert_eq!(
            classify(s, "ora-20261206T051059Z.db.gz.sha256"),
            Some(Leftover::Sidecar("ora-20261206T051059Z.db.gz".into()))
        );
        for other in [
            "ora-20261206T051059Z.db.gz",
            ".bashrc",
            ".other-20261206T051059Z.db.gz.tmp-1",
            ".ora-20261206T051059Z.db.gz.tmp-x1",
            "notes.sha256",
            ".ora-drill-x",
        ] {
            assert_eq!(classify(s, other), None, "{other}");
        }
    }

    #[test]
    fn only_leftovers_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("ora.db");
        let keep = [
            "ora-20261206T051059Z.db.gz",
            "ora-20261206T051059Z.db.gz.sha256",
            "unrelated.txt",
        ];
        for k in keep {
            std::fs::write(d.path().join(k), b"x").unwrap();
        }
        std::fs::write(
            d.path().join(".ora-20261206T051100Z.db.gz.tmp-99999999"),
            b"x",
        )
        .unwrap();
        std::fs::write(d.path().join("ora-20261206T051100Z.db.gz.sha256"), b"x").unwrap();
        // A drill of a live process (this one) stays; one of a gone process goes.
        let mine = d
            .path()
            .join(format!("{DRILL_PREFIX}{}-a", std::process::id()));
        std::fs::create_dir(&mine).unwrap();
        std::fs::create_dir(d.path().join(format!("{DRILL_PREFIX}999999999-b"))).unwrap();
        let mut removed = remove_leftovers(d.path(), &db);
        removed.sort();
        assert_eq!(removed.len(), 3, "{removed:?}");
        for k in keep {
            assert!(d.path().join(k).exists(), "{k}");
        }
        assert!(mine.exists());
    }

    #[test]
    fn a_second_run_waits_then_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let first = lock(d.path(), Duration::ZERO, "backup").unwrap();
        // flock locks belong to the open file description: a second open in this process
        // conflicts like another process would.
        let e = lock(d.path(), Duration::ZERO, "backup").err().unwrap();
        assert!(e.to_string().contains("is still writing"), "{e}");
        drop(first);
        assert!(lock(d.path(), Duration::ZERO, "backup").is_ok());
    }
}
