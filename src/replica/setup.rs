//! `ora replica init DIR` and `ora replica disable`: turning the replica on for a database
//! (marker in an empty directory, capture enabled, the first base taken) and off again. The
//! only code that changes `replica_state.enabled`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ops::oplog;
use crate::store::connection::{self, Tuning};
use crate::store::{capture, writer, StoreError};

use super::base::{self, BaseOptions};
use super::dir::{self, Marker, ReplicaDir};
use super::{Mode, ReplicaConfig};

/// What `replica init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub dir: PathBuf,
    pub database_id: String,
    pub site: String,
    pub mode: String,
    pub generation: u64,
    pub base_seq: i64,
    pub base_bytes: u64,
    pub seconds: f64,
}

/// One write transaction on `replica_state` (waiting up to `wait` for the write lock);
/// `what` names it in an error.
pub(super) fn set_state(
    db: &Path,
    tuning: &Tuning,
    wait: Duration,
    what: &str,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<()>,
) -> Result<()> {
    let conn = connection::open_writer(db, tuning)?;
    writer::begin_immediate(&conn, wait)?;
    match f(&conn).and_then(|()| conn.execute_batch("COMMIT")) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(StoreError::sqlite(&format!("replica: {what}"), e).into())
        }
    }
}

/// How long set-up waits for another process's write lock.
const STATE_WAIT: Duration = Duration::from_secs(30);
const STATE_WHAT: &str = "update the replica state";

/// Prepares `dir` as the replica of `db` and takes its first base.
pub fn init(
    db: &Path,
    tuning: &Tuning,
    cfg: &ReplicaConfig,
    dir: &Path,
    mode: Mode,
    site: &str,
) -> Result<InitReport> {
    let started = crate::model::now_utc();
    let t0 = Instant::now();
    let state = {
        let c = crate::ops::check::open_source(db, tuning, "replica init")?;
        capture::state(&c)?.ok_or_else(|| {
            Error::Usage(format!(
                "replica init: {} has an old schema; run `ora init` first",
                db.display()
            ))
        })?
    };
    let rd = ReplicaDir::init(
        dir,
        Marker {
            format: dir::FORMAT,
            kind: "ora-replica".into(),
            database_id: state.database_id.clone(),
            site: super::site_of(site),
            database: super::shown(db),
            created: crate::model::now_utc(),
        },
    )?;
    let shown_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    set_state(db, tuning, STATE_WAIT, STATE_WHAT, |c| {
        let version: i64 = c.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
        let hash = capture::schema_hash(c)
            .map_err(|e| rusqlite::Error::InvalidParameterName(e.to_string()))?;
        c.execute(
            "UPDATE replica_state SET enabled = 1, dir = ?1, mode = ?2, outside = 0, schema_version = ?3, schema_hash = ?4 WHERE id = 1",
            rusqlite::params![shown_dir.display().to_string(), mode.as_str(), version, hash],
        )?;
        c.execute("DELETE FROM replica_log", [])?;
        Ok(())
    })?;
    super::seal::prepare(db, tuning, cfg.encrypt_to.as_deref())?;
    let secret = {
        let c = crate::ops::check::open_source(db, tuning, "replica init")?;
        super::seal::read_secret(&c)
    };
    let number = rd
        .last_generation_number()
        .map_err(|e| Error::io(format!("replica init: list {}", dir.display()), e))?
        + 1;
    let g = base::take(
        &rd,
        db,
        number,
        &BaseOptions {
            tuning,
            level: cfg.level,
            threads: cfg.threads(),
            reason: "init".into(),
            continues: false,
            seal: match (&secret.bytes, &cfg.encrypt_to) {
                (Some(secret), Some(to)) => Some(base::SealWith { secret, to }),
                _ => None,
            },
        },
    )?;
    let report = InitReport {
        dir: shown_dir,
        database_id: state.database_id,
        site: rd.marker.site.clone(),
        mode: mode.as_str().into(),
        generation: number,
        base_seq: g.base.seq,
        base_bytes: g.base.bytes,
        seconds: t0.elapsed().as_secs_f64(),
    };
    oplog::record(
        db,
        "replica_init",
        &started,
        true,
        &serde_json::to_value(&report).unwrap_or_default(),
    );
    Ok(report)
}

/// Turns capture off and forgets what waited for the replica.
pub fn disable(db: &Path, tuning: &Tuning) -> Result<()> {
    let started = crate::model::now_utc();
    set_state(db, tuning, STATE_WAIT, STATE_WHAT, |c| {
        c.execute("UPDATE replica_state SET enabled = 0 WHERE id = 1", [])?;
        c.execute("DELETE FROM replica_log", [])?;
        Ok(())
    })?;
    oplog::record(
        db,
        "replica_disable",
        &started,
        true,
        &serde_json::json!({}),
    );
    Ok(())
}

/// The replica settings of the database at `db` before it is replaced (restore, recover).
pub fn settings_before_replace(db: &Path, tuning: &Tuning) -> Option<capture::State> {
    if !db.is_file() {
        return None;
    }
    let c = crate::ops::check::open_source(db, tuning, "restore").ok()?;
    capture::state(&c).ok().flatten().filter(|s| s.enabled)
}

/// After a restore or salvage installed another file at `db`: it keeps replicating to the
/// same replica (same database id, directory and mode), and the replica learns that the
/// history jumped (a new base follows).
pub fn carry_over(db: &Path, tuning: &Tuning, prev: Option<&capture::State>) -> Result<()> {
    let Some(prev) = prev else { return Ok(()) };
    // An older file is upgraded first, so it has the replica's tables.
    crate::store::Store::open(
        &crate::store::StoreOptions {
            tuning: tuning.clone(),
            ..crate::store::StoreOptions::new(db)
        },
        crate::store::OpenMode::Existing,
    )?
    .close();
    set_state(db, tuning, STATE_WAIT, STATE_WHAT, |c| {
        c.execute(
            "UPDATE replica_state SET database_id = ?1, enabled = 1, dir = ?2, mode = ?3, outside = 1 WHERE id = 1",
            rusqlite::params![prev.database_id, prev.dir, prev.mode],
        )?;
        c.execute("DELETE FROM replica_log", [])?;
        Ok(())
    })
}
