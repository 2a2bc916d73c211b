//! `ora backups verify`: a restore drill on a backup without touching the live database:
//! checksum against the sidecar, decompress into a scratch directory beside the backups,
//! integrity_check and the ledger invariants on the copy, then remove the scratch copy. The
//! nightly drill (`--nightly`) checks the copy with quick_check and proves its newest ledger
//! row is the live database's (same id, same chain link, which commits to every row before
//! it); it makes the full drill once a week, and on the first night.
//! Each drill run through [`drill_and_record`] is recorded in the database's ops_log (kind
//! `backup_verify`); [`drill`] alone records nothing (for callers that record themselves).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::catalog::{self, Checksum};
use super::source;
use crate::error::{Error, Result};
use crate::file::progress::Progress;
use crate::store::StoreError;
use crate::store::{check_invariants, VerifyOptions};
use crate::store::{connection, dbfile};

/// What a drill found for one backup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillReport {
    pub file: PathBuf,
    pub ok: bool,
    pub checksum: Checksum,
    pub database_bytes: u64,
    pub integrity: String,
    /// Ledger and foreign-key violations found in the copy.
    pub violations: Vec<String>,
    pub seconds: f64,
    /// Why the drill failed, in a sentence.
    pub problem: Option<String>,
    /// "full" or "quick" (the nightly drill).
    pub pass: &'static str,
    /// The nightly drill: the copy's newest ledger row, found the same in the live database.
    pub newest_point: Option<i64>,
}

/// How deep a drill goes.
#[derive(Debug, Clone, Copy)]
pub enum Depth<'a> {
    /// integrity_check and every invariant on the copy.
    Full,
    /// quick_check, and the copy's newest ledger row the same as in the live database `live`.
    Nightly { live: &'a Path },
}

impl Depth<'_> {
    /// The pass's name, as reports and ops_log say it.
    fn pass(self) -> &'static str {
        match self {
            Depth::Full => "full",
            Depth::Nightly { .. } => "quick",
        }
    }

    /// SQLite's check of the copy at this depth.
    fn check(self) -> &'static str {
        match self {
            Depth::Full => "integrity_check",
            Depth::Nightly { .. } => "quick_check",
        }
    }
}

/// The nightly drill, unless the full one is due (none passed within
/// [`crate::file::oplog::FULL_PASS_EVERY_DAYS`], by `db`'s ops_log), or `db` cannot be read.
pub fn nightly_depth(db: &Path) -> Depth<'_> {
    let due = connection::open_raw(db, false)
        .and_then(|conn| crate::file::oplog::full_pass_due(&conn, "backup_verify"));
    match due {
        Ok(false) => Depth::Nightly { live: db },
        _ => Depth::Full,
    }
}

/// Runs a drill on `file`, using a scratch directory inside `scratch_parent`. Problems with
/// the backup are reported in the result (`ok: false`); only failures of the drill itself
/// (no space for the scratch copy, say) are errors.
/// [`drill`], then a `backup_verify` row in `db`'s ops_log (when `db` exists) with the file,
/// the verdict and why it failed.
pub fn drill_and_record(
    db: &Path,
    file: &Path,
    allow_negative_stock: bool,
    identities: &super::keys::Identities,
    depth: Depth,
) -> Result<DrillReport> {
    let started = crate::model::now_utc();
    let scratch = crate::fsutil::parent_dir(file);
    let r = drill(file, &scratch, allow_negative_stock, identities, depth)?;
    if db.is_file() {
        crate::file::oplog::record(
            db,
            "backup_verify",
            &started,
            r.ok,
            &serde_json::json!({ "file": file.display().to_string(), "problem": r.problem, "seconds": r.seconds, "pass": r.pass, "newest_point": r.newest_point }),
        );
    }
    Ok(r)
}

