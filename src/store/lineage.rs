//! The lineage a database file carries in `replica_state`: whether it continues a database's
//! history (and that database's replica) or is a copy ora made somewhere else, detached at
//! birth (a new id, no replica, and a note of where it came from), and why its replica needs a
//! new base after ora replaced the file in place. The only code that changes
//! `replica_state.database_id`, `origin` and `base_reason`. Runs inside the caller's write
//! transaction; never touches a replica directory.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::capture::State;
use super::error::{Result, SqlContext};

/// The schema version that added `origin` and `base_reason`.
const SINCE_VERSION: i64 = 12;

/// Where a file ora made away from the live path came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The operation that made it: "restore", "recover", "adopt", ...
    pub made_by: String,
    /// When, UTC (RFC 3339).
    pub at: String,
    /// What it was made from: a backup file, a replica directory, a database, a URL.
    pub from: String,
    /// The id of the database it is a copy of (filled in by [`detach`]; "" for a new database
    /// such as `ora adopt` makes).
    #[serde(default)]
    pub copy_of: String,
    /// Whether it is a copy of an ora database (else a new one).
    #[serde(default)]
    pub copy: bool,
    /// Whether a user has been told (the first command that opens the file does it).
    #[serde(default)]
    pub announced: bool,
}

impl Origin {
    /// A copy of an ora database, made by `made_by` from `from`.
    pub fn copy(made_by: &str, from: &str) -> Origin {
        Origin {
            made_by: made_by.to_string(),
            at: crate::model::now_utc(),
            from: from.to_string(),
            copy_of: String::new(),
            copy: true,
            announced: false,
        }
    }

    /// A new database (not a copy of an ora one), made by `made_by` from `from`.
    pub fn new_database(made_by: &str, from: &str) -> Origin {
        Origin {
            copy: false,
            ..Origin::copy(made_by, from)
        }
    }

    /// The operator's sentence: what this file is and that it has no replica.
    pub fn sentence(&self) -> String {
        let what = if self.copy {
            "a copy"
        } else {
            "a new database"
        };
        format!(
            "{what} made by `ora {}` at {} from {}; it has no replica of its own (`ora replica init DIR` gives it one)",
            self.made_by, self.at, self.from
        )
    }
}

/// What `replica_state` says about the file's lineage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// Set when the file is a detached copy (or a new database) ora made.
    pub origin: Option<Origin>,
    /// Why the replica needs a new base (set by an in-place restore or salvage).
    pub base_reason: String,
}

fn current(conn: &Connection) -> Result<bool> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("read the schema version")?;
    Ok(v >= SINCE_VERSION)
}

/// Reads the lineage (the default on a file older than schema version 12).
pub fn read(conn: &Connection) -> Result<Lineage> {
    if !current(conn)? {
        return Ok(Lineage::default());
    }
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT origin, base_reason FROM replica_state WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ctx("read the database's lineage")?;
    let Some((origin, base_reason)) = row else {
        return Ok(Lineage::default());
    };
    Ok(Lineage {
        origin: serde_json::from_str(&origin).ok(),
        base_reason,
    })
}

/// The row a salvaged file may lack (a new id for it).
fn ensure_row(conn: &Connection) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO replica_state (id, database_id) VALUES (1, lower(hex(randomblob(16))))",
        [],
    )
    .ctx("read the database id")?;
    Ok(())
}

