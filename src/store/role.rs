//! A database file's role among its boxes, as `replica_state` holds it: a primary (takes writes,
//! captures its commits for the standbys' feed when one is on), a standby (follows a primary:
//! applies its records in order, takes no other write), or an old primary fenced off because a
//! standby was promoted past it. The epoch numbers the lineage's primaries: a promotion starts
//! the next one. The only code that changes `role`, `primary_url`, `epoch`, `feed` and `fenced`;
//! [`Gate`] is the in-memory copy the writer checks before it queues a request. Runs inside the
//! caller's transaction; never talks to another box.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::error::{Result, SqlContext, StoreError};

/// The schema version that added the role columns.
pub(super) const SINCE_VERSION: i64 = 13;

/// What `replica_state` says about the file's role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Role {
    /// "primary" or "standby".
    pub role: String,
    /// The primary a standby follows ("" on a primary).
    pub primary_url: String,
    pub epoch: i64,
    /// Commits are captured for standbys.
    pub feed: bool,
    /// Why this old primary refuses writes ("" when it does not).
    pub fenced: String,
}

impl Default for Role {
    fn default() -> Self {
        Role {
            role: "primary".into(),
            primary_url: String::new(),
            epoch: 1,
            feed: false,
            fenced: String::new(),
        }
    }
}

impl Role {
    pub fn is_standby(&self) -> bool {
        self.role == "standby"
    }
}

fn current(conn: &Connection) -> Result<bool> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("read the schema version")?;
    Ok(v >= SINCE_VERSION)
}

/// Reads the role (a primary of epoch 1 on a file older than schema version 13).
pub fn read(conn: &Connection) -> Result<Role> {
    if !current(conn)? {
        return Ok(Role::default());
    }
    let row = conn
        .query_row(
            "SELECT role, primary_url, epoch, feed, fenced FROM replica_state WHERE id = 1",
            [],
            |r| {
                Ok(Role {
                    role: r.get(0)?,
                    primary_url: r.get(1)?,
                    epoch: r.get(2)?,
                    feed: r.get(3)?,
                    fenced: r.get(4)?,
                })
            },
        )
        .optional()
        .ctx("read the database's role")?;
    Ok(row.unwrap_or_default())
}

/// Where a standby starts: the primary's id, epoch and position of the base it was made from.
#[derive(Debug, Clone)]
pub struct Following {
    pub primary_url: String,
    pub database_id: String,
    pub epoch: i64,
    pub seq: i64,
    pub last_hash: [u8; 32],
}

/// Makes the file a standby of `f.primary_url` at `f`'s position, of the primary's lineage:
/// its id, epoch and chain. No replica of its own, nothing captured. Inside the caller's write
/// transaction (on a base just received, before it is installed).
pub fn become_standby(conn: &Connection, f: &Following) -> Result<()> {
    conn.execute(
        "UPDATE replica_state SET role = 'standby', primary_url = ?1, database_id = ?2, epoch = ?3,
                seq = ?4, last_hash = ?5, enabled = 0, feed = 0, dir = NULL, outside = 0,
                fenced = '', origin = '', base_reason = '' WHERE id = 1",
        rusqlite::params![
            f.primary_url,
            f.database_id,
            f.epoch,
            f.seq,
            &f.last_hash[..]
        ],
    )
    .ctx("make the database a standby")?;
    Ok(())
}

/// Makes a standby the primary of the next epoch: it stops following, captures its commits
/// for standbys of its own, and takes writes. Its chain continues where it stands. Returns the
/// new epoch.
pub fn promote(conn: &Connection) -> Result<i64> {
    let r = read(conn)?;
    if !r.is_standby() && r.fenced.is_empty() {
        return Err(StoreError::conflict(format!(
            "this database is already the primary (epoch {}); there is nothing to promote",
            r.epoch
        )));
    }
    let epoch = r
        .epoch
        .checked_add(1)
        .ok_or_else(|| StoreError::failed("the epoch overflowed"))?;
    conn.execute(
        "UPDATE replica_state SET role = 'primary', primary_url = '', epoch = ?1, fenced = '',
                outside = 0 WHERE id = 1",
        [epoch],
    )
    .ctx("promote the database")?;
    set_feed(conn, true)?;
    Ok(epoch)
}

/// Fences an old primary: it refuses writes from now on, saying `why`.
pub fn fence(conn: &Connection, why: &str) -> Result<()> {
    conn.execute("UPDATE replica_state SET fenced = ?1 WHERE id = 1", [why])
        .ctx("fence the database")?;
    Ok(())
}

/// Turns the capture for standbys on or off. Turning it on while nothing captured starts the
/// capture from the file as it is (its schema, nothing outside ora since).
pub fn set_feed(conn: &Connection, on: bool) -> Result<()> {
    let st = super::capture::state(conn)?
        .ok_or_else(|| StoreError::failed("the database has no replica state"))?;
    if on && !st.captures() {
        let version = super::capture::schema_version(conn)?;
        let hash = super::capture::schema_hash(conn)?;
        conn.execute(
            "UPDATE replica_state SET outside = 0, schema_version = ?1, schema_hash = ?2 WHERE id = 1",
            rusqlite::params![version, hash],
        )
        .ctx("set the standbys' feed")?;
    }
    conn.execute("UPDATE replica_state SET feed = ?1 WHERE id = 1", [on])
        .ctx("set the standbys' feed")?;
    Ok(())
}

/// Makes a file a standby of `primary_url` that has no base yet (position -1): it takes no
/// writes from now on, and its data are replaced by the first base it receives.
pub fn await_base(conn: &Connection, primary_url: &str) -> Result<()> {
    conn.execute(
        "UPDATE replica_state SET role = 'standby', primary_url = ?1, enabled = 0, feed = 0,
                dir = NULL, fenced = '', seq = -1 WHERE id = 1",
        [primary_url],
    )
    .ctx("make the database a standby")?;
    Ok(())
}

