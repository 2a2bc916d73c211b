//! `ora health`: is the database all right? Gathers facts (file, size, WAL, free pages, a
//! quick_check or full integrity_check, the newest backup and whether its drill passed, the
//! last maintenance) and judges them with [`judge`], a pure function, into ok / warn / fail
//! with one sentence per finding. Reads only (apart from its ops_log line).
//! One piece: the facts and the judgment of one verdict, kept side by side so that a new fact
//! is judged where it is gathered.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::Serialize;

use crate::error::Result;
use crate::file::backup::catalog;
use crate::file::oplog;
use crate::ops::metrics::FileStats;
use crate::store::connection::Tuning;
use crate::store::StoreError;

/// Thresholds of the verdict.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// integrity_check instead of quick_check.
    pub full: bool,
    pub backup_dir: PathBuf,
    /// How long backups are kept (for when the backup disk will be full).
    pub keep: crate::file::backup::catalog::Keep,
    /// A newest backup older than this fails the check.
    pub max_backup_age_hours: u32,
    /// Maintenance older than this is a warning.
    pub max_maintenance_age_hours: u32,
    /// A WAL larger than this is a warning (checkpoints are not keeping up).
    pub max_wal_bytes: u64,
    /// More free pages than this is a warning (the weekly VACUUM should reclaim them).
    pub max_free_percent: f64,
    /// Undelivered changes in the outbox above this fail the check (the remote alarm).
    pub outbox_cap: u64,
    /// A remote target further behind than this is a warning.
    pub max_lag_seconds: u64,
    /// The replica's settings (its lag limit, its directory).
    pub replica: crate::replica::ReplicaConfig,
    /// The warehouse's rules (`[warehouse]`).
    pub warehouse: super::warehouse::Rules,
}

impl HealthOptions {
    pub fn for_db(db: &Path) -> HealthOptions {
        HealthOptions {
            full: false,
            backup_dir: crate::fsutil::parent_dir(db).join("backups"),
            keep: crate::file::backup::BackupOptions::for_db(db).keep(),
            max_backup_age_hours: 36,
            max_maintenance_age_hours: 48,
            max_wal_bytes: 1 << 30,
            max_free_percent: 50.0,
            outbox_cap: 1_000_000,
            max_lag_seconds: 300,
            replica: crate::replica::ReplicaConfig::default(),
            warehouse: super::warehouse::Rules::default(),
        }
    }
}

pub use crate::model::Level;

/// One sentence about one aspect.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub level: Level,
    pub check: &'static str,
    pub message: String,
}

/// An age for people: "just now", "12 min ago", "5 h ago", "3 days ago".
pub fn ago(hours: f64) -> String {
    let minutes = (hours * 60.0).max(0.0);
    if minutes < 1.0 {
        "just now".into()
    } else if minutes < 60.0 {
        format!("{:.0} min ago", minutes.floor())
    } else if hours < 48.0 {
        format!("{:.0} h ago", hours.floor())
    } else {
        format!("{:.0} days ago", (hours / 24.0).floor())
    }
}

/// The newest backup file.
#[derive(Debug, Clone, Serialize)]
pub struct LastBackup {
    pub file: String,
    pub age_hours: f64,
    pub bytes: u64,
    /// The latest drill of this file, if any.
    pub verified: Option<bool>,
}

/// The latest maintenance run.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub kind: String,
    pub age_hours: f64,
    pub ok: bool,
}

