//! What the status page shows, gathered in one place from the store, ops_log and the backup
//! directory into a plain struct that [`super::page`] renders. Reads only.

use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::server::AppState;
use crate::error::Result;
use crate::ops::backup::catalog::{self, BackupFile};
use crate::ops::health::HealthReport;
use crate::ops::oplog::{self, Run};
use crate::store::catalog::{self as products, Product};
use crate::store::error::{SqlContext, StoreError};
use crate::store::kpis::{self, Kpi};
use crate::store::workflows::{self, Workflow};

/// Everything on the page.
pub struct StatusData {
    pub database: String,
    pub generated: String,
    pub health: HealthReport,
    pub products: i64,
    pub movements: i64,
    pub low_stock: Vec<Product>,
    pub workflows: Vec<Workflow>,
    pub today: String,
    pub kpi_today: Option<Kpi>,
    pub backups: Vec<BackupFile>,
    pub runs: Vec<Run>,
    /// Database size (MB) over time: recorded with each backup, plus now.
    pub size_series: Vec<(String, f64)>,
    /// Movements per business day, last 30 days.
    pub per_day: Vec<(String, f64)>,
    /// Backup sizes (MB), oldest first.
    pub backup_sizes: Vec<(String, f64)>,
    /// (queued, commits, applied, refused)
    pub writer: (i64, u64, u64, u64),
    pub uptime_seconds: u64,
}

/// Rows of the low-stock table shown at most.
const LOW_STOCK_ROWS: usize = 50;

fn per_day(conn: &Connection, since: &str) -> Result<Vec<(String, f64)>> {
    let mut st = conn
        .prepare_cached(
            "SELECT date, count(*) FROM inventory_transactions WHERE date >= ?1 GROUP BY date ORDER BY date",
        )
        .ctx("status: movements per day")?;
    let rows = st
        .query_map([since], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as f64))
        })
        .ctx("status: movements per day")?;
    Ok(rows
        .collect::<std::result::Result<_, _>>()
        .ctx("status: movements per day")?)
}

/// Gathers the page's data.
pub fn gather(st: &AppState) -> Result<StatusData> {
    let health = super::health::report(st);
    let conn = st.store.read()?;
    let count = |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map_err(|e| StoreError::sqlite("status", e))
    };
    let products = count("SELECT count(*) FROM inventory_current")?;
    let movements = count("SELECT coalesce(max(id), 0) FROM inventory_transactions")?;
    let mut low_stock = products::list(&conn, true)?;
    low_stock.truncate(LOW_STOCK_ROWS);
    let today = crate::model::today();
    let since = (chrono::Local::now() - chrono::Duration::days(29))
        .format("%Y-%m-%d")
        .to_string();
    let runs = oplog::recent(&conn, None, 15)?;
    let mut size_series: Vec<(String, f64)> = oplog::recent(&conn, Some("backup"), 60)?
        .into_iter()
        .rev()
        .filter_map(|r| {
            let bytes = r.details.as_ref()?.get("database_bytes")?.as_f64()?;
            Some((r.started.get(..10)?.to_string(), bytes / 1e6))
        })
        .collect();
    size_series.push(("now".into(), health.facts.file.size_bytes as f64 / 1e6));
    let backups = if st.backup.dir.is_dir() {
        catalog::list(&st.backup.dir, st.store.path()).unwrap_or_default()
    } else {
        Vec::new()
    };
    let backup_sizes = backups
        .iter()
        .take(30)
        .rev()
        .map(|b| {
            (
                b.taken.format("%m-%d %H:%M").to_string(),
                b.bytes as f64 / 1e6,
            )
        })
        .collect();
    let w = st.store.writer().ok().map(|w| w.stats().clone());
    Ok(StatusData {
        database: st.store.path().display().to_string(),
        generated: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        products,
        movements,
        low_stock,
        workflows: workflows::list(&conn)?,
        kpi_today: kpis::get(&conn, &today)?,
        today,
        per_day: per_day(&conn, &since)?,
        runs,
        size_series,
        backups: backups.into_iter().take(10).collect(),
        backup_sizes,
        writer: w.map_or((0, 0, 0, 0), |s| {
            (
                s.queued.load(Ordering::Relaxed),
                s.commits.load(Ordering::Relaxed),
                s.applied.load(Ordering::Relaxed),
                s.refused.load(Ordering::Relaxed),
            )
        }),
        uptime_seconds: st.started.elapsed().as_secs(),
        health,
    })
}
