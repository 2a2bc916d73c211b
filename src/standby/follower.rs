//! The standby's side: one thread that follows the primary. It asks for the records after its
//! position (the long poll also acknowledges everything up to it: those are committed here),
//! applies each answer through the writer in one transaction, and takes a new base when it has
//! none yet or the primary says its position is gone or not in its history (the reason is
//! logged and kept in its status). An unreachable primary is retried with a growing pause (at
//! most 5 s); the follower never gives up on its own. It stops when the process stops or the
//! file is no longer a standby (promoted). Writes the database only through the writer's
//! `Follow` and `Role` requests.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::base::BaseInfo;
use super::client::{Client, Me, Polled};
use super::error::{StandbyError, StandbyKind};
use crate::shutdown::Shutdown;
use crate::store::capture;
use crate::store::follow::Batch;
use crate::store::rebase::Rebase;
use crate::store::role::{self, Change};
use crate::store::{Outcome, Store, WriteOp, WriteRequest};

/// How long one poll waits for a new record at the primary.
const WAIT: Duration = Duration::from_secs(5);
/// The longest pause between attempts while the primary cannot be reached.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// What the page, `/health` and `/metrics` show of a standby.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowerStatus {
    pub primary_url: String,
    /// "starting", "taking a base", "following", "unreachable", "stopped", "promoted".
    pub state: &'static str,
    /// The last record applied here.
    pub seq: i64,
    /// The primary's last commit, as it last said.
    pub primary_seq: i64,
    pub lag_records: i64,
    /// How old the last applied record is while records are missing (0 when caught up).
    pub lag_ms: i64,
    /// When the primary last answered (ms since 1970).
    pub last_contact_ms: i64,
    /// When the last applied record was committed at the primary (ms since 1970).
    pub last_record_ms: i64,
    pub bases: u64,
    pub last_base_reason: String,
    pub last_error: String,
}

/// A standby's follower.
pub struct Follower {
    client: Client,
    me: Me,
    status: Mutex<FollowerStatus>,
}

impl Follower {
    /// A follower of `primary`, with the token and trust of `cfg`.
    pub fn new(
        primary: &str,
        cfg: &super::StandbyConfig,
        me: Me,
    ) -> Result<Follower, StandbyError> {
        Ok(Follower {
            client: Client::new(
                primary,
                cfg.token.as_deref(),
                Duration::from_secs(30),
                &cfg.trust,
            )?,
            status: Mutex::new(FollowerStatus {
                primary_url: primary.trim_end_matches('/').to_string(),
                state: "starting",
                ..FollowerStatus::default()
            }),
            me,
        })
    }