/// The facts health judges.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Facts {
    pub exists: bool,
    /// Why the database could not be opened, if it could not.
    pub open_error: Option<String>,
    #[serde(flatten)]
    pub file: FileStats,
    /// "quick_check" or "integrity_check".
    pub check_kind: String,
    /// Its result ("ok" or messages); empty when not run.
    pub check: String,
    pub last_backup: Option<LastBackup>,
    /// The last backup run failed after the last success: its error.
    pub last_backup_error: Option<String>,
    /// `ora backup` succeeded before (ops_log says so), but the backup directory holds no
    /// backup of this database now: what is wrong with it.
    pub backups_missing: Option<String>,
    /// When the backup directory's disk will be full at the current rate (none without a
    /// backup, or when its free space cannot be read).
    pub backup_space: Option<crate::file::backup::forecast::Forecast>,
    /// How long ago `ora backup` last succeeded into the backup directory, by ops_log.
    pub last_backup_ok_hours: Option<f64>,
    pub last_maintenance: Option<LastRun>,
    /// The remote targets' state (empty when none is configured).
    pub remotes: Vec<crate::remote::outbox::TargetStatus>,
    /// Changes waiting in the outbox.
    pub outbox_rows: i64,
    /// The continuous replica (None when there is none).
    pub replica: Option<crate::replica::status::ReplicaReport>,
    /// When the facts were gathered (ms since 1970).
    pub gathered_ms: i64,
    /// Why this user cannot write the database, if it cannot (writes would fail).
    pub not_writable: Option<String>,
    /// Another process holds the database's write lock (live checks only): who.
    pub write_lock_holder: Option<String>,
    /// How old the oldest ledger movement is (none: an empty ledger).
    pub oldest_data_hours: Option<f64>,
    /// The last `ora verify` run (none: never run).
    pub last_verify: Option<LastRun>,
    /// What the last `ora verify` found (its first violations) and what it advised.
    pub verify_found: Vec<String>,
    pub verify_advice: Vec<String>,
    /// For a missing database: something it could be restored from exists (a backup of it
    /// in the backup directory, or a replica in the configured replica directory).
    pub restorable: bool,
    /// The file's role among its lineage's boxes (primary, standby, fenced).
    pub role: Option<crate::store::role::Role>,
    /// How long the nightly round and the weekly full pass took, by their last runs.
    pub round: Option<super::round::Round>,
    /// The warehouse's own verdict (shown beside the database's, never part of it).
    pub warehouse: Option<super::warehouse::Assessment>,
}

/// The verdict and the facts behind it.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub verdict: Level,
    pub findings: Vec<Finding>,
    pub database: String,
    pub facts: Facts,
    pub seconds: f64,
}

impl HealthReport {
    /// Adds what a live probe of a remote target found: a target that does not answer is a
    /// warning (ora keeps every change in its outbox meanwhile).
    pub fn add_probe(&mut self, target: &str, answer: std::result::Result<String, String>) {
        let (level, message) = match answer {
            Ok(said) => (Level::Ok, format!("{target} {said}")),
            Err(why) => (
                Level::Warn,
                format!("{target} does not answer now: {why}; changes wait in the outbox"),
            ),
        };
        if level == Level::Warn && self.verdict == Level::Ok {
            self.verdict = Level::Warn;
        }
        self.findings.push(Finding {
            level,
            check: "remote",
            message,
        });
    }

    /// The one JSON shape of a health report, for `GET /health` and `ora --json health` alike:
    /// `writer` and `uptime_seconds` describe a running server (null from the command line).
    pub fn to_json(
        &self,
        writer: Option<serde_json::Value>,
        uptime_seconds: Option<u64>,
    ) -> serde_json::Value {
        let status = match self.verdict {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        let f = &self.facts;
        serde_json::json!({
            "status": status,
            "healthy": self.verdict != Level::Fail,
            "reasons": self.findings.iter().filter(|x| x.level != Level::Ok).map(|x| format!("{}: {}", x.check, x.message)).collect::<Vec<_>>(),
            "findings": self.findings,
            "database": self.database,
            "size_bytes": f.file.size_bytes,
            "wal_bytes": f.file.wal_bytes,
            "free_percent": f.file.free_percent,
            "integrity": { "check": f.check_kind, "result": f.check },
            "last_backup": f.last_backup,
            "last_maintenance": f.last_maintenance,
            "writer": writer,
            "remotes": f.remotes,
            "outbox_rows": f.outbox_rows,
            "replica": f.replica,
            "warehouse": f.warehouse.as_ref().map(super::warehouse::Assessment::to_json),
            "role": f.role.as_ref().map(|r| serde_json::json!({
                "role": r.role, "epoch": r.epoch, "primary": r.primary_url, "fenced": r.fenced,
            })),
            "uptime_seconds": uptime_seconds,
            "facts": f,
            "seconds": self.seconds,
        })
    }
}

fn hours_since(t: &str, now: DateTime<Utc>) -> Option<f64> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| (now - d.with_timezone(&Utc)).num_seconds() as f64 / 3600.0)
}