/// Makes the file a detached copy: a new database id, no replica, nothing waiting for one, no
/// replica secret, and `origin` noted. Inside the caller's write transaction.
pub fn detach(conn: &Connection, origin: &Origin) -> Result<()> {
    let mut origin = origin.clone();
    if origin.copy {
        origin.copy_of = conn
            .query_row(
                "SELECT database_id FROM replica_state WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .ctx("read the database id")?
            .unwrap_or_default();
    }
    ensure_row(conn)?;
    let note = serde_json::to_string(&origin).unwrap_or_default();
    conn.execute(
        "UPDATE replica_state SET database_id = lower(hex(randomblob(16))), enabled = 0, dir = NULL,
                outside = 0, seal_secret = NULL, seal_to = NULL, origin = ?1, base_reason = ''
          WHERE id = 1",
        [note],
    )
    .ctx("detach the copy from the replica")?;
    conn.execute("DELETE FROM replica_log", [])
        .ctx("detach the copy from the replica")?;
    if conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .ctx("read the schema version")?
        >= super::role::SINCE_VERSION
    {
        // A copy of a standby, or of an old primary, is a primary of its own new lineage.
        conn.execute(
            "UPDATE replica_state SET role = 'primary', primary_url = '', epoch = 1, feed = 0,
                    fenced = '' WHERE id = 1",
            [],
        )
        .ctx("detach the copy from its standbys")?;
    }
    Ok(())
}

/// Makes the file continue the replica `prev` describes (the database it replaces in place):
/// same id, directory and mode. With a `base_reason`, the replica takes a new base for it at
/// its next shipment; without, the chain of records decides. Inside the caller's write
/// transaction.
pub fn carry(conn: &Connection, prev: &State, base_reason: Option<&str>) -> Result<()> {
    ensure_row(conn)?;
    conn.execute(
        "UPDATE replica_state SET database_id = ?1, enabled = 1, dir = ?2, mode = ?3, outside = ?4,
                origin = '', base_reason = ?5
          WHERE id = 1",
        rusqlite::params![
            prev.database_id,
            prev.dir,
            prev.mode,
            base_reason.is_some(),
            base_reason.unwrap_or("")
        ],
    )
    .ctx("carry the replica settings over")?;
    conn.execute("DELETE FROM replica_log", [])
        .ctx("carry the replica settings over")?;
    Ok(())
}

/// Keeps the file's identity but gives it no replica (it replaces in place a database that
/// had none). Inside the caller's write transaction.
pub fn without_replica(conn: &Connection) -> Result<()> {
    ensure_row(conn)?;
    conn.execute(
        "UPDATE replica_state SET enabled = 0, outside = 0, origin = '', base_reason = ''
          WHERE id = 1 AND (enabled <> 0 OR outside <> 0 OR origin <> '' OR base_reason <> '')",
        [],
    )
    .ctx("turn the replica off")?;
    conn.execute("DELETE FROM replica_log", [])
        .ctx("turn the replica off")?;
    Ok(())
}

/// Makes the file the continuation of `database_id` (a take-over of its replica), with its
/// replica in `dir`; the replica takes a new base for `base_reason`.
pub fn adopt_lineage(
    conn: &Connection,
    database_id: &str,
    dir: &str,
    mode: &str,
    base_reason: &str,
) -> Result<()> {
    conn.execute(
        "UPDATE replica_state SET database_id = ?1, enabled = 1, dir = ?2, mode = ?3, outside = 1,
                origin = '', base_reason = ?4
          WHERE id = 1",
        rusqlite::params![database_id, dir, mode, base_reason],
    )
    .ctx("take over the replica")?;
    conn.execute("DELETE FROM replica_log", [])
        .ctx("take over the replica")?;
    Ok(())
}

/// Notes that a user was told what the file is.
fn mark_announced(conn: &Connection, origin: &Origin) -> Result<()> {
    let seen = Origin {
        announced: true,
        ..origin.clone()
    };
    conn.execute(
        "UPDATE replica_state SET origin = ?1 WHERE id = 1",
        [serde_json::to_string(&seen).unwrap_or_default()],
    )
    .ctx("note that the copy was announced")?;
    Ok(())
}

/// The first time a command opens a copy ora made: the sentence that says what it is, noted
/// in the file as told (later commands stay quiet). `None` for any other file, or when the
/// note cannot be written (a read-only file: it is then told again next time).
pub fn announce(db: &std::path::Path, tuning: &super::connection::Tuning) -> Option<String> {
    let conn = super::connection::open_writer(db, tuning).ok()?;
    let origin = read(&conn).ok()?.origin.filter(|o| !o.announced)?;
    super::capture::short_write(&conn, std::time::Duration::from_secs(2), |c| {
        mark_announced(c, &origin)
    })
    .ok()?;
    Some(origin.sentence())
}

/// Forgets the reason for a new base once the base is taken (inside the caller's write
/// transaction; nothing to do on a file older than schema version 12).
pub fn clear_base_reason(conn: &Connection) -> rusqlite::Result<()> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if v < SINCE_VERSION {
        return Ok(());
    }
    conn.execute(
        "UPDATE replica_state SET base_reason = '' WHERE id = 1 AND base_reason <> ''",
        [],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c, ":memory:").unwrap();
        c.execute(
            "UPDATE replica_state SET enabled = 1, dir = '/r', seal_to = 'age1x', seal_secret = x'00' WHERE id = 1",
            [],
        )
        .unwrap();
        c
    }

    fn state(c: &Connection) -> State {
        crate::store::capture::state(c).unwrap().unwrap()
    }

    // A detached copy has a new id, no replica, no secret, and says where it came from.
    #[test]
    fn detach_gives_a_new_identity_and_no_replica() {
        let c = db();
        let before = state(&c);
        c.execute(
            "INSERT INTO replica_log (seq, committed_ms, prev_hash, hash, changeset) VALUES (1, 0, x'', x'', x'')",
            [],
        )
        .unwrap();
        let o = Origin::copy("restore", "/backups/a.db.gz");
        detach(&c, &o).unwrap();
        let after = state(&c);
        assert_ne!(after.database_id, before.database_id);
        assert!(!after.enabled);
        assert_eq!(after.dir, None);
        let waiting: i64 = c
            .query_row("SELECT count(*) FROM replica_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(waiting, 0);
        let secret: Option<Vec<u8>> = c
            .query_row("SELECT seal_secret FROM replica_state", [], |r| r.get(0))
            .unwrap();
        assert_eq!(secret, None);
        let l = read(&c).unwrap().origin.unwrap();
        assert_eq!(l.copy_of, before.database_id);
        assert_eq!(
            (l.made_by.as_str(), l.from.as_str()),
            ("restore", "/backups/a.db.gz")
        );
        assert!(
            l.sentence().contains("a copy made by `ora restore`"),
            "{l:?}"
        );
    }

    // Carrying settings over keeps the replaced database's id and asks for a new base.
    #[test]
    fn carry_keeps_the_id_and_names_the_base_reason() {
        let c = db();
        let prev = State {
            database_id: "feed".into(),
            dir: Some("/replica".into()),
            mode: "strict".into(),
            ..state(&c)
        };
        detach(&c, &Origin::copy("restore", "x")).unwrap();
        carry(&c, &prev, Some("restored in place")).unwrap();
        let s = state(&c);
        assert_eq!(
            (s.database_id.as_str(), s.enabled, s.outside),
            ("feed", true, true)
        );
        let l = read(&c).unwrap();
        assert_eq!(l.origin, None);
        assert_eq!(l.base_reason, "restored in place");
        clear_base_reason(&c).unwrap();
        assert_eq!(read(&c).unwrap().base_reason, "");
    }
}
