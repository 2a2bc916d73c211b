//! The OS-facing bits in one place: the server's lock file (an advisory `flock` that dies with
//! the process, so a SIGKILLed server leaves no stale lock) and small file helpers. Nothing
//! here knows about SQLite.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file that says "a server has this database open": `<db>.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// An exclusive advisory lock held for the life of a server process.
pub struct ServerLock {
    _file: File,
    path: PathBuf,
}

impl ServerLock {
    /// Takes the lock or says which process holds it.
    pub fn acquire(db: &Path) -> Result<ServerLock> {
        let path = lock_path(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("serve: open the lock file {}", path.display()), e))?;
        // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::Io(format!(
                "serve: another ora server (pid {}) already serves {}; stop it first (`systemctl stop ora`)",
                holder.trim(),
                db.display()
            )));
        }
        file.set_len(0)
            .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
            .map_err(|e| Error::io(format!("serve: write the lock file {}", path.display()), e))?;
        Ok(ServerLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid of the server holding `db`'s lock, if one does.
pub fn server_holding(db: &Path) -> Option<String> {
    let path = lock_path(db);
    let file = File::open(&path).ok()?;
    // SAFETY: as above; a shared non-blocking probe that we release at once.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        // SAFETY: releasing the probe lock we just took on our own descriptor.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return None;
    }
    Some(
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .trim()
            .to_string(),
    )
}