/// Findings as they are judged, one check at a time.
#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, level: Level, check: &'static str, message: String) {
        self.0.push(Finding {
            level,
            check,
            message,
        });
    }
}

/// Judges facts into findings; the verdict is the worst level.
pub fn judge(f: &Facts, o: &HealthOptions) -> (Level, Vec<Finding>) {
    let mut out = Findings::default();
    judge_file(f, &mut out);
    judge_integrity(f, &mut out);
    judge_backup(f, o, &mut out);
    judge_maintenance(f, o, &mut out);
    judge_space(f, o, &mut out);
    judge_round(f, &mut out);
    judge_remotes(f, o, &mut out);
    if let Some((level, message)) = f
        .replica
        .as_ref()
        .and_then(|r| crate::replica::status::judge(r, f.gathered_ms))
    {
        out.add(level, "replica", message);
    }
    let verdict = out.0.iter().map(|x| x.level).max().unwrap_or(Level::Ok);
    (verdict, out.0)
}

/// The file itself: there, writable, not held by another process's write lock.
fn judge_file(f: &Facts, out: &mut Findings) {
    if !f.exists && f.restorable {
        out.add(Level::Fail, "file", "the database file is missing; restore the last backup (`ora backups list`, `ora restore FILE`) or from the replica (`ora restore --from-replica DIR --latest`)".into());
    } else if !f.exists {
        out.add(Level::Fail, "file", "the database file is missing, and there is no backup or replica of it here: on a new install, create it with `ora init` (or start `ora serve`, which creates it); if it was lost, check --db, then restore it from a copy kept elsewhere (`ora restore FILE`)".into());
    } else if let Some(why) = &f.not_writable {
        out.add(
            Level::Fail,
            "file",
            format!("the database cannot be written: {why}; every write fails until the owner or mode is fixed (run ora as the owner of the file and its directory)"),
        );
    }
    if let Some(holder) = &f.write_lock_holder {
        out.add(
            Level::Warn,
            "lock",
            format!("{holder} holds the database's write lock (for at least {} s); writes wait behind it and give up after writer.lock_wait_ms", LOCK_PROBE.as_secs()),
        );
    }
}

/// Whether it opens and what the integrity check said.
fn judge_integrity(f: &Facts, out: &mut Findings) {
    if !f.exists {
    } else if let Some(e) = &f.open_error {
        out.add(
            Level::Fail,
            "file",
            format!("the database cannot be opened: {e}"),
        );
    } else if f.check != "ok" {
        out.add(
            Level::Fail,
            "integrity",
            format!("{} failed: {}; stop writers, restore the last good backup or salvage with `ora recover` (runbook: docs/operations.md)", f.check_kind, f.check),
        );
    } else if f.check_kind == "none" {
        out.add(
            newcomer(f, 48.0),
            "integrity",
            "no integrity check has run yet; run `ora health` or `ora maintain daily`".into(),
        );
    } else {
        out.add(Level::Ok, "integrity", format!("{} ok", f.check_kind));
    }
}

/// How loud "not yet" is for a job a new database cannot have had yet: all right while its
/// oldest movement is younger than `hours` (or it holds none), a warning after.
fn newcomer(f: &Facts, hours: f64) -> Level {
    match f.oldest_data_hours {
        Some(h) if h >= hours => Level::Warn,
        _ => Level::Ok,
    }
}

