//! The continuous replica: every captured commit (see `store::capture`) copied to a second
//! directory (another disk, a USB disk, an NFS mount) as it happens, with base copies, so the
//! database can be rebuilt as it was at any commit from that directory alone.
//!
//! - [`dir`]: the directory layout, marker and lock; [`format`]: the segment bytes;
//!   [`segment`]: the append end; [`base`]: taking a base copy.
//! - [`ship`]: the shipper thread every writing ora process runs while the database has a
//!   replica (bounded mode: behind by at most about `max_lag_ms`; strict mode: a write is
//!   acknowledged only once durable there).
//! - [`restore`]: rebuilding the database at a point; [`verify`]: the nightly proof;
//!   [`status`]: what the replica holds and how far behind it is.
//!
//! Never writes into a directory without this database's marker, never stops local writes in
//! bounded mode, and never leaves a hole in the history unannounced: a change it could not
//! capture is answered with a new base and an ops_log entry.

mod base;
mod dir;
mod error;
mod format;
pub mod history;
mod owner;
pub mod restore;
pub mod seal;
mod segment;
pub mod setup;
pub mod ship;
pub mod status;
pub mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_MAX_LAG_MS: u64 = 1_000;
pub const DEFAULT_KEEP_DAYS: u32 = 30;
pub const DEFAULT_STRICT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_BASE_INTERVAL_HOURS: u32 = 24;
pub const DEFAULT_MAX_PENDING_MB: u64 = 512;

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// At the local commit; the replica follows within about `max_lag_ms`.
    Bounded,
    /// Only once the commit is durable on the replica too.
    Strict,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bounded => "bounded",
            Mode::Strict => "strict",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s.to_ascii_lowercase().as_str() {
            "bounded" => Some(Mode::Bounded),
            "strict" => Some(Mode::Strict),
            _ => None,
        }
    }
}

/// The `[replica]` settings, validated.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// The replica directory (`None`: the one recorded in the database, if any).
    pub dir: Option<PathBuf>,
    /// `None`: the mode recorded in the database (bounded when none).
    pub mode: Option<Mode>,
    pub max_lag: Duration,
    pub keep_days: u32,
    /// How long a strict write waits for the replica before it is refused.
    pub strict_timeout: Duration,
    /// A new base once the newest is this old.
    pub base_interval: Duration,
    /// Changes waiting locally for an absent replica beyond this are dropped (and a new base
    /// taken when it is back), so the database cannot grow without bound.
    pub max_pending_bytes: u64,
    /// Compression of bases.
    pub level: u32,
    pub threads: usize,
    /// Encrypt new generations to this age public key (`[backup] encrypt_to`).
    pub encrypt_to: Option<String>,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            dir: None,
            mode: None,
            max_lag: Duration::from_millis(DEFAULT_MAX_LAG_MS),
            keep_days: DEFAULT_KEEP_DAYS,
            strict_timeout: Duration::from_millis(DEFAULT_STRICT_TIMEOUT_MS),
            base_interval: Duration::from_secs(u64::from(DEFAULT_BASE_INTERVAL_HOURS) * 3600),
            max_pending_bytes: DEFAULT_MAX_PENDING_MB * 1024 * 1024,
            level: crate::file::backup::DEFAULT_LEVEL,
            threads: 0,
            encrypt_to: None,
        }
    }
}

impl ReplicaConfig {
    pub fn threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }
}

/// The directory and mode a process replicates with: the configuration's, else what the
/// database recorded when its replica was set up.
pub fn effective(
    cfg: &ReplicaConfig,
    recorded_dir: Option<&str>,
    recorded_mode: &str,
) -> Option<(PathBuf, Mode)> {
    let dir = cfg
        .dir
        .clone()
        .or_else(|| recorded_dir.filter(|d| !d.is_empty()).map(PathBuf::from))?;
    let mode = cfg
        .mode
        .or_else(|| Mode::parse(recorded_mode))
        .unwrap_or(Mode::Bounded);
    Some((dir, mode))
}

/// The hostname-based site name written into a new replica's marker.
pub fn site_of(site: &str) -> String {
    if site.is_empty() {
        "unknown".into()
    } else {
        site.to_string()
    }
}

/// The path of the database, for messages and markers.
pub fn shown(db: &Path) -> String {
    std::fs::canonicalize(db)
        .unwrap_or_else(|_| db.to_path_buf())
        .display()
        .to_string()
}

