//! What the status page shows, gathered in one place from the store, ops_log and the backup
//! directory into a plain struct that [`super::page`] renders. Reads only.

use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::server::AppState;
use crate::error::Result;
use crate::file::backup::catalog::{self, BackupFile};
use crate::file::oplog::{self, Run};
use crate::ops::health::{HealthReport, Level};
use crate::ops::warehouse::Assessment;
use crate::store::kpis::{self, Kpi};
use crate::store::products;

/// Everything on the page.
pub struct StatusData {
    pub database: String,
    /// This box's role among its lineage's boxes, when it is not a plain primary: "STANDBY
    /// of URL, N records behind" or why it takes no writes.
    pub role_line: Option<(String, Level)>,
    /// Set when the server speaks plain HTTP beyond loopback (`allow_plain_http`).
    pub plain_http: Option<String>,
    pub health: HealthReport,
    /// The site's name (`[warehouse] site_name`), shown instead of the file's path.
    pub site: Option<String>,
    pub products: i64,
    pub movements: i64,
    /// The warehouse's verdict and what it read (low stock, workflows, the newest KPIs).
    pub warehouse: Assessment,
    /// This month's review (without the table sizes), when it could be made.
    pub month: Option<crate::ops::report::MonthlyReport>,
    /// When the page was made (the clock every time on it is read against).
    pub now: chrono::DateTime<chrono::Local>,
    pub kpi_today: Option<Kpi>,
    pub backups: Vec<BackupFile>,
    pub runs: Vec<Run>,
    /// Database size (MB) over time: recorded with each backup, plus now.
    pub size_series: Vec<(String, f64)>,
    /// Movements per business day, each of the last 30 days.
    pub per_day: Vec<(String, f64)>,
    /// Units received and shipped per business day, each of the last 30 days.
    pub flow: Vec<(String, f64, f64)>,
    /// Orders against shipments sent, from the KPIs of the last 30 days (oldest first).
    pub kpi_history: Vec<(String, f64, f64)>,
    /// Backup sizes (MB), oldest first.
    pub backup_sizes: Vec<(String, f64)>,
    /// (queued, commits, applied, refused)
    pub writer: (i64, u64, u64, u64),
    pub uptime_seconds: u64,
}

/// Operations read for the history table (grouped there into fewer rows).
const RUNS_READ: u32 = 60;

/// Orders and shipments sent for each of the last 30 days, from the KPIs (0 where a day has
/// none).
fn kpi_history(conn: &Connection, today: chrono::NaiveDate) -> Result<Vec<(String, f64, f64)>> {
    let by_day: std::collections::HashMap<String, (i64, i64)> = kpis::recent(conn, 30)?
        .into_iter()
        .map(|k| (k.snapshot_date, (k.orders_today, k.shipments_sent)))
        .collect();
    if by_day.is_empty() {
        return Ok(Vec::new());
    }
    let first = today - chrono::Days::new(29);
    Ok(super::charts::days(first, today)
        .into_iter()
        .map(|(key, label)| {
            let (o, s) = by_day.get(&key).copied().unwrap_or_default();
            (label, o as f64, s as f64)
        })
        .collect())
}

/// The database's size at each of the last 60 backups (from ops_log), then now, in MB.
fn size_series(conn: &Connection, now_bytes: u64) -> Result<Vec<(String, f64)>> {
    let mut series: Vec<(String, f64)> = oplog::recent(conn, Some("backup"), 60)?
        .into_iter()
        .rev()
        .filter_map(|r| {
            let bytes = r.details.as_ref()?.get("database_bytes")?.as_f64()?;
            Some((r.started.get(..10)?.to_string(), bytes / 1e6))
        })
        .collect();
    series.push(("now".into(), now_bytes as f64 / 1e6));
    Ok(series)
}

