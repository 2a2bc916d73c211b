//! The other boxes of this lineage that this one has known: its standbys' addresses and the
//! primary it followed. Kept in a small JSON file beside the database (`.NAME.peers`, written
//! whole through a crash-safe replacement, only when an address is new), so that after a
//! restart a primary still asks them whether one was promoted past it, and a promoted box
//! still tells its old primary. At most [`MAX_PEERS`] addresses (the newest kept). Never
//! touches the database; a missing or unreadable file is an empty list, logged.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The most addresses kept.
pub const MAX_PEERS: usize = 16;

/// The known peers of one database.
pub struct Peers {
    path: Option<PathBuf>,
    urls: Mutex<VecDeque<String>>,
}

impl Peers {
    /// The peers kept beside `db` (none kept without a database path).
    pub fn load(db: Option<&Path>) -> Peers {
        let path = db.map(|d| super::base::beside(d, "peers"));
        let urls = path.as_deref().map(read).unwrap_or_default();
        Peers {
            path,
            urls: Mutex::new(urls),
        }
    }

    pub fn list(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.urls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers `url` (an `http://` or `https://` address); writes the file when it is new.
    pub fn add(&self, url: &str) {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2_000 {
            return;
        }
        let mut urls = self.lock();
        if urls.iter().any(|u| u == url) {
            return;
        }
        urls.push_back(url.to_string());
        while urls.len() > MAX_PEERS {
            urls.pop_front();
        }
        if let Some(p) = &self.path {
            if let Err(e) = write(p, &urls) {
                log::warn!("standby: cannot keep the peers in {}: {e}", p.display());
            }
        }
    }
}

fn read(path: &Path) -> VecDeque<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return VecDeque::new(),
        Err(e) => {
            log::warn!("standby: cannot read {}: {e}", path.display());
            return VecDeque::new();
        }
    };
    match serde_json::from_str::<Vec<String>>(&text) {
        Ok(v) => {
            let mut urls: VecDeque<String> = v
                .into_iter()
                .filter(|u| {
                    (u.starts_with("http://") || u.starts_with("https://")) && u.len() <= 2_000
                })
                .collect();
            while urls.len() > MAX_PEERS {
                urls.pop_front();
            }
            urls
        }
        Err(e) => {
            log::warn!(
                "standby: {} is not a list of addresses ({e}); starting afresh",
                path.display()
            );
            VecDeque::new()
        }
    }
}

fn write(path: &Path, urls: &VecDeque<String>) -> std::io::Result<()> {
    let text =
        serde_json::to_string(&urls.iter().collect::<Vec<_>>()).map_err(std::io::Error::other)?;
    let mut f = crate::fsutil::PendingFile::create(path)?;
    f.file().write_all(text.as_bytes())?;
    f.commit().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_survive_a_restart_and_bad_files_start_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ora.db");
        let p = Peers::load(Some(&db));
        p.add("https://10.0.0.2:8080/");
        p.add("https://10.0.0.2:8080");
        p.add("ftp://nope");
        for i in 0..20 {
            p.add(&format!("http://10.0.1.{i}:8080"));
        }
        let again = Peers::load(Some(&db)).list();
        assert_eq!(again.len(), MAX_PEERS);
        assert_eq!(again.last().unwrap(), "http://10.0.1.19:8080");
        let file = super::super::base::beside(&db, "peers");
        for junk in [&b"{"[..], b"[1,2]", &[0xff; 64][..]] {
            std::fs::write(&file, junk).unwrap();
            assert!(Peers::load(Some(&db)).list().is_empty());
        }
        std::fs::write(&file, br#"["http://ok:1", "javascript:x"]"#).unwrap();
        assert_eq!(Peers::load(Some(&db)).list(), ["http://ok:1"]);
    }
}