/// The newest backup: there, young enough, drilled; the last backup run and `ora verify`.
fn judge_backup(f: &Facts, o: &HealthOptions, out: &mut Findings) {
    match &f.last_backup {
        _ if f.backups_missing.is_some() => out.add(
            Level::Fail,
            "backup",
            f.backups_missing.clone().unwrap_or_default(),
        ),
        None => match f.oldest_data_hours {
            Some(h) if h > f64::from(o.max_backup_age_hours) => out.add(
                Level::Fail,
                "backup",
                format!("no backup has ever been taken, and the ledger holds movements from {}; run `ora backup` now and check the backup timer (`systemctl status ora-backup.timer`)", ago(h)),
            ),
            None => out.add(Level::Ok, "backup", "no backup yet, and no movement to lose; the nightly timer takes the first (or run `ora backup`)".into()),
            _ => out.add(Level::Warn, "backup", "no backup yet; run `ora backup` (the systemd timer does it nightly)".into()),
        },
        Some(b) if b.age_hours > f64::from(o.max_backup_age_hours) => out.add(
            Level::Fail,
            "backup",
            format!("the newest backup is {:.0} h old (limit {} h); check `systemctl status ora-backup` and run `ora backup`", b.age_hours, o.max_backup_age_hours),
        ),
        Some(b) if b.verified == Some(false) => out.add(
            Level::Fail,
            "backup",
            format!("the newest backup {} failed its restore drill; take a new one with `ora backup` and verify it", b.file),
        ),
        // The nightly unit drills the backup right after taking it; an hour later it should
        // have been.
        Some(b) if b.verified.is_none() && b.age_hours > 1.0 => out.add(
            Level::Warn,
            "backup",
            format!("the newest backup ({}, taken {}) has never been through a restore drill; run `ora backups verify`", b.file, ago(b.age_hours)),
        ),
        Some(b) => out.add(Level::Ok, "backup", format!("newest backup taken {}", ago(b.age_hours))),
    }
    if let Some(e) = &f.last_backup_error {
        out.add(
            Level::Warn,
            "backup",
            format!("the last backup run failed: {e}"),
        );
    }
    judge_backup_space(f, o, out);
    if let Some(v) = f.last_verify.as_ref().filter(|v| !v.ok) {
        out.add(
            Level::Fail,
            "verify",
            if f.verify_found.is_empty() {
                format!("the last `ora verify` ({}) found violations; run it to see them and follow its advice", ago(v.age_hours))
            } else {
                format!(
                    "the last `ora verify` ({}) found: {}. {}",
                    ago(v.age_hours),
                    f.verify_found.join("; "),
                    if f.verify_advice.is_empty() {
                        "Run `ora verify` for all of them and follow its advice".to_string()
                    } else {
                        format!("To mend: {}", f.verify_advice.join("; "))
                    }
                )
            },
        );
    }
}

/// A nightly round longer than this no longer fits the night.
const NIGHT_SECONDS: f64 = 4.0 * 3600.0;

/// How long the night's jobs take, job by job, and whether the nightly round fits the night.
fn judge_round(f: &Facts, out: &mut Findings) {
    use super::round::words;
    let Some(r) = &f.round else { return };
    let jobs: Vec<String> = r
        .jobs
        .iter()
        .filter_map(|j| {
            j.nightly_seconds
                .map(|s| format!("{} {}", j.kind.replace('_', " "), words(s)))
        })
        .collect();
    let text = format!(
        "the nightly round takes about {} ({}); the weekly full pass about {}",
        words(r.nightly_seconds),
        jobs.join(", "),
        words(r.full_seconds)
    );
    if r.nightly_seconds > NIGHT_SECONDS {
        out.add(
            Level::Warn,
            "round",
            format!("{text}: longer than the 4 hours a night allows; move the timers apart (`systemctl edit ora-backup.timer`) or give the box a faster disk"),
        );
    } else {
        out.add(Level::Ok, "round", text);
    }
}

/// Days of backups the backup disk has room for before a warning (and a failure).
const BACKUP_ROOM_WARN_DAYS: u32 = 30;
const BACKUP_ROOM_FAIL_DAYS: u32 = 3;