/// A change of the file's role, made by the writer in turn with every other write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Become a standby of this primary, waiting for its base.
    AwaitBase(String),
    /// Replace the standby's data with a base from its primary.
    Rebase(super::rebase::Rebase),
    /// Become the primary of the next epoch.
    Promote,
    /// Refuse writes from now on, saying why.
    Fence(String),
    /// Capture commits for standbys (on) or stop (off).
    Feed(bool),
}

/// Runs `c` inside the caller's write transaction; answers with the role after it.
pub fn change(conn: &Connection, c: &Change) -> Result<(Role, Option<super::rebase::Rebased>)> {
    let mut rebased = None;
    match c {
        Change::AwaitBase(url) => await_base(conn, url)?,
        Change::Rebase(r) => rebased = Some(super::rebase::apply(conn, r)?),
        Change::Promote => {
            promote(conn)?;
        }
        Change::Fence(why) => fence(conn, why)?,
        Change::Feed(on) => set_feed(conn, *on)?,
    }
    Ok((read(conn)?, rebased))
}

/// What the writer may take, kept in memory so a refusal costs one atomic load.
#[derive(Debug, Default)]
pub struct Gate {
    /// 0: a primary, 1: a standby, 2: a fenced old primary.
    state: AtomicU8,
    /// The primary a standby follows, or why this one is fenced.
    note: Mutex<String>,
}

const PRIMARY: u8 = 0;
const STANDBY: u8 = 1;
const FENCED: u8 = 2;

impl Gate {
    /// Sets the gate from the file's role.
    pub fn set(&self, r: &Role) {
        let (state, note) = if r.is_standby() {
            (STANDBY, r.primary_url.clone())
        } else if !r.fenced.is_empty() {
            (FENCED, r.fenced.clone())
        } else {
            (PRIMARY, String::new())
        };
        *self.note.lock().unwrap_or_else(|p| p.into_inner()) = note;
        self.state.store(state, Ordering::SeqCst);
    }

    /// Refuses writes from now on, before the fence reaches the file.
    pub fn close(&self, why: &str) {
        *self.note.lock().unwrap_or_else(|p| p.into_inner()) = why.to_string();
        self.state.store(FENCED, Ordering::SeqCst);
    }

    /// Whether this database takes writes from clients.
    pub fn takes_writes(&self) -> bool {
        self.state.load(Ordering::SeqCst) == PRIMARY
    }

    pub fn is_standby(&self) -> bool {
        self.state.load(Ordering::SeqCst) == STANDBY
    }

    /// Why this box is fenced, from the moment it refuses writes (before the file says so).
    pub fn fenced(&self) -> Option<String> {
        (self.state.load(Ordering::SeqCst) == FENCED)
            .then(|| self.note.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// The refusal of a client's write, or `None` when writes are taken.
    pub fn refusal(&self) -> Option<StoreError> {
        let note = || self.note.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match self.state.load(Ordering::SeqCst) {
            PRIMARY => None,
            STANDBY => Some(StoreError::not_primary(format!(
                "this database is a standby of {}; it takes no writes",
                note()
            ))
            .with_hint("write to the primary, or promote this standby with `ora promote` if the primary is gone")),
            _ => Some(StoreError::not_primary(format!(
                "this database no longer takes writes: {}",
                note()
            ))
            .with_hint("make it a standby of the new primary with `ora standby --from URL --rejoin`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        super::super::tests::made_by_ora("r.db")
    }

    #[test]
    fn a_standby_is_promoted_into_the_next_epoch_and_a_primary_is_not() {
        let (_d, conn) = db();
        assert_eq!(read(&conn).unwrap(), Role::default());
        assert_eq!(
            promote(&conn).unwrap_err().kind(),
            super::super::StoreKind::Conflict
        );
        become_standby(
            &conn,
            &Following {
                primary_url: "https://a:8080".into(),
                database_id: "abc".into(),
                epoch: 3,
                seq: 41,
                last_hash: [7; 32],
            },
        )
        .unwrap();
        let r = read(&conn).unwrap();
        assert!(r.is_standby());
        assert_eq!((r.epoch, r.primary_url.as_str()), (3, "https://a:8080"));
        let gate = Gate::default();
        gate.set(&r);
        assert!(!gate.takes_writes());
        assert_eq!(
            gate.refusal().unwrap().kind(),
            super::super::StoreKind::NotPrimary
        );
        assert_eq!(promote(&conn).unwrap(), 4);
        let r = read(&conn).unwrap();
        assert!(!r.is_standby() && r.feed && r.fenced.is_empty());
        gate.set(&r);
        assert!(gate.takes_writes() && gate.refusal().is_none());
        fence(&conn, "epoch 5 was promoted at box b").unwrap();
        gate.set(&read(&conn).unwrap());
        assert!(!gate.takes_writes() && !gate.is_standby());
        assert!(gate.refusal().unwrap().to_string().contains("epoch 5"));
        assert_eq!(gate.fenced().unwrap(), "epoch 5 was promoted at box b");
    }

    #[test]
    fn a_closed_gate_says_fenced_before_the_file_does() {
        let gate = Gate::default();
        assert_eq!(gate.fenced(), None);
        gate.close("epoch 2 was promoted at box b");
        assert!(!gate.takes_writes());
        assert_eq!(gate.fenced().unwrap(), "epoch 2 was promoted at box b");
        gate.set(&Role::default());
        assert_eq!(gate.fenced(), None);
    }
}
