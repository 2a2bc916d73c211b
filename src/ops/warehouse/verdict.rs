//! The warehouse verdict as a pure function of what was read: one [`Reason`] per kind of
//! problem, worst first, each naming its products or workflows (the first few, then a count)
//! and saying what to do next. Counts count problems (products, workflows), not lines.
//! Reads nothing and writes nothing.

use chrono::{DateTime, Local, NaiveDate};
use serde::Serialize;

use super::rules::{Loudness, Rules};
use crate::model::{plural, Level};
use crate::store::kpis::Kpi;
use crate::store::products::Product;
use crate::store::stock_watch::OutsideChange;
use crate::store::workflows::Workflow;
use crate::words::{self, Meaning};

/// Products or workflows named in one reason's sentence; the rest are counted.
pub const NAMED: usize = 5;

/// The most characters of a workflow's details a reason repeats.
const DETAIL_CHARS: usize = 120;

/// What the verdict is made of.
pub struct Inputs<'a> {
    /// Products at or below zero, most urgent first.
    pub critical: &'a [Product],
    /// Products above zero and at or below their reorder point, most urgent first.
    pub low: &'a [Product],
    pub workflows: &'a [Workflow],
    /// The newest day with KPIs recorded.
    pub kpi_latest: Option<&'a Kpi>,
    /// Stocks changed outside ora that disagree with their ledger, and how many more skus
    /// were flagged but not confirmed.
    pub outside: &'a [OutsideChange],
    pub outside_more: usize,
    pub now: DateTime<Local>,
}

/// One thing a product or a workflow is named in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// "product" or "workflow".
    pub kind: &'static str,
    /// The sku or the workflow's name.
    pub key: String,
    /// What is wrong with it, in a few words ("Lamp: stock -2").
    pub detail: String,
}

/// One kind of problem and the things it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub level: Level,
    /// A stable name for the kind of problem: `stock_critical`, `stock_low`,
    /// `workflow_failed`, `workflow_stuck`, `kpi_status`, `kpis_missing`, `stock_mismatch`.
    pub code: &'static str,
    /// The short line ("3 products at or below zero").
    pub headline: String,
    /// The whole sentence, naming the first few subjects.
    pub text: String,
    /// What to do about it.
    pub next: String,
    /// The first [`NAMED`] subjects.
    pub subjects: Vec<Subject>,
    /// How many problems the line stands for (subjects named or not).
    pub count: usize,
}