/// Whether the nightly backups will fill their disk within a month, at the current rate.
fn judge_backup_space(f: &Facts, o: &HealthOptions, out: &mut Findings) {
    let Some(s) = &f.backup_space else { return };
    let Some(days) = s.full_in_days.filter(|d| *d <= BACKUP_ROOM_WARN_DAYS) else {
        return;
    };
    let level = if days <= BACKUP_ROOM_FAIL_DAYS {
        Level::Fail
    } else {
        Level::Warn
    };
    let mb = |b: u64| b.div_ceil(1 << 20);
    out.add(
        level,
        "backup_space",
        format!(
            "the backup disk ({}) will be full in about {days} day{}: {} MB free, each backup about {} MB{}, kept daily for {} days, weekly for {} weeks, monthly for {} months; free space there, keep fewer (`[backup] keep_days`, `keep_weeks`, `keep_months`) or move `[backup] dir` to a larger disk",
            o.backup_dir.display(),
            if days == 1 { "" } else { "s" },
            mb(s.free_bytes),
            mb(s.next_backup_bytes),
            if s.growth_bytes_per_day > 0 {
                format!(" and growing {} MB a day", mb(s.growth_bytes_per_day))
            } else {
                String::new()
            },
            o.keep.days,
            o.keep.weeks,
            o.keep.months,
        ),
    );
}

/// The last maintenance run: there, succeeded, recent.
fn judge_maintenance(f: &Facts, o: &HealthOptions, out: &mut Findings) {
    match &f.last_maintenance {
        None => out.add(
            newcomer(f, f64::from(o.max_maintenance_age_hours)),
            "maintenance",
            "no maintenance has run yet; run `ora maintain daily` (the nightly timer does)".into(),
        ),
        Some(m) if !m.ok => out.add(
            Level::Warn,
            "maintenance",
            format!(
                "the last run of {} failed; see the maintenance history and the journal",
                oplog::describe(&m.kind).to_lowercase()
            ),
        ),
        Some(m) if m.age_hours > f64::from(o.max_maintenance_age_hours) => out.add(
            Level::Warn,
            "maintenance",
            format!(
                "the last maintenance ran {}; check the maintenance timers",
                ago(m.age_hours)
            ),
        ),
        Some(m) => out.add(
            Level::Ok,
            "maintenance",
            format!("{} ran {}", oplog::describe(&m.kind), ago(m.age_hours)),
        ),
    }
}

/// The WAL and the free pages of an open file.
fn judge_space(f: &Facts, o: &HealthOptions, out: &mut Findings) {
    if !f.exists || f.open_error.is_some() {
        return;
    }
    if f.file.wal_bytes > o.max_wal_bytes {
        out.add(
            Level::Warn,
            "wal",
            format!(
                "the WAL is {} MB; checkpoints are not keeping up (a long-running reader?)",
                f.file.wal_bytes >> 20
            ),
        );
    }
    if f.file.free_percent > o.max_free_percent {
        let what = if f.file.incremental_vacuum {
            "run `ora maintain daily` to give them back (in short slices; writers keep going)"
        } else {
            "run `ora maintain weekly --vacuum` in a quiet hour to give them back and let the file give them back by itself from then on (this one VACUUM holds every writer while it runs, about 10 s a GB)"
        };
        out.add(
            Level::Warn,
            "space",
            format!(
                "{:.0}% of the file is free pages; {what}",
                f.file.free_percent
            ),
        );
    }
}

/// Each remote target's state and the outbox behind them.
fn judge_remotes(f: &Facts, o: &HealthOptions, out: &mut Findings) {
    for r in &f.remotes {
        if let Some(e) = &r.last_error {
            out.add(
                Level::Warn,
                "remote",
                format!(
                    "{} is failing ({e}); changes wait in the outbox ({} behind)",
                    r.target, r.lag_rows
                ),
            );
        } else if r.lag_seconds > o.max_lag_seconds as f64 {
            out.add(
                Level::Warn,
                "remote",
                format!(
                    "{} is {:.0} s behind ({} changes)",
                    r.target, r.lag_seconds, r.lag_rows
                ),
            );
        } else {
            out.add(
                Level::Ok,
                "remote",
                format!("{} up, {} changes behind", r.target, r.lag_rows),
            );
        }
    }
    if f.outbox_rows as u64 > o.outbox_cap {
        out.add(
            Level::Fail,
            "remote",
            format!(
                "the outbox holds {} undelivered changes (cap {}): a remote target has been down too long; nothing is lost, fix the target",
                f.outbox_rows, o.outbox_cap
            ),
        );
    }
}

/// How the integrity part of the facts is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// Run quick_check (or integrity_check with `full`) now.
    Live,
    /// Use the newest result recorded in ops_log (cheap: for /health, polled often).
    Recorded,
}

