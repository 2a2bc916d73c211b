//! `ora report monthly`: the month's review an operator (or whoever looks after the box) reads
//! once a month: database growth from the backup history, the bytes of each table and index,
//! backups made and drilled, maintenance and integrity results, movements per day and the
//! busiest skus. Reads only: one snapshot of the database and its ops_log; writes nothing.

use std::path::Path;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use super::metrics::{self, ObjectSize};
use crate::error::{Error, Result};
use crate::file::check::open_source;
use crate::file::oplog;
use crate::store::connection::Tuning;
use crate::store::ledger::{self, BusySku};

pub use crate::file::oplog::Runs;

/// The month's review.
#[derive(Debug, Clone, Serialize)]
pub struct MonthlyReport {
    /// YYYY-MM
    pub month: String,
    pub first_day: String,
    pub last_day: String,
    /// The database's size now.
    pub database_bytes: u64,
    /// Its size at the month's first and last backup (from the backup history).
    pub size_at_first_backup: Option<u64>,
    pub size_at_last_backup: Option<u64>,
    /// Growth between those two backups, per day.
    pub growth_bytes_per_day: Option<f64>,
    /// The largest tables and indexes.
    pub largest: Vec<ObjectSize>,
    /// When they were measured: by the last weekly maintenance (which reads every page anyway),
    /// or `None` when this report measured them itself.
    pub largest_as_of: Option<String>,
    pub backups: Runs,
    pub drills: Runs,
    pub daily_maintenance: Runs,
    pub weekly_maintenance: Runs,
    /// Integrity results recorded in the month (quick_check and integrity_check).
    pub integrity_checks: Runs,
    pub verify: Runs,
    /// Movements per day, every day of the month up to today.
    pub movements_per_day: Vec<(String, i64)>,
    pub movements: i64,
    pub busiest_skus: Vec<BusySku>,
    /// Statements seen slower than `[database] slow_ms` since the month began, slowest first.
    pub slow_statements: Vec<crate::store::slowlog::SlowStatement>,
}

/// Parses `YYYY-MM` (or takes this month) into its first and last day.
fn month_range(month: Option<&str>) -> Result<(NaiveDate, NaiveDate)> {
    let first = match month {
        None => {
            let t = crate::clock::local_now().date_naive();
            NaiveDate::from_ymd_opt(t.year(), t.month(), 1)
        }
        Some(m) => NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d").ok(),
    }
    .ok_or_else(|| {
        Error::usage(format!(
            "--month {:?} is not a month; write it as YYYY-MM, for example 2026-11",
            crate::model::clip(month.unwrap_or_default())
        ))
    })?;
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or_else(|| Error::usage("--month is out of range"))?;
    Ok((first, next.pred_opt().unwrap_or(first)))
}

/// The month's movements per day (every day up to today), their total and the `n` busiest
/// skus, read from the ledger.
fn read_ledger(
    conn: &rusqlite::Connection,
    first: NaiveDate,
    last: NaiveDate,
    from: &str,
    to: &str,
    n: u32,
) -> Result<LedgerMonth> {
    let today = crate::clock::local_now().date_naive();
    let until = if last > today { today } else { last };
    let counts: std::collections::HashMap<String, i64> =
        ledger::per_day(conn, from, to)?.into_iter().collect();
    let movements_per_day = first
        .iter_days()
        .take_while(|d| *d <= until)
        .map(|d| {
            let k = d.format("%Y-%m-%d").to_string();
            let n = counts.get(&k).copied().unwrap_or(0);
            (k, n)
        })
        .collect();
    Ok(LedgerMonth {
        movements_per_day,
        movements: counts.values().sum(),
        busiest: ledger::busiest(conn, from, to, n)?,
    })
}

/// The least time between the first and last backup that a growth rate is taken over.
const GROWTH_SPAN_MS: i64 = 7 * 86_400_000;

/// This month's ledger figures, when the caller keeps them itself (the status page).
pub struct LedgerMonth {
    pub movements_per_day: Vec<(String, i64)>,
    pub movements: i64,
    pub busiest: Vec<BusySku>,
}

/// This month's review without the table sizes, its ledger figures from `ledger` when given
/// (the status page's kept sums) instead of a read of the month's movements.
pub fn monthly_with(
    db: &Path,
    tuning: &Tuning,
    ledger: Option<LedgerMonth>,
) -> Result<MonthlyReport> {
    review(db, tuning, None, false, ledger)
}

