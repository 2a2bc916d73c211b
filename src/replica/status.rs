//! `ora replica status` and the replica's part of `/health`, `/metrics` and the page: mode,
//! lag (commits, bytes, seconds), the last commit and ledger id on the replica, the oldest and
//! newest restorable points, each generation and why it began, size on disk, the last verify,
//! who owns the replica and who was refused by it, and a verdict ([`judge`], pure). Reads the
//! database through SQLite and the directory as files; never writes.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::model::Level;
use crate::store::capture;

use super::dir::{DirProblem, ReplicaDir};
use super::history;
use super::owner::{self, Place, Refusal};
use super::ship::Status;
use super::{effective, ReplicaConfig};

/// A refusal this recent (the other database is still trying) fails the owner's health; an
/// older one warns until it is removed after a week.
const REFUSAL_FAIL_MS: i64 = 10 * 60_000;

/// One generation as `ora replica status` lists it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct GenerationSummary {
    pub number: u64,
    pub taken: String,
    /// The commit the base holds.
    pub seq: i64,
    /// Why the base was taken.
    pub reason: String,
    /// Whether the history runs on without a hole from the generation before.
    pub continues: bool,
    pub encrypted: bool,
}

/// Everything known about the replica.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ReplicaReport {
    /// A replica is set up for this database.
    pub enabled: bool,
    pub mode: String,
    pub dir: String,
    pub up: bool,
    pub problem: Option<String>,
    /// The problem in one word: `missing`, `disk_full`, `read_only`, `damaged`,
    /// `unreachable` (none: not known, as seen by a command without a shipper).
    pub condition: Option<&'static str>,
    pub problem_since_ms: Option<i64>,
    pub local_seq: i64,
    pub shipped_seq: i64,
    pub shipped_ledger: i64,
    pub shipped_commit_ms: i64,
    pub lag_commits: i64,
    /// Changes waiting locally for the replica, in bytes.
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub behind_since_ms: Option<i64>,
    pub generations: usize,
    pub oldest_point: Option<String>,
    pub newest_point: Option<String>,
    pub size_bytes: u64,
    /// The public key the newest generation is encrypted to (none: not encrypted).
    pub encrypted_to: Option<String>,
    pub last_verify: Option<String>,
    pub last_verify_ok: Option<bool>,
    pub max_lag_ms: u64,
    /// The replica refused this database (another database owns it, or another lineage's).
    pub refused: bool,
    /// Who continues the replica ("the database at PATH on HOST"), and since which take-over.
    pub owner: Option<String>,
    pub epoch: u64,
    /// Other databases that tried to write to this replica and were refused, newest first.
    pub refusals: Vec<Refusal>,
    /// The replica ends with a commit that is not this database's (another database wrote
    /// there): what was found.
    pub foreign_tail: Option<String>,
    pub generation_list: Vec<GenerationSummary>,
    /// This file is a copy (or a new database) ora made: what it is. It has no replica.
    pub copy: Option<String>,
}

/// The report from the database and the directory (for a process without a shipper, such as
/// `ora replica status` or `ora health`). `live` is a running shipper's status, if any.
pub fn gather(
    conn: &rusqlite::Connection,
    db: &Path,
    cfg: &ReplicaConfig,
    live: Option<Status>,
) -> Result<ReplicaReport> {
    let Some(st) = capture::state(conn)?.filter(|s| s.enabled) else {
        return without_replica(conn, cfg);
    };
    let Some((dir, mode)) = effective(cfg, st.dir.as_deref(), &st.mode) else {
        return Ok(ReplicaReport {
            enabled: true,
            problem: Some(
                "the database has a replica but no directory is configured; set [replica] dir"
                    .into(),
            ),
            ..ReplicaReport::default()
        });
    };
    let mut r = ReplicaReport {
        enabled: true,
        mode: mode.as_str().into(),
        dir: dir.display().to_string(),
        local_seq: st.seq,
        max_lag_ms: u64::try_from(cfg.max_lag.as_millis()).unwrap_or(u64::MAX),
        ..ReplicaReport::default()
    };
    if let Some(s) = &live {
        r.up = s.up;
        r.refused = s.refused;
        r.problem = s.problem.clone();
        r.condition = s.condition;
        r.problem_since_ms = s.problem_since_ms;
        r.shipped_seq = s.shipped_seq;
        r.shipped_ledger = s.shipped_ledger;
        r.shipped_commit_ms = s.shipped_commit_ms;
        r.local_seq = r.local_seq.max(s.local_seq);
        r.behind_since_ms = s.behind_since_ms;
    }
    read_dir(&mut r, &dir, &st, db, live.is_none());
    measure_lag(&mut r, conn, live.is_none());
    if let Ok(Some(v)) =
        crate::file::oplog::recent(conn, Some("replica_verify"), 1).map(|v| v.into_iter().next())
    {
        r.last_verify = v.finished.or(Some(v.started));
        r.last_verify_ok = v.ok;
    }
    Ok(r)
}