/// Gathers the page's data.
pub fn gather(st: &AppState) -> Result<StatusData> {
    let health = super::health::report(st);
    let conn = st.store.read()?;
    let products = products::count(&conn)?;
    let movements = crate::store::ledger::last_id(&conn)?;
    // The verdict health just made, or (when it could not read the warehouse) one made now,
    // so that the page's error is the real one.
    let warehouse = match health.facts.warehouse.clone() {
        Some(w) => w,
        None => crate::ops::warehouse::assess(&conn, &st.health.warehouse)?,
    };
    let now = crate::clock::local_now();
    let today = crate::model::today();
    let today_date =
        chrono::NaiveDate::parse_from_str(&today, "%Y-%m-%d").unwrap_or_else(|_| now.date_naive());
    let runs = oplog::recent(&conn, None, RUNS_READ)?;
    let size_series = size_series(&conn, health.facts.file.size_bytes)?;
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
    let sums = super::flow::sums(&st.flow, &conn, today_date)?;
    // The month's review without its ledger reads: the kept sums have those.
    let month = crate::ops::report::monthly_with(
        st.store.path(),
        &st.store_tuning(),
        Some(crate::ops::report::LedgerMonth {
            movements_per_day: sums.month_days,
            movements: sums.month_movements,
            busiest: sums.busiest,
        }),
    )
    .ok();
    Ok(StatusData {
        database: st.store.path().display().to_string(),
        role_line: role_line(st),
        plain_http: plain_http_line(st),
        products,
        movements,
        site: st.health.warehouse.site_name.clone(),
        warehouse,
        month,
        now,
        kpi_today: kpis::get(&conn, &today)?,
        per_day: sums.per_day,
        flow: sums.flow,
        kpi_history: kpi_history(&conn, today_date)?,
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

/// A page other than the status page (a product's, the search box's), in the frame every page
/// shares: the verdicts as `/health` has them now, the site's name, the search box.
pub fn sub_page(st: &AppState, title: &str, query: &str, main: maud::Markup) -> String {
    let health = super::health::report(st);
    let house = health
        .facts
        .warehouse
        .as_ref()
        .map_or(Level::Ok, |w| w.level);
    let path = st.store.path().display().to_string();
    super::frame::Frame {
        title,
        worst: health.verdict.max(house),
        role: "",
        site: st.health.warehouse.site_name.as_deref().unwrap_or(&path),
        verdicts: super::frame::verdict_pills(
            house,
            super::frame::level_word(house),
            health.verdict,
        ),
        refresh: false,
        query,
        now: crate::clock::local_now(),
    }
    .render(main)
}

/// The warning of a server speaking plain HTTP beyond loopback.
fn plain_http_line(st: &AppState) -> Option<String> {
    st.plain_beyond_loopback().then(|| {
        format!(
            "PLAIN HTTP on {}: tokens and data cross the network in clear (server.allow_plain_http). Set server.tls_cert and server.tls_key (`ora tls selfsigned` makes a pair)",
            st.server.bind
        )
    })
}

/// The line the page leads with on a standby or a fenced old primary.
fn role_line(st: &AppState) -> Option<(String, Level)> {
    let n = st.node.status(&st.store).ok()?;
    if !n.fenced.is_empty() {
        return Some((
            format!("NOT THE PRIMARY: {} (takes no writes)", n.fenced),
            Level::Fail,
        ));
    }
    if n.role != "standby" {
        return None;
    }
    let f = n.follower.as_ref();
    let state = f.map_or("starting", |f| f.state);
    let lag = f.map_or(0, |f| f.lag_records);
    let level = if state == "following" {
        Level::Ok
    } else {
        Level::Warn
    };
    Some((
        format!(
            "STANDBY of {}: {state}, {} behind (epoch {}); writes go to the primary, `ora promote` makes this box the primary",
            n.primary_url,
            crate::model::plural(usize::try_from(lag).unwrap_or(0), "record", "records"),
            n.epoch
        ),
        level,
    ))
}
