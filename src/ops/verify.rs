//! `ora verify`: the invariants of `store::invariants` on the live database, its run recorded
//! in ops_log with the point of the ledger's chain it proved. The nightly pass (`--nightly`)
//! continues from the point the last passing run proved and checks only what changed since;
//! it makes the full pass instead when a week has gone by since the last full one
//! (`oplog::FULL_PASS_EVERY_DAYS`), when no earlier run left a point, or when a trigger it
//! relies on is gone. The page check (integrity_check or quick_check) runs on a second reader
//! beside the row checks, both lined up on one state of the file by holding the write lock for
//! a moment. Reads the database only (ops_log aside).

use std::path::Path;

use crate::file::oplog;
use crate::store::Result;
pub use crate::store::{
    check_invariants as check, ChainPoint, LedgerMismatch, VerifyOptions, VerifyReport,
};

/// Which pass to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// integrity_check and every ledger row.
    Full,
    /// Only what changed since the last passing run, when that can stand in for the full pass.
    Nightly,
}

/// A run's report, and why a nightly run made the full pass (none when it did not, or when
/// the full pass was asked for).
pub struct Outcome {
    pub report: VerifyReport,
    pub full_because: Option<String>,
}

/// Verifies the database behind `store` and records the run in ops_log.
pub fn run(store: &crate::store::Store, opts: &VerifyOptions, pass: Pass) -> Result<Outcome> {
    let started = crate::model::now_utc();
    let conn = store.read()?;
    let mut opts = opts.clone();
    let full_because = match pass {
        Pass::Full => None,
        Pass::Nightly => match nightly_from(&conn)? {
            Ok(point) => {
                opts.after = Some(point);
                None
            }
            Err(why) => Some(why),
        },
    };
    drop(conn);
    let report = check_on(store, &opts)?;
    record(store.path(), &started, &report, full_because.as_deref());
    Ok(Outcome {
        report,
        full_because,
    })
}

/// Runs the pass with the page check beside the row checks (two cores, one state of the
/// file); where the two readers cannot be lined up (a read-only file), one after the other.
fn check_on(store: &crate::store::Store, opts: &VerifyOptions) -> Result<VerifyReport> {
    match store.readers_on_one_state() {
        Ok((conn, beside)) => crate::store::check_invariants_beside(&conn, beside, opts),
        Err(e) => {
            log::info!("verify: the page check runs after the rows ({e})");
            check(&*store.read()?, opts)
        }
    }
}

/// Where the nightly pass may start, or why it must be the full one.
fn nightly_from(conn: &rusqlite::Connection) -> Result<std::result::Result<ChainPoint, String>> {
    let missing = crate::store::guards_missing(conn)?;
    if !missing.is_empty() {
        return Ok(Err(format!(
            "the trigger{} {} that the nightly pass relies on {} gone (dropped behind ora's back)",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        )));
    }
    let Some(hours) = oplog::last_full_pass_hours(conn, "verify")? else {
        return Ok(Err("no full pass has been made yet".into()));
    };
    // A restored file's rows were proved as a restore proves them (a backup by its checksum,
    // a replica's base likewise): its first verify reads them all.
    let restored = oplog::recent(conn, Some("restore"), 1)?
        .first()
        .and_then(oplog::Run::hours_ago);
    if restored.is_some_and(|r| r < hours) {
        return Ok(Err(
            "the database was restored since the last full pass".into()
        ));
    }
    if hours >= (oplog::FULL_PASS_EVERY_DAYS * 24) as f64 {
        return Ok(Err(format!(
            "the weekly full pass is due (the last was {:.0} days ago)",
            hours / 24.0
        )));
    }
    let point = oplog::recent(conn, Some("verify"), 500)?
        .iter()
        .filter(|r| r.ok == Some(true))
        .find_map(|r| r.details.as_ref().and_then(|d| point_of(&d["chain_to"])));
    Ok(point.ok_or_else(|| "no earlier pass left a point to continue from".to_string()))
}

/// A recorded chain point, when it reads as one.
fn point_of(v: &serde_json::Value) -> Option<ChainPoint> {
    let id = v["id"].as_i64().filter(|i| *i >= 0)?;
    let link = v["link"].as_str()?;
    crate::fsutil::unhex(link)?;
    Some(ChainPoint {
        id,
        link: link.to_string(),
    })
}

fn record(path: &Path, started: &str, report: &VerifyReport, full_because: Option<&str>) {
    let details = serde_json::json!({
        "pass": report.pass,
        "full_because": full_because,
        "violations": report.violations().len(),
        "skus_checked": report.skus_checked,
        "ledger_rows": report.ledger_rows,
        "chain_from": report.chain_from,
        "chain_to": report.chain_to,
        "seconds": report.seconds,
        "first": report.violations().into_iter().take(5).collect::<Vec<_>>(),
        "advice": report.advice(),
        "integrity": if report.integrity.is_empty() { "ok".to_string() } else { report.integrity.join("; ") },
    });
    crate::file::oplog::record(path, "verify", started, report.ok, &details);
}
