//! Daily KPI snapshots: one row per day, upserted; fields a caller leaves out keep their value.

use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::error::{Result, SqlContext, StoreError};
use crate::model;

/// A KPI record for one day; absent fields keep what the day already has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KpiRecord {
    pub snapshot_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders_today: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipments_sent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_uploads: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_status: Option<String>,
}

/// A row of `system_kpis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kpi {
    pub snapshot_date: String,
    pub orders_today: i64,
    pub shipments_sent: i64,
    pub pending_uploads: i64,
    pub system_status: String,
    pub updated_at: String,
}

impl KpiRecord {
    pub fn validate(&self) -> std::result::Result<(), String> {
        model::validate_date("snapshot date", &self.snapshot_date)?;
        for (field, v) in [
            ("orders_today", self.orders_today),
            ("shipments_sent", self.shipments_sent),
            ("pending_uploads", self.pending_uploads),
        ] {
            if let Some(n) = v {
                model::validate_count(field, n)?;
            }
        }
        if let Some(s) = &self.system_status {
            model::validate_label("system_status", s, model::MAX_STATUS_LEN)?;
        }
        Ok(())
    }
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Kpi> {
    Ok(Kpi {
        snapshot_date: r.get(0)?,
        orders_today: r.get(1)?,
        shipments_sent: r.get(2)?,
        pending_uploads: r.get(3)?,
        system_status: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

const COLUMNS: &str =
    "snapshot_date, orders_today, shipments_sent, pending_uploads, system_status, updated_at";

/// Upserts one day's KPIs.
pub fn record(conn: &Connection, k: &KpiRecord) -> Result<Kpi> {
    k.validate().map_err(StoreError::invalid)?;
    conn.prepare_cached(
        "INSERT INTO system_kpis
             (snapshot_date, orders_today, shipments_sent, pending_uploads, system_status, updated_at)
         VALUES (?1, coalesce(?2, 0), coalesce(?3, 0), coalesce(?4, 0), coalesce(?5, 'unknown'), ?6)
         ON CONFLICT (snapshot_date) DO UPDATE SET
             orders_today = coalesce(?2, orders_today),
             shipments_sent = coalesce(?3, shipments_sent),
             pending_uploads = coalesce(?4, pending_uploads),
             system_status = coalesce(?5, system_status),
             updated_at = ?6",
    )
    .and_then(|mut st| {
        st.execute((
            &k.snapshot_date,
            k.orders_today,
            k.shipments_sent,
            k.pending_uploads,
            k.system_status.as_deref().map(str::trim),
            model::now_utc(),
        ))
    })
    .ctx("record KPIs")?;
    get(conn, &k.snapshot_date)?.ok_or_else(|| StoreError::failed("record KPIs: row vanished"))
}

/// One day's KPIs, if recorded.
pub fn get(conn: &Connection, date: &str) -> Result<Option<Kpi>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM system_kpis WHERE snapshot_date = ?1"
    ))
    .and_then(|mut st| st.query_row([date], from_row).optional())
    .ctx("read KPIs")
}

/// The most recent `limit` days, newest first.
pub fn recent(conn: &Connection, limit: u32) -> Result<Vec<Kpi>> {
    before(conn, None, limit)
}

/// The `limit` days before `day` (all days when `None`), newest first: a page of the list.
pub fn before(conn: &Connection, day: Option<&str>, limit: u32) -> Result<Vec<Kpi>> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM system_kpis WHERE snapshot_date < ?2 ORDER BY snapshot_date DESC LIMIT ?1"
        ))
        .ctx("list KPIs")?;
    let rows = st
        // "~" sorts after every date: no bound.
        .query_map((i64::from(limit), day.unwrap_or("~")), from_row)
        .ctx("list KPIs")?;
    rows.collect::<std::result::Result<Vec<_>, _>>()
        .ctx("list KPIs")
}