    pub fn status(&self) -> FollowerStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut FollowerStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Follows until `stop` trips or the file is promoted.
    pub fn run(&self, store: &Store, stop: &Shutdown) {
        let mut pause = Duration::from_millis(100);
        let mut needs_base: Option<String> = None;
        while !stop.is_tripped() {
            match self.step(store, &mut needs_base) {
                Ok(true) => pause = Duration::from_millis(100),
                Ok(false) => {
                    self.update(|s| s.state = "promoted");
                    log::info!("standby: this database is no longer a standby; following stops");
                    return;
                }
                Err(e) => {
                    let words = e.to_string();
                    let state = match e.kind() {
                        StandbyKind::Unreachable => "unreachable",
                        _ => "failing",
                    };
                    if self.status().last_error != words {
                        log::warn!("standby: {words}");
                    }
                    self.update(|s| {
                        s.state = state;
                        s.last_error = words;
                    });
                    if stop.wait(pause) {
                        break;
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
        self.update(|s| s.state = "stopped");
    }

    /// One poll (or one base); `Ok(false)` once the file is no longer a standby.
    fn step(&self, store: &Store, needs_base: &mut Option<String>) -> Result<bool, StandbyError> {
        let (role, st) = {
            let r = store.read()?;
            (role::read(&r)?, capture::state(&r)?)
        };
        let Some(st) = st.filter(|_| role.is_standby()) else {
            return Ok(false);
        };
        if st.seq < 0 && needs_base.is_none() {
            *needs_base = Some("this standby has no base yet".into());
        }
        if let Some(why) = needs_base.take() {
            if let Err(e) = self.take_base(store, &why, st.epoch) {
                *needs_base = Some(why);
                return Err(e);
            }
            return Ok(true);
        }
        let polled = self
            .client
            .poll(st.seq, &st.last_hash, st.epoch, WAIT, &self.me)?;
        let now = capture::now_ms();
        match polled {
            Polled::Records {
                records,
                primary_seq,
                epoch,
            } => {
                let last_ms = records.last().map(|r| r.committed_ms);
                let seq = if records.is_empty() {
                    st.seq
                } else {
                    self.apply(store, epoch, records, needs_base)?
                };
                self.update(|s| {
                    s.state = "following";
                    s.last_error.clear();
                    s.seq = seq;
                    s.primary_seq = primary_seq.max(seq);
                    s.lag_records = (primary_seq - seq).max(0);
                    s.last_contact_ms = now;
                    if let Some(ms) = last_ms {
                        s.last_record_ms = ms;
                    }
                    s.lag_ms = if s.lag_records > 0 {
                        (now - s.last_record_ms).max(0)
                    } else {
                        0
                    };
                });
            }
            Polled::Gone(why) | Polled::Diverged(why) => *needs_base = Some(why),
            Polled::NotPrimary(why) => {
                return Err(StandbyError::new(
                    StandbyKind::Role,
                    format!(
                        "{} no longer takes writes, so it feeds no standby: {why}; promote this standby with `ora promote`, or follow the new primary with `ora standby --from URL`",
                        self.client.url()
                    ),
                ))
            }
        }
        Ok(true)
    }

    /// Applies one answer; returns the position after it.
    fn apply(
        &self,
        store: &Store,
        epoch: i64,
        records: Vec<capture::Record>,
        needs_base: &mut Option<String>,
    ) -> Result<i64, StandbyError> {
        let out = store.write(WriteRequest::new(WriteOp::Follow(Batch { epoch, records })))?;
        let Outcome::Followed(f) = out.outcome else {
            return Err(StandbyError::new(
                StandbyKind::Database,
                "the writer answered a follow with something else",
            ));
        };
        if let Some(why) = f.needs_base {
            *needs_base = Some(why);
        }
        Ok(f.seq)
    }

    /// Downloads a new base, checks it, and makes it this standby's data.
    fn take_base(&self, store: &Store, why: &str, epoch: i64) -> Result<(), StandbyError> {
        log::warn!(
            "standby: taking a new base from {}: {why}",
            self.client.url()
        );
        self.update(|s| {
            s.state = "taking a base";
            s.last_base_reason = why.to_string();
        });
        let info = self.client.new_base()?;
        let gz = super::base::beside(store.path(), "incoming-base.gz");
        let db = super::base::beside(store.path(), "incoming-base.db");
        let result = download(&self.client, &info, &gz)
            .and_then(|()| extract(&gz, &db))
            .and_then(|()| {
                store
                    .change_role(Change::Rebase(Rebase {
                        file: db.clone(),
                        primary_url: self.client.url().to_string(),
                        epoch: epoch.max(info.epoch),
                    }))
                    .map_err(StandbyError::from)
            });
        let _ = std::fs::remove_file(&gz);
        remove_db(&db);
        let (_, rebased) = result?;
        self.client.base_done(&info.id);
        let rows = rebased.map_or(0, |r| r.rows);
        log::info!(
            "standby: base {} installed at record {} ({rows} rows)",
            info.id,
            info.seq
        );
        self.update(|s| {
            s.state = "following";
            s.bases += 1;
            s.seq = info.seq;
        });
        Ok(())
    }
}

/// Removes a scratch database and its companions (no connection of ours has it open).
fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = crate::store::dbfile::remove(&crate::file::install::companion(db, suffix));
    }
}

/// Downloads base `info` to `to` in pieces, checking its size and sha256.
fn download(client: &Client, info: &BaseInfo, to: &Path) -> Result<(), StandbyError> {
    let io = |e: std::io::Error| {
        StandbyError::new(
            StandbyKind::Database,
            format!("write the incoming base {}: {e}", to.display()),
        )
    };
    let _ = std::fs::remove_file(to);
    let mut out = crate::store::dbfile::create_new(to).map_err(io)?;
    let mut sha = Sha256::new();
    let mut offset = 0u64;
    while offset < info.bytes {
        let piece = client.chunk(&info.id, offset)?;
        if piece.is_empty() {
            return Err(StandbyError::new(
                StandbyKind::Damaged,
                format!(
                    "the primary's base ended at byte {offset} of {}",
                    info.bytes
                ),
            ));
        }
        sha.update(&piece);
        out.write_all(&piece).map_err(io)?;
        offset = offset.saturating_add(piece.len() as u64);
    }
    let got = crate::fsutil::hex(&sha.finalize());
    if offset != info.bytes || got != info.sha256 {
        return Err(StandbyError::new(
            StandbyKind::Damaged,
            format!(
                "the primary's base is damaged: {offset} bytes with sha256 {got}, expected {} bytes with {}",
                info.bytes, info.sha256
            ),
        ));
    }
    out.sync_all().map_err(io)?;
    Ok(())
}

/// Decompresses the base and checks it with quick_check.
fn extract(gz: &Path, db: &Path) -> Result<(), StandbyError> {
    let what = "standby base";
    remove_db(db);
    let mut out = crate::store::dbfile::create_new(db).map_err(|e| {
        StandbyError::new(
            StandbyKind::Database,
            format!("write the incoming base {}: {e}", db.display()),
        )
    })?;
    let to_err = |e: crate::error::Error| {
        StandbyError::new(StandbyKind::Damaged, format!("the primary's base: {e}"))
    };
    crate::file::backup::source::extract(
        gz,
        &mut out,
        what,
        &crate::file::progress::Progress::hidden(),
        &[],
    )
    .map_err(to_err)?;
    drop(out);
    let tuning = crate::store::connection::Tuning::default();
    let conn = crate::file::check::open_source(db, &tuning, what).map_err(to_err)?;
    let verdict = crate::file::check::quick_check(&conn).map_err(to_err)?;
    if verdict != "ok" {
        return Err(StandbyError::new(
            StandbyKind::Damaged,
            format!("the primary's base fails quick_check: {verdict}"),
        ));
    }
    Ok(())
}
