//! Installing a checked database file at the live path, atomically: the current database is
//! checkpointed and kept under `<stem>_before_<what>_<time>.db` (a hard link, so the live name
//! never disappears), its WAL moved aside with it (a WAL left beside the path would be
//! replayed into the new file), the new file renamed over the path and the directory fsynced.
//! If the new file cannot be opened afterwards the old one is renamed back. A kill at any
//! instant leaves the old or the new database at the path. Used by restore and recover.
//!
//! Every file built here gets its lineage before it gets its name: one named anywhere but the
//! live path is a detached copy (a new id, no replica, its origin noted), one installed at the
//! live path carries the replica settings its [`Fate`] says. A file never appears under its
//! final name still attached to another database's replica.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::file::backup::catalog;
use crate::fsutil;
use crate::store::capture::State;
use crate::store::lineage::{self, Origin};
use crate::store::{connection, dbfile, schema};

/// What the replica settings of a file installed at the live path become.
#[derive(Debug, Clone)]
pub enum Fate {
    /// Continue the replica `state` describes (the replaced database's, or the replica the
    /// file came from when this place owns it); with a `base_reason` the replica takes a new
    /// base for it, without one the chain of records decides.
    Continue {
        state: State,
        base_reason: Option<String>,
    },
    /// No replica, the same identity: the replaced database had no replica either.
    NoReplica,
    /// No replica and a new identity, with this origin: a copy (nothing was at the path, or
    /// it is named elsewhere).
    Detach(Origin),
}