pub fn drill(
    file: &Path,
    scratch_parent: &Path,
    allow_negative_stock: bool,
    identities: &super::keys::Identities,
    depth: Depth,
) -> Result<DrillReport> {
    let t0 = Instant::now();
    let mut report = DrillReport {
        file: file.to_path_buf(),
        ok: false,
        checksum: Checksum::Missing,
        database_bytes: 0,
        integrity: String::new(),
        violations: Vec::new(),
        seconds: 0.0,
        problem: None,
        pass: depth.pass(),
        newest_point: None,
    };
    report.checksum = catalog::check_sum(file)
        .map_err(|e| Error::io(format!("backups verify: read {}", file.display()), e))?;
    if let Checksum::Mismatch { .. } = report.checksum {
        report.problem = Some("the checksum does not match: the file is damaged".into());
        report.seconds = t0.elapsed().as_secs_f64();
        return Ok(report);
    }
    let scratch = tempfile::Builder::new()
        .prefix(&format!(
            "{}{}-",
            super::tidy::DRILL_PREFIX,
            std::process::id()
        ))
        .tempdir_in(scratch_parent)
        .map_err(|e| {
            Error::io(
                format!(
                    "backups verify: make a scratch directory in {}",
                    scratch_parent.display()
                ),
                e,
            )
        })?;
    let copy = scratch.path().join("drill.db");
    let extracted = dbfile::create_new(&copy)
        .map_err(|e| Error::io(format!("backups verify: create {}", copy.display()), e))
        .and_then(|mut f| {
            source::extract(
                file,
                &mut f,
                "backups verify",
                &Progress::hidden(),
                identities.as_slice(),
            )
        });
    match extracted {
        Ok(n) => report.database_bytes = n,
        Err(e) if e.kind() == crate::error::Kind::Usage => {
            report.problem = Some(e.to_string());
            report.seconds = t0.elapsed().as_secs_f64();
            return Ok(report);
        }
        Err(e) => return Err(e),
    }
    check_into(&copy, allow_negative_stock, depth, &mut report);
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// Checks the restored copy as deep as `depth` says and writes the verdict into `report`.
fn check_into(copy: &Path, allow_negative_stock: bool, depth: Depth, report: &mut DrillReport) {
    let checked = match depth {
        Depth::Full => check_copy(copy, allow_negative_stock),
        Depth::Nightly { live } => check_newest(copy, live).map(|(integrity, point, v)| {
            report.newest_point = point;
            (integrity, v)
        }),
    };
    match checked {
        Ok((integrity, violations)) => {
            report.ok = integrity == "ok" && violations.is_empty();
            if !report.ok {
                report.problem = Some(if integrity != "ok" {
                    format!("{} failed: {integrity}", depth.check())
                } else {
                    format!("{} invariant violations", violations.len())
                });
            }
            report.integrity = integrity;
            report.violations = violations;
        }
        Err(e) => report.problem = Some(e.to_string()),
    }
}

/// The copy opened, known to be an ora database this build reads.
fn open_copy(copy: &Path) -> Result<rusqlite::Connection> {
    let conn = connection::open_plain(copy)
        .map_err(|e| StoreError::sqlite("backups verify: open the copy", e))?;
    let shown = copy.display().to_string();
    crate::store::schema::check_compatible(crate::store::schema::identify(&conn, &shown)?, &shown)?;
    Ok(conn)
}

/// The copy opened, and SQLite's `check` of it.
fn open_checked(copy: &Path, check: &str) -> Result<(rusqlite::Connection, String)> {
    let conn = open_copy(copy)?;
    let integrity = crate::file::check::pragma_check(&conn, check)?;
    Ok((conn, integrity))
}

/// integrity_check and every invariant of the copy, side by side on two connections (nothing
/// else writes the scratch copy): the drill takes about the longer of the two, not their sum.
/// The invariants of a copy that fails integrity_check are not reported.
fn check_copy(copy: &Path, allow_negative_stock: bool) -> Result<(String, Vec<String>)> {
    let conn = open_copy(copy)?;
    let (integrity, verified) = crate::file::check::page_check_beside(
        copy,
        Depth::Full.check(),
        "",
        "backups verify",
        || {
            check_invariants(
                &conn,
                &VerifyOptions {
                    allow_negative_stock,
                    skip_integrity: true,
                    skip_chain: false,
                    after: None,
                },
            )
        },
    );
    let integrity = integrity?;
    if integrity != "ok" {
        return Ok((integrity, Vec::new()));
    }
    Ok((integrity, verified?.violations()))
}

/// The nightly check of a copy: quick_check, then its newest ledger row against the live
/// database's row of the same id (their chain links must agree); the integrity result, the
/// row, and what disagrees.
fn check_newest(copy: &Path, live: &Path) -> Result<(String, Option<i64>, Vec<String>)> {
    let (conn, integrity) = open_checked(copy, Depth::Nightly { live }.check())?;
    if integrity != "ok" {
        return Ok((integrity, None, Vec::new()));
    }
    let (id, link) = crate::store::chain::last(&conn)?;
    drop(conn);
    if id == 0 {
        return Ok((integrity, None, Vec::new()));
    }
    let live_conn = connection::open_raw(live, false)?;
    let theirs = crate::store::chain::link_at(&live_conn, id)?;
    drop(live_conn);
    let mut v = Vec::new();
    match theirs {
        Some(l) if l == link => {}
        Some(_) => v.push(format!(
            "the backup's ledger row {id} differs from the database's: the backup holds another ledger (or one of them was changed behind ora's back); run the full drill, `ora backups verify` without --nightly, and `ora verify`"
        )),
        None => v.push(format!(
            "the database has no ledger row {id}, the backup's newest: the backup is not of this database's ledger as it stands (restored from an older point since?)"
        )),
    }
    Ok((integrity, Some(id), v))
}
