//! The OS-facing bits in one place: the server's lock file (an advisory `flock` that dies with
//! the process, so a SIGKILLed server leaves no stale lock), a writer that keeps a long
//! output's dirty pages few ([`Paced`]), and small file helpers. Nothing here knows about
//! SQLite.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file that says "a server has this database open": `<db>.lock`.
fn lock_path(db: &Path) -> PathBuf {
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
            return Err(Error::failed(format!(
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

/// Creates `path` for writing with mode 0600 (backups hold the whole ledger), failing if it
/// exists.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// fsyncs a directory, so a rename inside it survives a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` ("." for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary file beside its final name that is removed on drop unless committed: the
/// crash-safe replacement written once (temp name, fsync, rename, fsync the directory).
pub struct PendingFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

impl PendingFile {
    /// Starts `dest` as a hidden temp file (`.NAME.tmp-PID`) in the same directory, mode 0600.
    pub fn create(dest: &Path) -> std::io::Result<PendingFile> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ora".into());
        let tmp = parent_dir(dest).join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let file = create_private(&tmp)?;
        Ok(PendingFile {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("pending file is open until commit")
    }

    /// fsyncs and closes the descriptor, keeping the temp file for [`PendingFile::commit`] or
    /// removal on drop: for a database image that SQLite must open next, with no descriptor of
    /// ours left on it (closing one later would drop SQLite's locks).
    pub fn close(&mut self) -> std::io::Result<()> {
        match self.file.take() {
            Some(f) => f.sync_all(),
            None => Ok(()),
        }
    }

    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// fsyncs the data, renames it into place and fsyncs the directory.
    pub fn commit(mut self) -> std::io::Result<PathBuf> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        std::fs::rename(&self.tmp, &self.dest)?;
        sync_dir(&parent_dir(&self.dest))?;
        Ok(std::mem::take(&mut self.dest))
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.dest.as_os_str().is_empty() {
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Lowercase hex of a byte string.
/// The bytes an unprivileged writer may still use on the file system holding `path`.
pub fn available_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` is a buffer of the right type for the call
    // to fill; it is read only after the call succeeds.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes written by [`hex`] (an even number of hex digits, at most 128); None for
/// anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let h = text.as_bytes();
    if !h.len().is_multiple_of(2) || h.len() > 128 {
        return None;
    }
    h.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// The 32 bytes written by [`hex`] as 64 hex digits; None for anything else.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    let h = text.as_bytes();
    if h.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in h.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Bytes a [`Paced`] writer lets pile up before it starts writing them out.
const PACE_BYTES: u64 = 8 << 20;

/// Writes a long output (a backup) so that no more than about two `PACE_BYTES` of it wait in
/// the page cache: each full stretch is sent to the disk at once and the one before it waited
/// for. Otherwise the whole file is written at its closing fsync, and a commit's fsync on the
/// same disk waits behind it (a write waited 100-140 ms at the end of a 1.1 GB backup). Only
/// the pace changes: durability is still the caller's fsync.
pub struct Paced<'a> {
    file: &'a mut File,
    written: u64,
    /// Where the stretch not yet sent to the disk starts.
    sent_to: u64,
    /// Where the stretch sent last (and not yet waited for) starts.
    waited_to: u64,
}

impl<'a> Paced<'a> {
    pub fn new(file: &'a mut File) -> Paced<'a> {
        let at = file.metadata().map(|m| m.len()).unwrap_or(0);
        Paced {
            file,
            written: at,
            sent_to: at,
            waited_to: at,
        }
    }

    fn pace(&mut self) {
        if self.written.saturating_sub(self.sent_to) < PACE_BYTES {
            return;
        }
        let fd = self.file.as_raw_fd();
        let range = |from: u64, to: u64| {
            (
                libc::off64_t::try_from(from).unwrap_or(0),
                libc::off64_t::try_from(to.saturating_sub(from)).unwrap_or(0),
            )
        };
        let (start, len) = range(self.sent_to, self.written);
        let (before, before_len) = range(self.waited_to, self.sent_to);
        // Advice to the kernel: where it is not followed, the fsync writes everything as before.
        // SAFETY: plain system calls on a descriptor this writer borrows; no memory is shared.
        unsafe {
            libc::sync_file_range(fd, start, len, libc::SYNC_FILE_RANGE_WRITE);
            if before_len > 0 {
                libc::sync_file_range(
                    fd,
                    before,
                    before_len,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
            }
        }
        self.waited_to = self.sent_to;
        self.sent_to = self.written;
    }
}

impl Write for Paced<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written = self.written.saturating_add(n as u64);
        self.pace();
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pacing changes when bytes reach the disk, never which: odd-sized writes across several
    // stretches, appended to a file that already has bytes, read back the same.
    #[test]
    fn a_paced_file_holds_exactly_what_was_written() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"head").unwrap();
        let mut want = b"head".to_vec();
        let mut rng = crate::sample::Rng::new(5);
        {
            let mut p = Paced::new(&mut f);
            while want.len() < (3 * PACE_BYTES as usize) + 12_345 {
                let n = 1 + rng.below(1 << 20) as usize;
                let chunk: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                p.write_all(&chunk).unwrap();
                want.extend_from_slice(&chunk);
            }
            p.flush().unwrap();
        }
        f.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