/// The verdict: its level (the worst reason's, all good without one) and its reasons.
pub fn verdict(rules: &Rules, i: &Inputs<'_>) -> (Level, Vec<Reason>) {
    let mut out: Vec<Reason> = [
        stock(rules.critical_stock, "stock_critical", i.critical, "at or below zero",
            "receive the stock that came in (`ora stock receive SKU QTY`), or count it and record the difference (`ora stock adjust SKU QTY`)"),
        stock(rules.low_stock, "stock_low", i.low, "at or below the reorder point", "reorder them"),
        mismatch(rules.stock_mismatch, i.outside, i.outside_more),
        failed(rules.workflow_failed, i.workflows, i.now),
        stuck(rules, i.workflows, i.now),
        kpi_status(rules.kpi_status, i.kpi_latest),
        kpis_missing(rules, i.kpi_latest, i.now),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Worst first; within a level, the order above.
    out.sort_by_key(|r| std::cmp::Reverse(r.level));
    let level = out.iter().map(|r| r.level).max().unwrap_or(Level::Ok);
    (level, out)
}

/// "A, B, C and 4 more".
fn names(subjects: &[Subject], count: usize) -> String {
    let mut s: Vec<String> = subjects
        .iter()
        .map(|x| format!("{} ({})", x.key, x.detail))
        .collect();
    if count > subjects.len() {
        s.push(format!("{} more", count - subjects.len()));
    }
    match s.len() {
        0 => String::new(),
        1 => s.remove(0),
        n => format!("{} and {}", s[..n - 1].join(", "), s[n - 1]),
    }
}

fn reason(
    level: Level,
    code: &'static str,
    headline: String,
    subjects: Vec<Subject>,
    count: usize,
    next: String,
) -> Reason {
    let text = if subjects.is_empty() {
        headline.clone()
    } else {
        format!("{headline}: {}", names(&subjects, count))
    };
    Reason {
        level,
        code,
        headline,
        text,
        next,
        subjects,
        count,
    }
}

fn product(p: &Product) -> Subject {
    Subject {
        kind: "product",
        key: p.sku.clone(),
        detail: format!(
            "{}: {} in stock, reorder at {}",
            p.product_name, p.current_quantity, p.reorder_point
        ),
    }
}

fn stock(
    loud: Loudness,
    code: &'static str,
    products: &[Product],
    what: &str,
    next: &str,
) -> Option<Reason> {
    let level = loud.filter(|_| !products.is_empty())?;
    Some(reason(
        level,
        code,
        format!("{} {what}", plural(products.len(), "product", "products")),
        products.iter().take(NAMED).map(product).collect(),
        products.len(),
        next.to_string(),
    ))
}

fn mismatch(loud: Loudness, outside: &[OutsideChange], more: usize) -> Option<Reason> {
    let level = loud.filter(|_| !outside.is_empty())?;
    let subjects = outside
        .iter()
        .take(NAMED)
        .map(|c| Subject {
            kind: "product",
            key: c.sku.clone(),
            detail: format!(
                "{}: stock {} but its movements add up to {}",
                c.product_name, c.stock, c.ledger
            ),
        })
        .collect();
    let first = &outside[0].sku;
    let mut next = format!("the ledger is the record: `ora stock reconcile {first}` sets the stock back to it (one sku at a time), then count and record any difference with `ora stock adjust`");
    if more > 0 {
        next.push_str(&format!(
            "; {} more changed outside ora were not checked yet: run `ora verify`",
            plural(more, "sku", "skus")
        ));
    }
    Some(reason(
        level,
        "stock_mismatch",
        format!(
            "{} changed outside ora",
            plural(outside.len(), "stock was", "stocks were")
        ),
        subjects,
        outside.len(),
        next,
    ))
}

fn failed(loud: Loudness, workflows: &[Workflow], now: DateTime<Local>) -> Option<Reason> {
    let bad: Vec<&Workflow> = workflows
        .iter()
        .filter(|w| words::meaning(&w.status) == Meaning::Failed)
        .collect();
    let level = loud.filter(|_| !bad.is_empty())?;
    Some(reason(
        level,
        "workflow_failed",
        format!("{} failed", plural(bad.len(), "workflow", "workflows")),
        bad.iter().take(NAMED).map(|w| workflow(w, now)).collect(),
        bad.len(),
        "fix the cause, run it again, and record its new status (`ora workflow set NAME STATUS`)"
            .to_string(),
    ))
}

fn workflow(w: &Workflow, now: DateTime<Local>) -> Subject {
    let mut detail = format!("{} {}", w.status, words::when_text(&w.updated_at, now));
    if let Some(d) = w.details.as_deref().filter(|d| !d.is_empty()) {
        detail.push_str(": ");
        detail.extend(d.chars().take(DETAIL_CHARS));
        if d.chars().count() > DETAIL_CHARS {
            detail.push('…');
        }
    }
    Subject {
        kind: "workflow",
        key: w.name.clone(),
        detail,
    }
}

/// Workflows running or waiting since longer than the limit.
fn stuck(rules: &Rules, workflows: &[Workflow], now: DateTime<Local>) -> Option<Reason> {
    let limit = chrono::Duration::hours(i64::from(rules.stuck_after_hours));
    let late: Vec<&Workflow> = workflows
        .iter()
        .filter(|w| {
            matches!(
                words::meaning(&w.status),
                Meaning::Running | Meaning::Waiting
            )
        })
        .filter(|w| {
            words::parse(&w.updated_at).is_some_and(|t| now.with_timezone(&chrono::Utc) - t > limit)
        })
        .collect();
    let level = rules.workflow_stuck.filter(|_| !late.is_empty())?;
    Some(reason(
        level,
        "workflow_stuck",
        format!(
            "{} unchanged for more than {}",
            plural(late.len(), "workflow", "workflows"),
            plural(rules.stuck_after_hours as usize, "hour", "hours")
        ),
        late.iter().take(NAMED).map(|w| workflow(w, now)).collect(),
        late.len(),
        "check the job that runs it: record its status when it finishes or fails (`ora workflow set NAME STATUS`)".to_string(),
    ))
}

/// The newest KPIs' system status, when it is not green.
fn kpi_status(loud: Loudness, latest: Option<&Kpi>) -> Option<Reason> {
    let k = latest?;
    let level = match kpi_colour(Some(k)) {
        2 => loud?,
        1 => loud?.min(Level::Warn),
        _ => return None,
    };
    Some(reason(
        level,
        "kpi_status",
        format!(
            "System status {} (KPIs of {})",
            k.system_status, k.snapshot_date
        ),
        Vec::new(),
        1,
        "look at the system that reports it; the KPIs say what it counted".to_string(),
    ))
}

/// The newest KPIs' system status as a colour: 0 green, 1 amber (any word other than green or
/// red), 2 red or failed, -1 none reported (no KPIs, or `unknown`, the value when none is
/// given: no status is not a bad one).
pub fn kpi_colour(k: Option<&Kpi>) -> i8 {
    let Some(k) = k else { return -1 };
    let s = k.system_status.trim().to_lowercase();
    match words::meaning(&s) {
        _ if s.is_empty() || s == "unknown" => -1,
        Meaning::Done => 0,
        Meaning::Failed => 2,
        _ if s == "red" || s == "critical" || s == "down" => 2,
        _ => 1,
    }
}

/// Today's KPIs missing after the hour they are due, or none since before yesterday.
fn kpis_missing(rules: &Rules, latest: Option<&Kpi>, now: DateTime<Local>) -> Option<Reason> {
    let k = latest?;
    let today = now.date_naive();
    let day = NaiveDate::parse_from_str(&k.snapshot_date, "%Y-%m-%d").ok();
    if day.is_some_and(|d| d >= today) {
        return None;
    }
    let before_yesterday = day.is_none_or(|d| today.pred_opt().is_some_and(|y| d < y));
    let due = chrono::Timelike::hour(&now) >= rules.kpis_due_hour;
    if !(before_yesterday || due) {
        return None;
    }
    let level = rules.kpis_missing?;
    Some(reason(
        level,
        "kpis_missing",
        format!(
            "Today's KPIs are not recorded (last: {})",
            words::day(&k.snapshot_date, today)
        ),
        Vec::new(),
        1,
        "record them (`ora kpi record`, or PUT /api/kpis/DATE)".to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Local> {
        Local
            .with_ymd_and_hms(2026, 3, 10, h, 30, 0)
            .single()
            .expect("a plain local time")
    }

    fn kpi(date: &str, status: &str) -> Kpi {
        Kpi {
            snapshot_date: date.into(),
            orders_today: 1,
            shipments_sent: 1,
            pending_uploads: 0,
            system_status: status.into(),
            updated_at: "x".into(),
        }
    }

    fn codes(
        rules: &Rules,
        k: Option<&Kpi>,
        w: &[Workflow],
        now: DateTime<Local>,
    ) -> Vec<(&'static str, Level)> {
        let i = Inputs {
            critical: &[],
            low: &[],
            workflows: w,
            kpi_latest: k,
            outside: &[],
            outside_more: 0,
            now,
        };
        verdict(rules, &i)
            .1
            .iter()
            .map(|r| (r.code, r.level))
            .collect()
    }

    // Today's KPIs are due at the configured hour; yesterday's alone are fine before it; none
    // since before yesterday is always late; never recorded is never told off.
    #[test]
    fn kpis_are_due_by_the_hour_and_a_newcomer_is_not_told_off() {
        let r = Rules::default();
        let y = kpi("2026-03-09", "green");
        assert_eq!(codes(&r, Some(&y), &[], at(9)), []);
        assert_eq!(
            codes(&r, Some(&y), &[], at(13)),
            [("kpis_missing", Level::Warn)]
        );
        let old = kpi("2026-03-07", "green");
        assert_eq!(
            codes(&r, Some(&old), &[], at(9)),
            [("kpis_missing", Level::Warn)]
        );
        assert_eq!(codes(&r, None, &[], at(13)), []);
        let off = Rules {
            kpis_missing: None,
            ..Rules::default()
        };
        assert_eq!(codes(&off, Some(&old), &[], at(13)), []);
    }

    // Red or failed is the rule's level; amber at most a warning; green and unknown nothing.
    #[test]
    fn a_kpi_status_other_than_green_is_a_problem() {
        let r = Rules::default();
        let today = |s: &str| kpi("2026-03-10", s);
        assert_eq!(
            codes(&r, Some(&today("red")), &[], at(9)),
            [("kpi_status", Level::Fail)]
        );
        assert_eq!(
            codes(&r, Some(&today("FAILED")), &[], at(9)),
            [("kpi_status", Level::Fail)]
        );
        assert_eq!(
            codes(&r, Some(&today("amber")), &[], at(9)),
            [("kpi_status", Level::Warn)]
        );
        for fine in ["green", "ok", "unknown", ""] {
            assert_eq!(codes(&r, Some(&today(fine)), &[], at(9)), [], "{fine}");
        }
    }

    // Running or waiting longer than the limit is stuck; done or recent is not.
    #[test]
    fn workflows_sitting_too_long_are_stuck() {
        let r = Rules {
            stuck_after_hours: 2,
            ..Rules::default()
        };
        let now = at(12);
        let w = |name: &str, status: &str, hours: i64| Workflow {
            name: name.into(),
            status: status.into(),
            details: None,
            version: 1,
            updated_at: (now.with_timezone(&chrono::Utc) - chrono::Duration::hours(hours))
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
        };
        let all = [
            w("a", "running", 3),
            w("b", "pending", 5),
            w("c", "running", 1),
            w("d", "done", 9),
        ];
        let v = verdict(
            &r,
            &Inputs {
                critical: &[],
                low: &[],
                workflows: &all,
                kpi_latest: None,
                outside: &[],
                outside_more: 0,
                now,
            },
        );
        assert_eq!(v.0, Level::Warn);
        let stuck = &v.1[0];
        assert_eq!((stuck.code, stuck.count), ("workflow_stuck", 2));
        let keys: Vec<&str> = stuck.subjects.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(
            stuck
                .text
                .starts_with("2 workflows unchanged for more than 2 hours: a (running"),
            "{}",
            stuck.text
        );
    }
}