/// Gathers the facts about `db`.
///
/// Kept whole: one fact after another from one connection, each a few lines; a failure on the way
/// becomes a fact (the open error) rather than an error, which the closure around them keeps in one
/// place.
pub fn gather(
    db: &Path,
    o: &HealthOptions,
    tuning: &Tuning,
    mode: CheckMode,
    replica_live: Option<crate::replica::ship::Status>,
) -> Facts {
    let mut f = Facts {
        check_kind: if o.full {
            "integrity_check"
        } else {
            "quick_check"
        }
        .into(),
        gathered_ms: crate::store::capture::now_ms(),
        ..Facts::default()
    };
    if !db.exists() {
        f.restorable = catalog::list(&o.backup_dir, db).is_ok_and(|l| !l.is_empty())
            || o.replica
                .dir
                .as_deref()
                .is_some_and(crate::replica::status::is_replica_dir);
        return f;
    }
    f.exists = true;
    f.not_writable = not_writable(db);
    f.file = FileStats::sizes(db);
    let conn = match crate::file::check::open_source(db, tuning, "health") {
        Ok(c) => c,
        Err(e) => {
            f.open_error = Some(e.to_string());
            return f;
        }
    };
    let facts = (|| -> Result<()> {
        f.file
            .read_pages(&conn)
            .map_err(|e| StoreError::sqlite("health", e))?;
        let now = crate::clock::now();
        f.role = crate::store::role::read(&conn).ok();
        f.warehouse = super::warehouse::assess(&conn, &o.warehouse).ok();
        f.round = super::round::estimate(&conn).ok().flatten();
        if let Ok((remotes, rows)) = crate::remote::outbox::status(&conn) {
            f.remotes = remotes;
            f.outbox_rows = rows;
        }
        f.oldest_data_hours = crate::store::ledger::oldest_created_at(&conn)
            .ok()
            .flatten()
            .and_then(|t| hours_since(&t, now));
        f.replica = crate::replica::status::gather(&conn, db, &o.replica, replica_live)
            .ok()
            .filter(|r| r.enabled || r.copy.is_some());
        match mode {
            CheckMode::Live => {
                f.check = crate::file::check::pragma_check(&conn, &f.check_kind)?;
                if f.not_writable.is_none() {
                    f.write_lock_holder = write_lock_holder(db);
                }
            }
            CheckMode::Recorded => match oplog::last_integrity(&conn)? {
                Some((kind, at, result)) => {
                    let age = hours_since(&at, now).unwrap_or(0.0);
                    f.check_kind = format!("last check ({}, {})", kind.replace('_', " "), ago(age));
                    f.check = result;
                }
                None => {
                    f.check_kind = "none".into();
                    f.check = "ok".into();
                }
            },
        }
        gather_runs(&conn, &mut f, now, db, &o.backup_dir)?;
        let listed = catalog::list(&o.backup_dir, db);
        if let (Some(h), false) = (
            f.last_backup_ok_hours,
            listed.as_ref().is_ok_and(|l| !l.is_empty()),
        ) {
            let dir = o.backup_dir.display();
            f.backups_missing = Some(if o.backup_dir.is_dir() {
                format!("the backup directory {dir} holds no backup of this database, though `ora backup` last succeeded {}: were they moved or deleted? Take one now with `ora backup`", ago(h))
            } else {
                format!("the backup directory {dir} is gone (`ora backup` last succeeded there {}): is its disk mounted? Mount it (or fix [backup] dir) and run `ora backup`", ago(h))
            });
        }
        if let Ok(list) = listed {
            f.backup_space = crate::fsutil::available_bytes(&o.backup_dir)
                .ok()
                .and_then(|free| {
                    crate::file::backup::forecast::forecast(&list, &o.keep, now, free)
                });
            if let Some(b) = list.first() {
                let verified = oplog::recent(&conn, Some("backup_verify"), 50)?
                    .into_iter()
                    .find(|r| {
                        r.details
                            .as_ref()
                            .and_then(|d| d["file"].as_str())
                            .is_some_and(|p| Path::new(p).file_name() == b.path.file_name())
                    })
                    .and_then(|r| r.ok);
                f.last_backup = Some(LastBackup {
                    file: b.path.display().to_string(),
                    age_hours: (now - b.taken).num_seconds() as f64 / 3600.0,
                    bytes: b.bytes,
                    verified,
                });
            }
        }
        Ok(())
    })();
    if let Err(e) = facts {
        f.open_error = Some(e.to_string());
    }
    f
}

