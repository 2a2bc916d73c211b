//! `ora backups verify`: a restore drill on a backup without touching the live database:
//! checksum against the sidecar, decompress into a scratch directory beside the backups,
//! integrity_check and the ledger invariants on the copy, then remove the scratch copy.
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
) -> Result<DrillReport> {
    let started = crate::model::now_utc();
    let scratch = crate::fsutil::parent_dir(file);
    let r = drill(file, &scratch, allow_negative_stock, identities)?;
    if db.is_file() {
        crate::file::oplog::record(
            db,
            "backup_verify",
            &started,
            r.ok,
            &serde_json::json!({ "file": file.display().to_string(), "problem": r.problem, "seconds": r.seconds }),
        );
    }
    Ok(r)
}

pub fn drill(
    file: &Path,
    scratch_parent: &Path,
    allow_negative_stock: bool,
    identities: &super::keys::Identities,
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
    match check_copy(&copy, allow_negative_stock) {
        Ok((integrity, violations)) => {
            report.ok = integrity == "ok" && violations.is_empty();
            if !report.ok {
                report.problem = Some(if integrity != "ok" {
                    format!("integrity_check failed: {integrity}")
                } else {
                    format!("{} invariant violations", violations.len())
                });
            }
            report.integrity = integrity;
            report.violations = violations;
        }
        Err(e) => report.problem = Some(e.to_string()),
    }
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

fn check_copy(copy: &Path, allow_negative_stock: bool) -> Result<(String, Vec<String>)> {
    let conn = connection::open_plain(copy)
        .map_err(|e| StoreError::sqlite("backups verify: open the copy", e))?;
    let shown = copy.display().to_string();
    crate::store::schema::check_compatible(crate::store::schema::identify(&conn, &shown)?, &shown)?;
    let integrity = crate::file::check::pragma_check(&conn, "integrity_check")?;
    if integrity != "ok" {
        return Ok((integrity, Vec::new()));
    }
    let v = check_invariants(
        &conn,
        &VerifyOptions {
            allow_negative_stock,
            skip_integrity: true,
            skip_chain: false,
            after: None,
        },
    )?;
    Ok((integrity, v.violations()))
}