/// The report of a database that ships to no replica: a copy (refused at a configured
/// directory that is another's replica), a replica configured but not set up, or none.
fn without_replica(conn: &rusqlite::Connection, cfg: &ReplicaConfig) -> Result<ReplicaReport> {
    let copy = crate::store::lineage::read(conn)?
        .origin
        .map(|o| o.sentence());
    let owned_elsewhere = cfg.dir.as_deref().is_some_and(is_replica_dir);
    if let (Some(d), Some(what), true) = (&cfg.dir, &copy, owned_elsewhere) {
        return Ok(ReplicaReport {
            enabled: true,
            refused: true,
            dir: d.display().to_string(),
            problem: Some(format!(
                "this file is {what}; [replica] dir {} is not its replica, so nothing is shipped there. If this file must continue that replica (a new box replacing the old one), run `ora replica init {} --take-over`",
                d.display(),
                d.display()
            )),
            copy,
            ..ReplicaReport::default()
        });
    }
    if copy.is_some() {
        return Ok(ReplicaReport {
            copy,
            ..ReplicaReport::default()
        });
    }
    if let Some(d) = &cfg.dir {
        return Ok(ReplicaReport {
            enabled: true,
            dir: d.display().to_string(),
            problem: Some(format!(
                "[replica] dir is {} but this database's replica is not set up; run `ora replica init {}`",
                d.display(),
                d.display()
            )),
            ..ReplicaReport::default()
        });
    }
    Ok(ReplicaReport::default())
}

/// What the directory says: its owner, generations and size; without a live shipper, also
/// how far it reaches (its newest record) and whether that tail is another database's.
fn read_dir(r: &mut ReplicaReport, dir: &Path, st: &capture::State, db: &Path, offline: bool) {
    match ReplicaDir::open(dir, &st.database_id, &Place::of(db)) {
        Ok(rd) => {
            r.size_bytes = rd.size();
            if let Ok(o) = owner::current(&rd) {
                r.owner = Some(o.place.describe());
                r.epoch = o.epoch;
            }
            r.refusals = owner::refusals(&rd);
            if let Ok((gens, _)) = rd.generations() {
                r.generations = gens.len();
                r.generation_list = gens.iter().map(summary).collect();
                if let Some(first) = gens.first() {
                    r.oldest_point = Some(history::time_of(first.base.taken_ms));
                }
                r.encrypted_to = gens.last().and_then(|g| g.base.encrypted_to.clone());
                if let Some(g) = gens.last().filter(|_| offline) {
                    let tail = tail_of(g);
                    r.up = true;
                    r.shipped_seq = tail.seq;
                    r.shipped_commit_ms = tail.ms;
                    r.shipped_ledger = tail.ledger;
                    r.foreign_tail = foreign(&tail, st);
                }
            }
            if r.shipped_commit_ms > 0 {
                r.newest_point = Some(history::time_of(r.shipped_commit_ms));
            }
        }
        Err(p) => {
            r.up = false;
            r.refused |= matches!(p, DirProblem::NotOwner { .. } | DirProblem::Foreign { .. });
            if let DirProblem::NotOwner { owner, .. } = &p {
                r.owner = Some(owner.place.describe());
                r.epoch = owner.epoch;
            }
            r.problem.get_or_insert_with(|| p.message(dir));
        }
    }
}

