//! The warehouse's verdict, apart from the database's: what needs a person's attention today.
//! Products at or below zero (fail) or at or below their reorder point (warn), failed
//! workflows (fail), KPIs not recorded since yesterday (warn), each a sentence. One
//! computation for the page, `ora health` and `/health` (their `warehouse` object, which never
//! changes the database's verdict or the status code) and `/metrics`; [`assess`] reads the
//! database, [`verdict`] is pure.
//! Never writes.

use rusqlite::Connection;

use crate::error::Result;
use crate::model::Level;
use crate::store::workflows::Workflow;
use crate::words::{self, Meaning};

/// What the verdict is made of.
pub struct Inputs<'a> {
    pub critical: usize,
    pub low: usize,
    pub workflows: &'a [Workflow],
    /// The newest day with KPIs recorded.
    pub kpi_latest: Option<&'a str>,
    pub today: chrono::NaiveDate,
}

/// The warehouse as `ora health`, `/health` and `/metrics` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Assessment {
    pub level: Level,
    pub critical: usize,
    pub low: usize,
    pub failed_workflows: usize,
    /// 1 KPIs not recorded since yesterday, 0 recorded, -1 never recorded.
    pub kpi_stale: i8,
    pub reasons: Vec<(Level, String)>,
}

impl Assessment {
    /// The `warehouse` object of `/health`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "verdict": self.level,
            "reasons": self.reasons.iter().map(|(l, text)| serde_json::json!({"level": l, "text": text})).collect::<Vec<_>>(),
            "products_critical": self.critical,
            "products_low": self.low,
            "workflows_failed": self.failed_workflows,
            "kpis_stale": self.kpi_stale,
        })
    }
}

/// The verdict and its reasons, worst first in the order the page lists them.
pub fn verdict(i: &Inputs<'_>) -> (Level, Vec<(Level, String)>) {
    let mut items = Vec::new();
    let plural = crate::model::plural;
    if i.critical > 0 {
        items.push((
            Level::Fail,
            format!(
                "{} at or below zero (critical)",
                plural(i.critical, "product is", "products are")
            ),
        ));
    }
    if i.low > 0 {
        items.push((
            Level::Warn,
            format!(
                "{} at or below the reorder point",
                plural(i.low, "product is", "products are")
            ),
        ));
    }
    let failed = failed(i.workflows);
    if !failed.is_empty() {
        items.push((
            Level::Fail,
            format!(
                "{} failed: {}",
                plural(failed.len(), "workflow", "workflows"),
                failed.join(", ")
            ),
        ));
    }
    if let Some(latest) = i.kpi_latest.filter(|l| stale(l, i.today)) {
        items.push((
            Level::Warn,
            format!(
                "KPIs are stale: last recorded {}",
                words::day(latest, i.today)
            ),
        ));
    }
    let level = items.iter().map(|(l, _)| *l).max().unwrap_or(Level::Ok);
    (level, items)
}

fn failed(workflows: &[Workflow]) -> Vec<&str> {
    workflows
        .iter()
        .filter(|w| words::meaning(&w.status) == Meaning::Failed)
        .map(|w| w.name.as_str())
        .collect()
}

/// KPIs last recorded before yesterday.
fn stale(latest: &str, today: chrono::NaiveDate) -> bool {
    !chrono::NaiveDate::parse_from_str(latest, "%Y-%m-%d")
        .is_ok_and(|k| today.pred_opt().is_some_and(|y| k >= y))
}

/// Reads what the verdict needs and makes it.
pub fn assess(conn: &Connection) -> Result<Assessment> {
    let low_stock = crate::store::products::list(conn, true)?;
    let critical = low_stock
        .iter()
        .filter(|p| p.alert_level == "critical")
        .count();
    let low = low_stock.len() - critical;
    let workflows = crate::store::workflows::list(conn)?;
    let kpi_latest = crate::store::kpis::recent(conn, 1)?
        .into_iter()
        .next()
        .map(|k| k.snapshot_date);
    let today = chrono::NaiveDate::parse_from_str(&crate::model::today(), "%Y-%m-%d")
        .unwrap_or_else(|_| crate::clock::local_now().date_naive());
    let (level, reasons) = verdict(&Inputs {
        critical,
        low,
        workflows: &workflows,
        kpi_latest: kpi_latest.as_deref(),
        today,
    });
    Ok(Assessment {
        level,
        critical,
        low,
        failed_workflows: failed(&workflows).len(),
        kpi_stale: match kpi_latest.as_deref() {
            None => -1,
            Some(l) => i8::from(stale(l, today)),
        },
        reasons,
    })
}