/// Sizes recorded by a weekly maintenance older than this are measured again.
const RECORDED_SIZES_DAYS: i64 = 8;

/// The largest tables and indexes: as the last weekly maintenance measured them when it ran
/// within [`RECORDED_SIZES_DAYS`] (measuring reads every page of the file: 2 s at 3.3 GB, and
/// growing with it), else measured now. A record that cannot be read is measured again.
fn largest(conn: &rusqlite::Connection) -> Result<(Vec<ObjectSize>, Option<String>)> {
    let recorded = oplog::newest_list(conn, "maintain_weekly", "largest")?;
    if let Some((when, list)) = recorded {
        let fresh = chrono::DateTime::parse_from_rfc3339(&when).is_ok_and(|t| {
            crate::clock::now().signed_duration_since(t)
                < chrono::Duration::days(RECORDED_SIZES_DAYS)
        });
        if let (true, Ok(sizes)) = (fresh, serde_json::from_str::<Vec<ObjectSize>>(&list)) {
            return Ok((sizes, Some(when)));
        }
    }
    let mut sizes = metrics::object_sizes(conn)?;
    sizes.truncate(super::maintain::LARGEST_KEPT);
    Ok((sizes, None))
}

/// The review of `month` (this month when `None`). `with_sizes` adds the table and index sizes
/// (the status page leaves them out): the last weekly maintenance's, or measured now.
pub fn monthly(
    db: &Path,
    tuning: &Tuning,
    month: Option<&str>,
    with_sizes: bool,
) -> Result<MonthlyReport> {
    review(db, tuning, month, with_sizes, None)
}

fn review(
    db: &Path,
    tuning: &Tuning,
    month: Option<&str>,
    with_sizes: bool,
    kept: Option<LedgerMonth>,
) -> Result<MonthlyReport> {
    let (first, last) = month_range(month)?;
    let (from, to) = (
        first.format("%Y-%m-%d").to_string(),
        last.format("%Y-%m-%d").to_string(),
    );
    let conn = open_source(db, tuning, "report")?;
    let sql = |e| crate::store::StoreError::sqlite("report", e);
    conn.execute_batch("BEGIN").map_err(sql)?;
    let runs = oplog::month_runs(&conn, &from, &to)?;
    let get = |k: &str| runs.get(k).cloned().unwrap_or_default();
    let sizes = oplog::backup_sizes(&conn, &from, &to)?;
    let growth = match (sizes.first(), sizes.last()) {
        // A rate from backups hours apart is noise: a week between them at least.
        (Some((t0, b0)), Some((t1, b1))) if *t1 - *t0 >= GROWTH_SPAN_MS => {
            let days = (*t1 - *t0) as f64 / 86_400_000.0;
            Some((*b1 as f64 - *b0 as f64) / days)
        }
        _ => None,
    };
    let kept = match kept {
        Some(k) => k,
        None => read_ledger(
            &conn,
            first,
            last,
            &from,
            &to,
            if with_sizes { 20 } else { 5 },
        )?,
    };
    let (largest, largest_as_of) = if with_sizes {
        largest(&conn)?
    } else {
        (Vec::new(), None)
    };
    let report = MonthlyReport {
        month: first.format("%Y-%m").to_string(),
        first_day: from.clone(),
        last_day: to.clone(),
        database_bytes: std::fs::metadata(db).map(|m| m.len()).unwrap_or(0),
        size_at_first_backup: sizes.first().map(|s| s.1),
        size_at_last_backup: sizes.last().map(|s| s.1),
        growth_bytes_per_day: growth,
        largest,
        largest_as_of,
        backups: get("backup"),
        drills: get("backup_verify"),
        daily_maintenance: get("maintain_daily"),
        weekly_maintenance: get("maintain_weekly"),
        integrity_checks: oplog::month_integrity(&conn, &from, &to)?,
        verify: get("verify"),
        movements_per_day: kept.movements_per_day,
        movements: kept.movements,
        busiest_skus: kept.busiest,
        slow_statements: if with_sizes {
            crate::store::slowlog::list(&conn, Some(&from), 20)?
        } else {
            Vec::new()
        },
    };
    let _ = conn.execute_batch("COMMIT");
    Ok(report)
}
