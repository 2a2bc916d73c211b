//! `ora replica init DIR [--take-over]` and `ora replica disable`: turning the replica on for a
//! database (marker in an empty directory, capture enabled, the first base taken), handing an
//! existing replica over to a new owner explicitly, and turning it off again; and what becomes
//! of the replica settings of a file ora installs in place. The only code that changes
//! `replica_state.enabled`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::oplog;
use crate::store::connection::{self, Tuning};
use crate::store::{capture, StoreError};

use super::base::{self, BaseOptions};
use super::dir::{self, Marker, ReplicaDir};
use super::owner::{self, Owner, Place};
use super::{Mode, ReplicaConfig};
use crate::file::install::Fate;
use crate::store::lineage::Origin;

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
    /// With --take-over: the owner this database replaced, and its new epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub took_over_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
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
    let what = format!("replica: {what}");
    Ok(capture::replica_write(&conn, wait, |c| {
        f(c).map_err(|e| StoreError::sqlite(&what, e))
    })?)
}

/// How long set-up waits for another process's write lock.
const STATE_WAIT: Duration = Duration::from_secs(30);
const STATE_WHAT: &str = "update the replica state";

/// What `replica init` is asked to do.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub mode: Mode,
    /// The site name written into a new marker.
    pub site: String,
    /// Continue an existing replica that another database owns (its owner is gone).
    pub take_over: bool,
    /// With `take_over`: even though the replica was written within [`QUIET`].
    pub force: bool,
}

/// A take-over waits until the replica has not been written for this long, unless forced
/// (its owner on another machine may still be running).
const QUIET: Duration = Duration::from_secs(300);

