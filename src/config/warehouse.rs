//! `[warehouse]`: the warehouse verdict's rules as written (each problem's level, `fail`,
//! `warn` or `off`; how long a workflow may sit unchanged; by when today's KPIs are due; the
//! site's name), checked into [`Rules`]. Reads nothing else.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ops::warehouse::{loudness, Loudness, Rules};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WarehouseSection {
    site_name: Option<String>,
    critical_stock: Option<String>,
    low_stock: Option<String>,
    workflow_failed: Option<String>,
    workflow_stuck: Option<String>,
    stuck_after_hours: Option<u32>,
    kpi_status: Option<String>,
    kpis_missing: Option<String>,
    kpis_due_hour: Option<u32>,
    stock_mismatch: Option<String>,
}

/// Checks `[warehouse]` into [`Rules`] (defaults for what is not written).
pub(crate) fn from_section(sec: &WarehouseSection) -> Result<Rules> {
    let bad = |m: String| Error::config(format!("config: warehouse.{m}"));
    let d = Rules::default();
    let level = |name: &str, given: &Option<String>, default: Loudness| -> Result<Loudness> {
        match given {
            None => Ok(default),
            Some(t) => loudness(t).map_err(|e| bad(format!("{name}: {e}"))),
        }
    };
    let stuck_after_hours = sec.stuck_after_hours.unwrap_or(d.stuck_after_hours);
    if !(1..=24 * 366).contains(&stuck_after_hours) {
        return Err(bad(format!(
            "stuck_after_hours must be from 1 to 8784, got {stuck_after_hours}"
        )));
    }
    let kpis_due_hour = sec.kpis_due_hour.unwrap_or(d.kpis_due_hour);
    if kpis_due_hour > 23 {
        return Err(bad(format!(
            "kpis_due_hour must be from 0 to 23, got {kpis_due_hour}"
        )));
    }
    let site_name = match sec.site_name.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) if n.chars().count() > 80 || n.chars().any(char::is_control) => {
            return Err(bad(format!(
                "site_name {:?} must be 1-80 characters without control characters",
                crate::model::clip(n)
            )))
        }
        Some(n) => Some(n.to_string()),
    };
    Ok(Rules {
        critical_stock: level("critical_stock", &sec.critical_stock, d.critical_stock)?,
        low_stock: level("low_stock", &sec.low_stock, d.low_stock)?,
        workflow_failed: level("workflow_failed", &sec.workflow_failed, d.workflow_failed)?,
        workflow_stuck: level("workflow_stuck", &sec.workflow_stuck, d.workflow_stuck)?,
        stuck_after_hours,
        kpi_status: level("kpi_status", &sec.kpi_status, d.kpi_status)?,
        kpis_missing: level("kpis_missing", &sec.kpis_missing, d.kpis_missing)?,
        kpis_due_hour,
        stock_mismatch: level("stock_mismatch", &sec.stock_mismatch, d.stock_mismatch)?,
        site_name,
    })
}