/// How far the replica is behind the database: commits, bytes and the age of the oldest
/// commit it lacks.
fn measure_lag(r: &mut ReplicaReport, conn: &rusqlite::Connection, offline: bool) {
    let (pending_bytes, oldest_ms): (f64, Option<i64>) = conn
        .query_row(
            "SELECT total(length(changeset)), min(committed_ms) FROM replica_log",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap_or((0.0, None));
    r.lag_commits = (r.local_seq - r.shipped_seq).max(0);
    // Bytes of the commits the replica lacks (replica_log may also hold shipped ones not yet
    // pruned; those do not count).
    r.lag_bytes = if r.lag_commits == 0 {
        0
    } else {
        conn.query_row(
            "SELECT total(length(changeset)) FROM replica_log WHERE seq > ?1",
            [r.shipped_seq],
            |row| row.get::<_, f64>(0),
        )
        .unwrap_or(pending_bytes) as u64
    };
    let now = capture::now_ms();
    r.lag_seconds = if r.lag_commits == 0 {
        0.0
    } else {
        let oldest: Option<i64> = conn
            .query_row(
                "SELECT min(committed_ms) FROM replica_log WHERE seq > ?1",
                [r.shipped_seq],
                |row| row.get(0),
            )
            .ok()
            .flatten()
            .or(oldest_ms);
        oldest.map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0)
    };
    if offline && r.lag_seconds * 1000.0 > r.max_lag_ms as f64 {
        r.behind_since_ms = Some(now - (r.lag_seconds * 1000.0) as i64 + r.max_lag_ms as i64);
    }
}

fn summary(g: &super::dir::Generation) -> GenerationSummary {
    GenerationSummary {
        number: g.number,
        taken: history::time_of(g.base.taken_ms),
        seq: g.base.seq,
        reason: g.base.reason.clone(),
        continues: g.base.continues,
        encrypted: g.sealed(),
    }
}

/// What is wrong when the replica's last record is not this database's commit of that number
/// (`None` when it is, or when the replica is simply behind).
fn foreign(tail: &Tail, st: &capture::State) -> Option<String> {
    // One record ahead that chains from our last commit: a strict commit shipped whose COMMIT
    // failed or is still under way; the shipper removes it.
    let theirs = tail.seq > st.seq + 1
        || (tail.seq == st.seq + 1 && tail.prev != Some(st.last_hash))
        || (tail.seq == st.seq && tail.hash.is_some_and(|h| h != st.last_hash));
    if !theirs {
        return None;
    }
    Some(format!(
        "the replica's newest point (commit {} at {}) is not this database's newest commit ({}): another database wrote to it. `--latest` would restore that database, not this one; the next commit here takes a new base",
        tail.seq,
        history::time_of(tail.ms),
        st.seq
    ))
}

