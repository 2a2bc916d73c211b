//! The warehouse's rules, in one place (`[warehouse]` in the configuration): which problems
//! count and how loud each is (`fail`, `warn` or `off`), how long a workflow may sit in a
//! non-final state, and by when today's KPIs are due. Plain settings; reads nothing.

use crate::model::Level;

/// How loud a rule is: a level, or off.
pub type Loudness = Option<Level>;

/// The rules the warehouse verdict applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// A product at or below zero.
    pub critical_stock: Loudness,
    /// A product above zero and at or below its reorder point.
    pub low_stock: Loudness,
    /// A workflow whose status means failed.
    pub workflow_failed: Loudness,
    /// A workflow running or waiting for longer than `stuck_after_hours`.
    pub workflow_stuck: Loudness,
    pub stuck_after_hours: u32,
    /// The newest KPIs' system status other than green (red or failed at this level; amber,
    /// yellow or anything else at most a warning).
    pub kpi_status: Loudness,
    /// Today's KPIs not recorded by `kpis_due_hour` (local), or none since before yesterday.
    /// A database that never had KPIs is not told off.
    pub kpis_missing: Loudness,
    pub kpis_due_hour: u32,
    /// A stock that disagrees with its ledger after a change outside ora.
    pub stock_mismatch: Loudness,
    /// The site's name, shown in the page's header instead of the file's path.
    pub site_name: Option<String>,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            critical_stock: Some(Level::Fail),
            low_stock: Some(Level::Warn),
            workflow_failed: Some(Level::Fail),
            workflow_stuck: Some(Level::Warn),
            stuck_after_hours: 24,
            kpi_status: Some(Level::Fail),
            kpis_missing: Some(Level::Warn),
            kpis_due_hour: 12,
            stock_mismatch: Some(Level::Fail),
            site_name: None,
        }
    }
}

/// Reads a rule's loudness as written in the configuration.
pub fn loudness(text: &str) -> Result<Loudness, String> {
    match text {
        "fail" => Ok(Some(Level::Fail)),
        "warn" => Ok(Some(Level::Warn)),
        "off" => Ok(None),
        other => Err(format!(
            "{:?} is not a level: use \"fail\", \"warn\" or \"off\"",
            crate::model::clip(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_three_words() {
        assert_eq!(loudness("fail"), Ok(Some(Level::Fail)));
        assert_eq!(loudness("warn"), Ok(Some(Level::Warn)));
        assert_eq!(loudness("off"), Ok(None));
        for bad in ["", "FAIL", "error", "warn ", "ok"] {
            assert!(loudness(bad).is_err(), "{bad:?}");
        }
    }
}