/// Prepares `o.dir` as the replica of `db` and takes its first base, or (`take_over`) makes
/// `db` the owner of an existing replica.
///
/// Kept whole: the steps of setting up a replica (refusals, the directory marker, the state in the
/// database, the secret, the first base, the record) in their only safe order.
pub fn init(
    db: &Path,
    tuning: &Tuning,
    cfg: &ReplicaConfig,
    o: &InitOptions,
) -> Result<InitReport> {
    if o.take_over {
        return take_over(db, tuning, cfg, o);
    }
    let (dir, mode) = (o.dir.as_path(), o.mode);
    let started = crate::model::now_utc();
    let t0 = Instant::now();
    let here = Place::of(db);
    let state = {
        let c = crate::file::check::open_source(db, tuning, "replica init")?;
        capture::state(&c)?.ok_or_else(|| {
            Error::usage(format!(
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
            site: super::site_of(&o.site),
            database: here.database.clone(),
            created: crate::model::now_utc(),
            machine: here.machine.clone(),
            host: here.host.clone(),
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
        c.execute("UPDATE replica_state SET origin = '' WHERE id = 1", [])?;
        crate::store::lineage::clear_base_reason(c)
    })?;
    super::seal::prepare(db, tuning, cfg.encrypt_to.as_deref())?;
    let secret = {
        let c = crate::file::check::open_source(db, tuning, "replica init")?;
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
        took_over_from: None,
        epoch: None,
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

/// [`set_state`] for a step of `store::lineage` (which says what failed in its own error).
fn set_lineage(
    db: &Path,
    tuning: &Tuning,
    f: impl FnOnce(&rusqlite::Connection) -> crate::store::Result<()>,
) -> Result<()> {
    let conn = connection::open_writer(db, tuning)?;
    Ok(capture::replica_write(&conn, STATE_WAIT, f)?)
}

/// `ora replica init DIR --take-over`: makes `db` the owner of the replica in `o.dir`, which
/// another database (now gone) owned. Refused while that owner may still be shipping; the
/// hand-over is recorded in the replica (`owners/`), the database takes the replica's
/// lineage, and a first base of the new epoch is taken at once. Nothing of the history before
/// is changed.
///
/// Kept whole: the refusals of a take-over are an ordered checklist (old schema, empty replica,
/// already the owner, still shipping, a server here), each a few lines and each must run before
/// anything is written; after them come the three writes in their only safe order (owner record,
/// lineage, first base).
fn take_over(
    db: &Path,
    tuning: &Tuning,
    cfg: &ReplicaConfig,
    o: &InitOptions,
) -> Result<InitReport> {
    let started = crate::model::now_utc();
    let t0 = Instant::now();
    let dir = o.dir.as_path();
    let usage = |why: String| Error::usage(format!("replica init --take-over: {why}"));
    let here = Place::of(db);
    let state = {
        let c = crate::file::check::open_source(db, tuning, "replica init")?;
        capture::state(&c)?.ok_or_else(|| {
            usage(format!(
                "{} has an old schema; run `ora init` first",
                db.display()
            ))
        })?
    };
    let rd = ReplicaDir::open_any(dir).map_err(|p| usage(p.message(dir)))?;
    let (gens, _) = rd
        .generations()
        .map_err(|e| Error::io(format!("replica init: list {}", dir.display()), e))?;
    if gens.is_empty() {
        return Err(usage(format!(
            "{} holds no base, so there is no history to continue; make a new replica in an empty directory with `ora replica init DIR`",
            dir.display()
        )));
    }
    let before = owner::current(&rd).map_err(|p| usage(p.message(dir)))?;
    if before.place.same(&here) && state.enabled && state.database_id == rd.marker.database_id {
        return Err(usage(format!(
            "this database already owns {}; there is nothing to take over",
            dir.display()
        )));
    }
    if !o.force {
        if let Some(why) = still_shipping(&gens, &before, &here) {
            return Err(Error::failed(format!(
                "replica init --take-over: {why}; nothing was changed"
            )));
        }
    }
    let lock = rd
        .lock()
        .map_err(|e| Error::io(format!("replica init: lock {}", dir.display()), e))?;
    if owner::current(&rd).ok().as_ref() != Some(&before) {
        return Err(Error::failed(format!(
            "replica init --take-over: {} changed owner meanwhile; look with `ora replica status` and run this again",
            dir.display()
        )));
    }
    let next = Owner {
        epoch: before.epoch + 1,
        database_id: rd.marker.database_id.clone(),
        place: here.clone(),
        since: crate::model::now_utc(),
        since_ms: capture::now_ms(),
        reason: format!(
            "take-over from {} (epoch {})",
            before.place.describe(),
            before.epoch
        ),
    };
    let reason = format!(
        "taken over by {} from {} (epoch {})",
        here.describe(),
        before.place.describe(),
        next.epoch
    );
    let shown_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let lineage_id = rd.marker.database_id.clone();
    // The database first: if the hand-over below fails, it is refused as a non-owner and the
    // command can be run again.
    set_lineage(db, tuning, |c| {
        crate::store::lineage::adopt_lineage(
            c,
            &lineage_id,
            &shown_dir.display().to_string(),
            o.mode.as_str(),
            &reason,
        )
    })?;
    owner::hand_over(&rd, &next).map_err(|e| {
        Error::io(
            format!("replica init: record the take-over in {}", dir.display()),
            e,
        )
    })?;
    drop(lock);
    super::seal::prepare(db, tuning, cfg.encrypt_to.as_deref())?;
    // The first base of the new epoch, taken by the shipper for the reason recorded above.
    let st = super::ship_now(db, tuning, cfg, std::time::Duration::from_secs(3600))?;
    let report = InitReport {
        dir: shown_dir,
        database_id: lineage_id,
        site: rd.marker.site.clone(),
        mode: o.mode.as_str().into(),
        generation: st.generation,
        base_seq: st.shipped_seq,
        base_bytes: 0,
        seconds: t0.elapsed().as_secs_f64(),
        took_over_from: Some(before.place.describe()),
        epoch: Some(next.epoch),
    };
    oplog::record(
        db,
        "replica_take_over",
        &started,
        true,
        &serde_json::to_value(&report).unwrap_or_default(),
    );
    Ok(report)
}

/// Why the replica's owner `before` may still be shipping, seen from `here`: on this machine,
/// an ora server holding its database; elsewhere (or unknown), a replica written within
/// [`QUIET`].
fn still_shipping(gens: &[dir::Generation], before: &Owner, here: &Place) -> Option<String> {
    let machine = &before.place.machine;
    if machine.is_empty() || *machine == here.machine {
        if let Some(pid) = crate::fsutil::server_holding(Path::new(&before.place.database)) {
            return Some(format!(
                "an ora server (pid {pid}) still serves {}, the replica's owner; stop it first (`systemctl stop ora`)",
                before.place.database
            ));
        }
        if !machine.is_empty() {
            return None;
        }
    }
    let newest = gens
        .last()
        .and_then(|g| std::fs::read_dir(&g.path).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()?;
    let age = newest.elapsed().unwrap_or_default();
    (age < QUIET).then(|| {
        format!(
            "the replica was written {} s ago, by its owner ({}) as far as ora can tell; make sure that box is off or its ora stopped, then run this again after {} s, or add --force if it is gone for good",
            age.as_secs(),
            before.place.describe(),
            QUIET.saturating_sub(age).as_secs()
        )
    })
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
/// (None: no readable database there; Some(None): one older than the replica.)
fn settings_before_replace(db: &Path, tuning: &Tuning) -> Option<Option<capture::State>> {
    if !db.is_file() {
        return None;
    }
    let c = crate::file::check::open_source(db, tuning, "restore").ok()?;
    capture::state(&c).ok()
}

/// What happens to the replica when the file built at `built` replaces the database at `db`
/// in place (restore, recover, a rebuild from the mirror): it continues the replica the
/// replaced database had; when that had none, it has none either; when there was no readable
/// database (a new box, a dead disk), it continues the replica the built file names if this
/// place owns it (the box whose database disk died, restoring at its own path), else it is
/// detached with `origin`. `base_reason` says why the replica needs a new base
/// (`None`: the built file continues the chain exactly, as a restore to the replica's newest
/// point does). `from_replica`: the replica directory the file was rebuilt from, where it is
/// now (it may be mounted elsewhere than the file recorded).
pub fn fate_in_place(
    db: &Path,
    tuning: &Tuning,
    built: &Path,
    base_reason: Option<String>,
    origin: Origin,
    from_replica: Option<&Path>,
) -> Fate {
    let prev = match settings_before_replace(db, tuning) {
        Some(Some(p)) if p.enabled => Some(p),
        Some(_) => return Fate::NoReplica,
        None => None,
    };
    if let Some(prev) = prev {
        let same = built_state(built).is_some_and(|b| b.database_id == prev.database_id);
        return Fate::Continue {
            state: prev,
            base_reason: if same {
                base_reason
            } else {
                base_reason.or_else(|| Some("the database was replaced".into()))
            },
        };
    }
    let Some(own) = built_state(built).filter(|s| s.enabled) else {
        return Fate::Detach(origin);
    };
    let here = Place::of(db);
    let dir = from_replica
        .map(Path::to_path_buf)
        .or_else(|| own.dir.as_deref().map(PathBuf::from));
    let owns = dir
        .as_deref()
        .and_then(|d| ReplicaDir::open(d, &own.database_id, &here).ok())
        .is_some();
    if owns {
        let dir = dir.map(|d| std::fs::canonicalize(&d).unwrap_or(d));
        Fate::Continue {
            state: capture::State {
                dir: dir.map(|d| d.display().to_string()).or(own.dir.clone()),
                ..own
            },
            base_reason,
        }
    } else {
        Fate::Detach(origin)
    }
}

fn built_state(built: &Path) -> Option<capture::State> {
    let c = connection::open_plain(built).ok()?;
    capture::state(&c).ok().flatten()
}