/// The `-wal` / `-shm` companions of a database file.
pub fn companion(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// A database being built under a temporary name beside where it will go
/// (`.NAME.TAG.tmp-PID`), removed with its `-wal`, `-shm` and `-journal` when dropped before it
/// was named ([`Building::name_as`]) or installed ([`Building::install`]): a failure or a kill
/// part way leaves nothing that looks like a database. Holds no descriptor of the file.
pub struct Building {
    tmp: PathBuf,
    done: bool,
}

impl Building {
    /// A temporary name beside `dest` (any stale file of that name is removed first).
    pub fn beside(dest: &Path, tag: &str) -> Building {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ora.db".into());
        let tmp =
            fsutil::parent_dir(dest).join(format!(".{name}.{tag}.tmp-{}", std::process::id()));
        let b = Building { tmp, done: false };
        b.clean();
        b
    }

    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Creates the new database with ora's schema, tuned for a bulk load (no journal, no
    /// fsync: a failure part way discards the file anyway; [`seal_built`] makes it durable).
    /// `what` names the operation in errors.
    pub fn create(&self, what: &str) -> Result<rusqlite::Connection> {
        let sql = |step: &str, e: rusqlite::Error| -> Error {
            crate::store::StoreError::sqlite(&format!("{what}: {step}"), e).into()
        };
        let mut conn =
            connection::open_plain(&self.tmp).map_err(|e| sql("create the new database", e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -200000;",
        )
        .map_err(|e| sql("tune the new database", e))?;
        schema::migrate(&mut conn, &self.tmp.display().to_string())?;
        Ok(conn)
    }

    /// Gives the finished (sealed) file its name `dest` as a detached copy with `origin`, and
    /// fsyncs the directory.
    pub fn name_as(mut self, dest: &Path, what: &str, origin: &Origin) -> Result<()> {
        apply(&self.tmp, what, &Fate::Detach(origin.clone()))?;
        std::fs::rename(&self.tmp, dest).map_err(|e| {
            Error::io(
                format!("{what}: name the new database {}", dest.display()),
                e,
            )
        })?;
        self.done = true;
        fsutil::sync_dir(&fsutil::parent_dir(dest))
            .map_err(|e| Error::io(format!("{what}: fsync the directory"), e))
    }

    /// Installs the finished file over the live database `db` (see [`replace`]) with the
    /// replica settings `fate` says; returns where the replaced database was kept.
    pub fn install(mut self, db: &Path, what: &str, fate: &Fate) -> Result<Option<PathBuf>> {
        apply(&self.tmp, what, fate)?;
        let kept = replace(db, &self.tmp, what)?;
        self.done = true;
        Ok(kept)
    }

    fn clean(&self) {
        let _ = std::fs::remove_file(&self.tmp);
        for suffix in ["-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(companion(&self.tmp, suffix));
        }
    }
}

impl Drop for Building {
    fn drop(&mut self) {
        if !self.done {
            self.clean();
        }
    }
}

/// Gives the database file at `tmp` (not yet under its final name, opened by no one) its
/// lineage, upgrading an older schema first so it has the columns, and seals it.
pub fn apply(tmp: &Path, what: &str, fate: &Fate) -> Result<()> {
    let sql = |step: &str, e: rusqlite::Error| -> Error {
        crate::store::StoreError::sqlite(&format!("{what}: {step}"), e).into()
    };
    {
        let mut conn = connection::open_plain(tmp).map_err(|e| sql("open the new database", e))?;
        schema::migrate(&mut conn, &tmp.display().to_string())?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| sql("set the new database's lineage", e))?;
        let done = match fate {
            Fate::Detach(origin) => lineage::detach(&conn, origin),
            Fate::NoReplica => lineage::without_replica(&conn),
            Fate::Continue { state, base_reason } => {
                lineage::carry(&conn, state, base_reason.as_deref())
            }
        };
        if let Err(e) = done {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        conn.execute_batch("COMMIT")
            .map_err(|e| sql("set the new database's lineage", e))?;
    }
    seal_built(tmp, what)
}

/// Finishes a database built under a temporary name: switches it to WAL (ora's databases are
/// WAL files) from a fresh connection, leaves no `-wal`/`-shm` beside it, and fsyncs it, ready
/// to be renamed or installed. `what` names the operation in errors.
pub fn seal_built(tmp: &Path, what: &str) -> Result<()> {
    let sql = |step: &str, e: rusqlite::Error| -> Error {
        crate::store::StoreError::sqlite(&format!("{what}: {step}"), e).into()
    };
    let conn = connection::open_plain(tmp).map_err(|e| sql("reopen the new database", e))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .map_err(|e| sql("switch the new database to WAL", e))?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(|e| sql("checkpoint the new database", e))?;
    drop(conn);
    for suffix in ["-wal", "-shm"] {
        dbfile::remove(&companion(tmp, suffix))
            .map_err(|e| Error::io(format!("{what}: remove the new database's WAL"), e))?;
    }
    dbfile::sync(tmp).map_err(|e| Error::io(format!("{what}: fsync the new database"), e))
}

/// Moves `new_file` (same directory, fsynced, checked) to `db`; returns where the replaced
/// database was kept.
pub fn replace(db: &Path, new_file: &Path, what: &str) -> Result<Option<PathBuf>> {
    let dir = fsutil::parent_dir(db);
    let kept = keep_current(db, what)?;
    std::fs::rename(new_file, db).map_err(|e| {
        Error::io(
            format!("{what}: move the new database to {}", db.display()),
            e,
        )
    })?;
    fsutil::sync_dir(&dir)
        .map_err(|e| Error::io(format!("{what}: fsync the database directory"), e))?;
    if let Err(e) = reopen(db) {
        if let Some(k) = &kept {
            let _ = std::fs::rename(k, db);
            let _ = fsutil::sync_dir(&dir);
        }
        return Err(Error::failed(format!(
            "{what}: the new database could not be opened ({e}); the previous database was put back"
        )));
    }
    Ok(kept)
}

/// Checkpoints the current database into its main file and hard-links it to the kept name.
/// Returns the kept name, or `None` when there was no database.
fn keep_current(db: &Path, what: &str) -> Result<Option<PathBuf>> {
    if !db.exists() {
        return Ok(None);
    }
    let wal = companion(db, "-wal");
    let checkpointed = connection::open_plain(db).and_then(|c| {
        c.busy_timeout(std::time::Duration::from_secs(8))?;
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
    });
    if let Err(e) = &checkpointed {
        log::warn!("{what}: the current database could not be checkpointed ({e}); keeping its WAL beside it");
    }
    let stamp = crate::clock::local_now().format("%Y%m%dT%H%M%S");
    let kept =
        fsutil::parent_dir(db).join(format!("{}_before_{what}_{stamp}.db", catalog::stem(db)));
    let _ = std::fs::remove_file(&kept);
    std::fs::hard_link(db, &kept).map_err(|e| {
        Error::io(
            format!("{what}: keep the current database as {}", kept.display()),
            e,
        )
    })?;
    // A WAL left beside the path would be replayed into the new file: move it to the kept copy.
    if wal.exists() {
        let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if len > 0 {
            dbfile::rename(&wal, &companion(&kept, "-wal"))
                .map_err(|e| Error::io(format!("{what}: move the old WAL aside"), e))?;
        } else {
            dbfile::remove(&wal)
                .map_err(|e| Error::io(format!("{what}: remove the old empty WAL"), e))?;
        }
    }
    dbfile::remove(&companion(db, "-shm"))
        .map_err(|e| Error::io(format!("{what}: remove the old shared-memory file"), e))?;
    Ok(Some(kept))
}

fn reopen(db: &Path) -> std::result::Result<(), String> {
    let conn = connection::open_plain(db).map_err(|e| e.to_string())?;
    let shown = db.display().to_string();
    let id = schema::identify(&conn, &shown).map_err(|e| e.to_string())?;
    schema::check_compatible(id, &shown).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(db: &Path) -> State {
        let c = connection::open_plain(db).unwrap();
        crate::store::capture::state(&c).unwrap().unwrap()
    }

    /// A database with a replica turned on, built beside `dest` and sealed.
    fn built(dest: &Path) -> Building {
        let b = Building::beside(dest, "test");
        let c = b.create("test").unwrap();
        c.execute(
            "UPDATE replica_state SET enabled = 1, dir = '/replica', database_id = 'original' WHERE id = 1",
            [],
        )
        .unwrap();
        drop(c);
        seal_built(b.path(), "test").unwrap();
        b
    }

    // Whatever a builder leaves in the file, a file named away from the live path is detached:
    // a new id, no replica, and its origin.
    #[test]
    fn a_file_named_elsewhere_is_detached_before_it_has_its_name() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("copy.db");
        built(&dest)
            .name_as(&dest, "test", &Origin::copy("restore", "a backup"))
            .unwrap();
        assert!(!companion(&dest, "-wal").exists());
        let st = state(&dest);
        assert!(!st.enabled && st.dir.is_none());
        assert_ne!(st.database_id, "original");
        let c = connection::open_plain(&dest).unwrap();
        let o = lineage::read(&c).unwrap().origin.unwrap();
        assert_eq!(o.copy_of, "original");
    }

    // Installed in place, the file carries what its fate says.
    #[test]
    fn an_installed_file_carries_its_fate() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("ora.db");
        let prev = State {
            database_id: "live".into(),
            dir: Some("/live-replica".into()),
            ..state(built(&db).path())
        };
        built(&db)
            .install(
                &db,
                "test",
                &Fate::Continue {
                    state: prev,
                    base_reason: Some("restored in place".into()),
                },
            )
            .unwrap();
        let st = state(&db);
        assert_eq!(
            (st.database_id.as_str(), st.dir.as_deref(), st.outside),
            ("live", Some("/live-replica"), true)
        );
        built(&db).install(&db, "test", &Fate::NoReplica).unwrap();
        let st = state(&db);
        assert_eq!((st.database_id.as_str(), st.enabled), ("original", false));
    }
}