/// Starts shipping for `store` when its database has a replica and a directory is known
/// (configured, or recorded by `ora replica init`). Returns the shipper, or `None` when the
/// database has no replica.
pub fn attach(
    store: &crate::store::Store,
    tuning: &crate::store::Tuning,
    cfg: &ReplicaConfig,
    follow: bool,
) -> crate::error::Result<Option<std::sync::Arc<ship::Replicator>>> {
    if store.has_sink(crate::store::SinkKind::Replica) {
        return Ok(None);
    }
    let (state, secret) = {
        let r = store.read()?;
        (crate::store::capture::state(&r)?, seal::read_secret(&r))
    };
    let Some(st) = state.filter(|s| s.enabled) else {
        return Ok(None);
    };
    let Some((dir, mode)) = effective(cfg, st.dir.as_deref(), &st.mode) else {
        log::warn!(
            "replica: the database has a replica but no directory is known; set [replica] dir"
        );
        return Ok(None);
    };
    seal::prepare_from(&secret, store.path(), tuning, cfg.encrypt_to.as_deref())?;
    let rep = ship::Replicator::start(
        ship::ShipTarget {
            db: store.path().to_path_buf(),
            dir,
            mode,
            database_id: st.database_id.clone(),
            local_seq: st.seq,
            follow,
        },
        tuning,
        cfg,
    )
    .map_err(|e| crate::error::Error::io("replica: start the shipper", e))?;
    store.attach_sink(
        crate::store::SinkKind::Replica,
        std::sync::Arc::clone(&rep) as std::sync::Arc<dyn crate::store::ReplicaSink>,
    );
    Ok(Some(rep))
}

/// Ships everything the database at `db` has committed (a new base first when it asks for
/// one), waiting up to `timeout`; the shipper's status afterwards, or why it could not.
pub fn ship_now(
    db: &Path,
    tuning: &crate::store::Tuning,
    cfg: &ReplicaConfig,
    timeout: Duration,
) -> crate::error::Result<ship::Status> {
    use crate::error::Error;
    let (st, secret) = {
        let c = crate::file::check::open_source(db, tuning, "replica")?;
        (crate::store::capture::state(&c)?, seal::read_secret(&c))
    };
    let st = st
        .filter(|s| s.enabled)
        .ok_or_else(|| Error::usage(format!("{} has no replica", db.display())))?;
    let (dir, mode) = effective(cfg, st.dir.as_deref(), &st.mode).ok_or_else(|| {
        Error::config("the database has a replica but no directory is known; set [replica] dir")
    })?;
    seal::prepare_from(&secret, db, tuning, cfg.encrypt_to.as_deref())?;
    let target = ship::ShipTarget {
        db: db.to_path_buf(),
        dir,
        mode,
        database_id: st.database_id,
        local_seq: st.seq,
        follow: false,
    };
    let rep = ship::Replicator::start(target, tuning, cfg)
        .map_err(|e| Error::io("replica: start the shipper", e))?;
    let done = rep.catch_up(timeout);
    let status = rep.status();
    rep.stop();
    if done {
        Ok(status)
    } else {
        Err(Error::failed(format!(
            "replica: {}",
            status.problem.unwrap_or_else(|| format!(
                "the replica did not catch up within {} s",
                timeout.as_secs()
            ))
        )))
    }
}

/// Ships what this database's `replica_log` still holds (commits of bookkeeping writes such as
/// ops_log lines, made by commands without a shipper of their own), waiting at most `timeout`.
/// Does nothing when there is no replica, nothing waits, or the directory is not there.
pub fn ship_pending(
    db: &Path,
    tuning: &crate::store::Tuning,
    cfg: &ReplicaConfig,
    timeout: Duration,
) {
    if !db.is_file() {
        return;
    }
    let Ok(c) = crate::file::check::open_source(db, tuning, "replica") else {
        return;
    };
    let Ok(Some(st)) = crate::store::capture::state(&c) else {
        return;
    };
    if !st.enabled {
        return;
    }
    let waiting: i64 = c
        .query_row("SELECT count(*) FROM replica_log", [], |r| r.get(0))
        .unwrap_or(0);
    let secret = seal::read_secret(&c);
    drop(c);
    let Some((dir, mode)) = effective(cfg, st.dir.as_deref(), &st.mode) else {
        return;
    };
    if waiting == 0 || !dir.join(dir::MARKER).exists() {
        return;
    }
    // A replica that refuses this database: the command's own shipper, if it wrote, has said
    // so already, and `ora health` says so; nothing to ship.
    if dir::ReplicaDir::open(&dir, &st.database_id, &owner::Place::of(db)).is_err() {
        return;
    }
    if let Err(e) = seal::prepare_from(&secret, db, tuning, cfg.encrypt_to.as_deref()) {
        log::warn!("replica: {e}");
        return;
    }
    let target = ship::ShipTarget {
        db: db.to_path_buf(),
        dir,
        mode,
        database_id: st.database_id,
        local_seq: st.seq,
        follow: false,
    };
    if let Ok(rep) = ship::Replicator::start(target, tuning, cfg) {
        rep.catch_up(timeout);
        rep.stop();
    }
}