/// How long a live check waits for the write lock before it reports who holds it.
const LOCK_PROBE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why this user cannot write `db` or create files beside it, if so.
fn not_writable(db: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let check = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
        // SAFETY: access only reads the NUL-terminated path it is given.
        let rc = unsafe { libc::access(c.as_ptr(), libc::W_OK) };
        (rc != 0).then(std::io::Error::last_os_error)
    };
    if let Some(e) = check(db) {
        return Some(format!("{} is not writable ({e})", db.display()));
    }
    let dir = crate::fsutil::parent_dir(db);
    check(&dir).map(|e| {
        format!(
            "its directory {} is not writable ({e}); SQLite needs it for the -wal and -shm files",
            dir.display()
        )
    })
}

/// Who holds the write lock of `db` when it cannot be had within [`LOCK_PROBE`]: the
/// process (pid and command) that `/proc/locks` shows with the lock, else "another process".
fn write_lock_holder(db: &Path) -> Option<String> {
    let conn = crate::store::connection::open_raw(db, false).ok()?;
    conn.busy_timeout(LOCK_PROBE).ok()?;
    match conn.execute_batch("BEGIN IMMEDIATE") {
        Ok(()) => {
            let _ = conn.execute_batch("ROLLBACK");
            None
        }
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            Some(lock_owner(db).unwrap_or_else(|| "another process".into()))
        }
        Err(_) => None,
    }
}

/// The process holding the write lock of WAL database `db`, from `/proc/locks`: in WAL mode
/// a writer locks byte 120 of the `-shm` file (the WAL write lock).
fn lock_owner(db: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    const WAL_WRITE_LOCK_BYTE: &str = "120";
    let ino = std::fs::metadata(crate::file::install::companion(db, "-shm"))
        .ok()?
        .ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let me = std::process::id().to_string();
    let pid = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().filter(|w| *w != "->").collect();
        let hit = f.get(1) == Some(&"POSIX")
            && f.get(3) == Some(&"WRITE")
            && f.get(5).is_some_and(|id| id.ends_with(&format!(":{ino}")))
            && f.get(6) == Some(&WAL_WRITE_LOCK_BYTE);
        hit.then(|| f.get(4).map(|p| p.to_string())).flatten()
    })?;
    if pid == me {
        return None;
    }
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Some(format!("process {pid} ({})", crate::model::clip(&cmd)))
}

