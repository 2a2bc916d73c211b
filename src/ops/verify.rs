//! `ora verify`: the invariants of `store::invariants` on the live database, its run recorded
//! in ops_log.

use std::path::Path;

use crate::store::Result;
pub use crate::store::{check_invariants as check, LedgerMismatch, VerifyOptions, VerifyReport};

/// Verifies the database at `path` and records the run in ops_log.
pub fn run(store: &crate::store::Store, opts: &VerifyOptions) -> Result<VerifyReport> {
    let started = crate::model::now_utc();
    let conn = store.read()?;
    let report = check(&conn, opts)?;
    drop(conn);
    record(store.path(), &started, &report);
    Ok(report)
}

fn record(path: &Path, started: &str, report: &VerifyReport) {
    let details = serde_json::json!({
        "violations": report.violations().len(),
        "skus_checked": report.skus_checked,
        "ledger_rows": report.ledger_rows,
        "seconds": report.seconds,
        "first": report.violations().into_iter().take(5).collect::<Vec<_>>(),
        "advice": report.advice(),
        "integrity": if report.integrity.is_empty() { "ok".to_string() } else { report.integrity.join("; ") },
    });
    crate::file::oplog::record(path, "verify", started, report.ok, &details);
}
