//! The warehouse's verdict, apart from the database's: what needs a person's attention now,
//! by the rules of `[warehouse]` ([`Rules`]): stock at or below zero or the reorder point, a
//! stock changed outside ora, workflows failed or stuck, the KPIs' system status, KPIs not
//! recorded. One computation for the page, `ora health` and `/health` (their `warehouse`
//! object, which never changes the database's verdict or the status code) and `/metrics`;
//! [`assess`] reads the database, [`verdict`] is pure.
//! Never writes.

mod rules;
mod verdict;

use rusqlite::Connection;

pub use rules::{loudness, Loudness, Rules};
pub use verdict::{verdict, Inputs, Reason, Subject, NAMED};

use crate::error::Result;
use crate::model::Level;
use crate::store::kpis::Kpi;
use crate::store::products::Product;
use crate::store::stock_watch::OutsideChange;
use crate::store::workflows::Workflow;
use crate::words::{self, Meaning};

/// The warehouse as the page, `ora health`, `/health` and `/metrics` show it.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub level: Level,
    pub reasons: Vec<Reason>,
    /// Products at or below zero, most urgent first.
    pub critical: Vec<Product>,
    /// Products above zero and at or below their reorder point, most urgent first.
    pub low: Vec<Product>,
    pub workflows: Vec<Workflow>,
    pub kpi_latest: Option<Kpi>,
    pub outside: Vec<OutsideChange>,
    /// 1 when the KPIs are missing by the rules, 0 when recorded, -1 when never recorded.
    pub kpi_stale: i8,
    /// 0 green, 1 amber (any status other than green or red), 2 red or failed, -1 none
    /// reported (no KPIs, or a status of `unknown`).
    pub kpi_status: i8,
}

impl Assessment {
    /// Workflows by what their status means.
    pub fn workflows_by_meaning(&self) -> [(Meaning, usize); 5] {
        let n = |m: Meaning| {
            self.workflows
                .iter()
                .filter(|w| words::meaning(&w.status) == m)
                .count()
        };
        [
            Meaning::Done,
            Meaning::Running,
            Meaning::Waiting,
            Meaning::Failed,
            Meaning::Other,
        ]
        .map(|m| (m, n(m)))
    }

    /// The reason of one kind, if there is one.
    pub fn reason(&self, code: &str) -> Option<&Reason> {
        self.reasons.iter().find(|r| r.code == code)
    }

    /// How many problems the verdict stands for (products and workflows, each once per kind).
    pub fn problems(&self) -> usize {
        self.reasons.iter().map(|r| r.count).sum()
    }

    /// The `warehouse` object of `/health` and `ora --json health`.
    pub fn to_json(&self) -> serde_json::Value {
        let stuck = self.reason("workflow_stuck").map_or(0, |r| r.count);
        serde_json::json!({
            "verdict": self.level,
            "problems": self.problems(),
            "reasons": self.reasons,
            "products_critical": self.critical.len(),
            "products_low": self.low.len(),
            "workflows_failed": self.reason("workflow_failed").map_or(0, |r| r.count),
            "workflows_stuck": stuck,
            "stock_mismatches": self.outside.len(),
            "kpis_stale": self.kpi_stale,
            "kpi_status": self.kpi_status,
        })
    }
}

impl serde::Serialize for Assessment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// Reads what the verdict needs and makes it, on the clock's now.
pub fn assess(conn: &Connection, rules: &Rules) -> Result<Assessment> {
    let (critical, low): (Vec<Product>, Vec<Product>) = crate::store::products::list(conn, true)?
        .into_iter()
        .partition(|p| p.alert_level == "critical");
    let workflows = crate::store::workflows::list(conn)?;
    let kpi_latest = crate::store::kpis::recent(conn, 1)?.into_iter().next();
    let (outside, outside_more) = crate::store::stock_watch::changed_outside(conn)?;
    let now = crate::clock::local_now();
    let inputs = Inputs {
        critical: &critical,
        low: &low,
        workflows: &workflows,
        kpi_latest: kpi_latest.as_ref(),
        outside: &outside,
        outside_more,
        now,
    };
    let (level, reasons) = verdict(rules, &inputs);
    let kpi_stale = match &kpi_latest {
        None => -1,
        Some(_) => i8::from(reasons.iter().any(|r| r.code == "kpis_missing")),
    };
    let kpi_status = verdict::kpi_colour(kpi_latest.as_ref());
    Ok(Assessment {
        level,
        reasons,
        critical,
        low,
        workflows,
        kpi_latest,
        outside,
        kpi_stale,
        kpi_status,
    })
}