/// Whether two paths name one directory, however written (`./backups`, `backups`, absolute).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::path::absolute(a), std::path::absolute(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn gather_runs(
    conn: &Connection,
    f: &mut Facts,
    now: DateTime<Utc>,
    db: &Path,
    backup_dir: &Path,
) -> Result<()> {
    let backups = oplog::recent(conn, Some("backup"), 20)?;
    // The last backup of this database into the directory health looks at (a backup taken
    // with --dir elsewhere, or one a copy inherited from its original, is not counted).
    f.last_backup_ok_hours = backups
        .iter()
        .filter(|r| r.ok == Some(true))
        .find(|r| {
            let file = r
                .details
                .as_ref()
                .and_then(|d| d["file"].as_str())
                .map(Path::new);
            file.is_some_and(|p| {
                p.parent().is_some_and(|d| same_dir(d, backup_dir))
                    && p.file_name().is_some_and(|n| {
                        catalog::parse_name(&catalog::stem(db), &n.to_string_lossy()).is_some()
                    })
            })
        })
        .and_then(|r| hours_since(r.finished.as_deref().unwrap_or(&r.started), now));
    if let Some(last) = backups.first() {
        if last.ok == Some(false) {
            f.last_backup_error = last
                .details
                .as_ref()
                .and_then(|d| d["error"].as_str().map(str::to_string))
                .or_else(|| Some("unknown error".into()));
        }
    }
    let maint = oplog::recent(conn, Some("maintain_daily"), 1)?
        .into_iter()
        .chain(oplog::recent(conn, Some("maintain_weekly"), 1)?)
        .max_by_key(|r| r.id);
    let last_run = |r: oplog::Run| LastRun {
        age_hours: hours_since(r.finished.as_deref().unwrap_or(&r.started), now)
            .unwrap_or(f64::INFINITY),
        kind: r.kind,
        ok: r.ok.unwrap_or(false),
    };
    f.last_maintenance = maint.map(last_run);
    let verify = oplog::recent(conn, Some("verify"), 1)?.into_iter().next();
    if let Some(d) = verify.as_ref().and_then(|v| v.details.as_ref()) {
        let texts = |k: &str| -> Vec<String> {
            d.get(k)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        f.verify_found = texts("first");
        f.verify_advice = texts("advice");
    }
    f.last_verify = verify.map(last_run);
    Ok(())
}

/// Checks `db` and records the run in ops_log.
pub fn run(db: &Path, o: &HealthOptions, tuning: &Tuning) -> HealthReport {
    let t0 = Instant::now();
    let started = crate::model::now_utc();
    let facts = gather(db, o, tuning, CheckMode::Live, None);
    let (verdict, findings) = judge(&facts, o);
    let report = HealthReport {
        verdict,
        findings,
        database: db.display().to_string(),
        facts,
        seconds: t0.elapsed().as_secs_f64(),
    };
    // Its ops_log line would only wait behind the lock it just reported, or fail to write.
    let can_record =
        report.facts.write_lock_holder.is_none() && report.facts.not_writable.is_none();
    if can_record && report.facts.exists && report.facts.open_error.is_none() {
        let details = serde_json::json!({
            "verdict": report.verdict,
            "check": report.facts.check_kind,
            "integrity": report.facts.check,
            "problems": report.findings.iter().filter(|f| f.level != Level::Ok).map(|f| f.message.clone()).collect::<Vec<_>>(),
            "seconds": report.seconds,
        });
        oplog::record(
            db,
            "health",
            &started,
            report.verdict != Level::Fail,
            &details,
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Facts {
        Facts {
            exists: true,
            check_kind: "quick_check".into(),
            check: "ok".into(),
            last_backup: Some(LastBackup {
                file: "b".into(),
                age_hours: 3.0,
                bytes: 1,
                verified: Some(true),
            }),
            last_maintenance: Some(LastRun {
                kind: "maintain_daily".into(),
                age_hours: 5.0,
                ok: true,
            }),
            ..Facts::default()
        }
    }

    #[test]
    fn verdicts_follow_the_worst_finding() {
        let o = HealthOptions::for_db(Path::new("ora.db"));
        assert_eq!(judge(&healthy(), &o).0, Level::Ok);
        let mut f = healthy();
        f.check = "row 5 missing from index".into();
        assert_eq!(judge(&f, &o).0, Level::Fail);
        let mut f = healthy();
        f.last_backup.as_mut().unwrap().age_hours = 50.0;
        assert_eq!(judge(&f, &o).0, Level::Fail);
        // No backup: all right while there is nothing to lose, a warning once there is, a
        // failure once the data is older than the backup limit; a backup folder that held
        // backups and holds none now fails.
        let mut f = healthy();
        f.last_backup = None;
        f.oldest_data_hours = None;
        assert_eq!(judge(&f, &o).0, Level::Ok);
        f.oldest_data_hours = Some(2.0);
        assert_eq!(judge(&f, &o).0, Level::Warn);
        f.oldest_data_hours = Some(40.0);
        assert_eq!(judge(&f, &o).0, Level::Fail);
        f.oldest_data_hours = Some(2.0);
        f.backups_missing = Some("the backup directory /b is gone".into());
        assert_eq!(judge(&f, &o).0, Level::Fail);
        let mut f = healthy();
        f.file.free_percent = 70.0;
        assert_eq!(judge(&f, &o).0, Level::Warn);
        let f = Facts::default();
        assert_eq!(judge(&f, &o).0, Level::Fail);
    }
}