/// The verdict on the replica: (level, sentence), `None` when there is no replica.
///
/// Kept whole: a ladder of verdicts from the worst (refused, a foreign tail, a failed verify) to
/// ok; the first that applies wins, so the order is the logic and reads best whole.
pub fn judge(r: &ReplicaReport, now_ms: i64) -> Option<(Level, String)> {
    if !r.enabled {
        return r
            .copy
            .as_ref()
            .map(|what| (Level::Ok, format!("no replica: this file is {what}")));
    }
    if r.refused {
        let p = r
            .problem
            .as_deref()
            .unwrap_or("the replica refused this database");
        return Some((Level::Fail, p.to_string()));
    }
    if let Some(f) = &r.foreign_tail {
        return Some((Level::Fail, f.clone()));
    }
    if let Some(n) = r.refusals.first() {
        let recent = now_ms - n.at_ms < REFUSAL_FAIL_MS;
        return Some((
            if recent { Level::Fail } else { Level::Warn },
            format!(
                "{} (id {}) tried to write to this database's replica {} at {} and was refused; the replica is intact. {}",
                n.place.describe(),
                n.database_id,
                r.dir,
                n.at,
                if recent {
                    "It is still trying: point that database's [replica] dir elsewhere or run `ora replica disable --yes` there"
                } else {
                    "If it happens again, point that database's [replica] dir elsewhere or run `ora replica disable --yes` there"
                }
            ),
        ));
    }
    let minutes = |since: Option<i64>| since.map_or(0.0, |s| (now_ms - s).max(0) as f64 / 60_000.0);
    if r.last_verify_ok == Some(false) {
        return Some((
            Level::Fail,
            "the last `ora replica verify` failed; do not rely on the replica: run it again and read its problem, then see the runbook in docs/operations.md".into(),
        ));
    }
    if let Some(p) = &r.problem {
        let m = minutes(r.problem_since_ms);
        // A passing hiccup gets a minute; a directory gone, a full or read-only disk or a
        // damaged file does not mend itself, so it warns at once.
        let lasting = r.condition.is_some_and(|c| c != "unreachable");
        let level = if r.problem_since_ms.is_none() {
            // Seen by a command, not a running shipper: how long it lasts is unknown.
            Level::Warn
        } else if m >= 10.0 {
            Level::Fail
        } else if m >= 1.0 || lasting {
            Level::Warn
        } else {
            Level::Ok
        };
        return Some((
            level,
            format!(
                "{p} ({} changes, {:.0} s waiting; local writes go on{})",
                r.lag_commits,
                r.lag_seconds,
                if r.mode == "strict" {
                    ", but strict mode refuses them until it is back"
                } else {
                    ""
                }
            ),
        ));
    }
    let behind = minutes(r.behind_since_ms);
    if r.lag_seconds * 1000.0 > r.max_lag_ms as f64 && behind >= 1.0 {
        let level = if behind >= 10.0 {
            Level::Fail
        } else {
            Level::Warn
        };
        return Some((
            level,
            format!(
                "the replica is {:.0} s behind ({} changes); check the replica disk's speed and free space",
                r.lag_seconds, r.lag_commits
            ),
        ));
    }
    Some((
        Level::Ok,
        format!(
            "replica {} ({}) up to date within {:.1} s; restorable from {} to {}",
            r.dir,
            r.mode,
            r.lag_seconds,
            r.oldest_point.as_deref().unwrap_or("-"),
            r.newest_point.as_deref().unwrap_or("-")
        ),
    ))
}

/// The end of a generation: its last record (or its base).
struct Tail {
    seq: i64,
    ms: i64,
    /// The highest ledger id in the last segment's records (0: none).
    ledger: i64,
    hash: Option<[u8; 32]>,
    prev: Option<[u8; 32]>,
}

/// The end of a generation, from its last segment.
fn tail_of(g: &super::dir::Generation) -> Tail {
    let mut out = Tail {
        seq: g.base.seq,
        ms: g.base.taken_ms,
        ledger: 0,
        hash: super::base::hash_of(&g.base),
        prev: None,
    };
    for (_, path) in g.segments.iter().rev() {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let opening = history::Opening::of(None, g.sealed());
        let Ok(p) = super::format::parse_segment(&bytes, opening.as_open()) else {
            continue;
        };
        if let Some((r, _)) = p.records.last() {
            out.seq = r.seq;
            out.ms = r.committed_ms;
            out.hash = Some(r.hash);
            out.prev = Some(r.prev_hash);
            out.ledger = p
                .records
                .iter()
                .rev()
                .map(|(r, _)| r.last_ledger)
                .find(|l| *l > 0)
                .unwrap_or(0);
            break;
        }
    }
    out
}

/// Whether a path is a replica directory (has a marker), for messages.
pub fn is_replica_dir(dir: &Path) -> bool {
    dir.join(super::dir::MARKER).exists()
}
