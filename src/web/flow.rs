//! The status page's sums over the ledger's recent rows, kept up to date by adding each new
//! ledger row once: units received and shipped per day over the last 30 days (the chart),
//! movements per day, and this month's movements per sku (its busiest skus). The first page
//! reads the window (one pass over its rows by the date index), every later one only the rows
//! committed since (by id; the ledger is append-only and its ids only grow), so a page costs
//! the same at the end of a busy month as at its start. A ledger whose newest id went down
//! (another file), a new day or a new month starts the window again. Reads only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{Datelike, NaiveDate};
use rusqlite::Connection;

use crate::error::Result;
use crate::store::ledger::BusySku;

/// Days the chart covers, today included.
pub const DAYS: u32 = 30;

/// One day's sums.
#[derive(Default, Clone, Copy)]
struct Day {
    movements: i64,
    received: i64,
    shipped: i64,
}

/// The sums so far: up to which ledger id, from which day, by day, and this month's by sku.
#[derive(Default)]
pub struct Flow {
    upto: i64,
    first: String,
    month: String,
    days: BTreeMap<String, Day>,
    /// (movements, units) per sku, of the rows dated in this month.
    skus: HashMap<String, (i64, i64)>,
}

/// What the page shows from the sums.
#[derive(Debug, PartialEq)]
pub struct Sums {
    /// `(label, received, shipped)` for each of the last [`DAYS`] days ending today.
    pub flow: Vec<(String, f64, f64)>,
    /// `(label, movements)` for the same days.
    pub per_day: Vec<(String, f64)>,
    /// This month: movements per day up to today (`YYYY-MM-DD`), their total, the 5 busiest.
    pub month_days: Vec<(String, i64)>,
    pub month_movements: i64,
    pub busiest: Vec<BusySku>,
}

/// The sums for the window ending `today`, brought up to date first.
pub fn sums(cache: &Mutex<Flow>, conn: &Connection, today: NaiveDate) -> Result<Sums> {
    let month_first = today.with_day(1).unwrap_or(today);
    let window_first = today - chrono::Days::new(u64::from(DAYS - 1));
    let first = window_first.min(month_first);
    let (first_key, month_key) = (key(first), key(month_first));
    let last = crate::store::ledger::last_id(conn)?;
    let mut f = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if f.first != first_key || f.month != month_key || last < f.upto {
        *f = Flow {
            first: first_key.clone(),
            month: month_key.clone(),
            ..Flow::default()
        };
    }
    if last > f.upto || f.upto == 0 {
        for r in crate::store::ledger::by_day_and_sku(conn, &first_key, f.upto)? {
            let d = f.days.entry(r.date.clone()).or_default();
            d.movements += r.movements;
            d.received += r.received;
            d.shipped += r.shipped;
            if r.date.get(..7) == month_key.get(..7) {
                let e = f.skus.entry(r.sku).or_default();
                e.0 += r.movements;
                e.1 += r.units;
            }
        }
        f.upto = last;
    }
    Ok(read(&f, window_first, month_first, today))
}

fn key(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// The page's figures from the kept sums.
fn read(f: &Flow, window_first: NaiveDate, month_first: NaiveDate, today: NaiveDate) -> Sums {
    let window = super::charts::days(window_first, today);
    let day = |k: &str| f.days.get(k).copied().unwrap_or_default();
    let month = month_first.format("%Y-%m").to_string();
    let mut busiest: Vec<BusySku> = f
        .skus
        .iter()
        .map(|(sku, (movements, units))| BusySku {
            sku: sku.clone(),
            movements: *movements,
            units: *units,
        })
        .collect();
    busiest.sort_by(|a, b| {
        b.movements
            .cmp(&a.movements)
            .then_with(|| a.sku.cmp(&b.sku))
    });
    busiest.truncate(5);
    Sums {
        flow: window
            .iter()
            .map(|(k, label)| (label.clone(), day(k).received as f64, day(k).shipped as f64))
            .collect(),
        per_day: window
            .iter()
            .map(|(k, label)| (label.clone(), day(k).movements as f64))
            .collect(),
        month_days: super::charts::days(month_first, today)
            .into_iter()
            .map(|(k, _)| {
                let n = day(&k).movements;
                (k, n)
            })
            .collect(),
        // Every row dated in the month, a future-dated one too (as the monthly report counts).
        month_movements: f
            .days
            .iter()
            .filter(|(k, _)| k.starts_with(&month))
            .map(|(_, d)| d.movements)
            .sum(),
        busiest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TxType;
    use crate::store::ledger::{apply, Movement, Rules};

    // The sums kept across pages equal the sums read afresh and what the ledger's own queries
    // answer (movements per day, the month's busiest skus), as rows come in, back-dated and
    // future-dated ones included; a row dated before the window is not counted.
    #[test]
    fn kept_sums_equal_a_fresh_read() {
        let conn = crate::store::products::tests::test_db("A", "a", 100);
        crate::store::products::add(
            &conn,
            &crate::store::products::NewProduct {
                sku: "B".into(),
                product_name: "b".into(),
                reorder_point: 2,
                initial_quantity: 100,
            },
            None,
        )
        .unwrap();
        let today = NaiveDate::parse_from_str(&crate::model::today(), "%Y-%m-%d").unwrap();
        let day = |n: i64| key(today + chrono::Duration::days(n));
        let cache = Mutex::new(Flow::default());
        let mv = |sku, kind, q, d: String| {
            let mut m = Movement::new(sku, kind, q);
            m.date = Some(d);
            apply(&conn, &m, None, Rules::default()).unwrap();
        };
        let first = sums(&cache, &conn, today).unwrap();
        assert_eq!(first.flow.len(), DAYS as usize);
        assert_eq!(
            first.flow[DAYS as usize - 1],
            ("today".to_string(), 200.0, 0.0)
        );
        mv("A", TxType::Ship, 7, day(0));
        mv("B", TxType::Receive, 5, day(-3));
        mv("B", TxType::Receive, 1, day(0));
        mv("A", TxType::Ship, 2, day(-40));
        mv("B", TxType::Ship, 1, day(1));
        let kept = sums(&cache, &conn, today).unwrap();
        let fresh = sums(&Mutex::new(Flow::default()), &conn, today).unwrap();
        assert_eq!(kept, fresh);
        assert_eq!(kept.flow[DAYS as usize - 1].2, 7.0);
        assert_eq!(kept.flow[DAYS as usize - 4].1, 5.0);
        assert_eq!(kept.flow.iter().map(|p| p.2).sum::<f64>(), 7.0);
        let (from, to) = (
            key(today.with_day(1).unwrap()),
            key(today.with_day(1).unwrap() + chrono::Months::new(1) - chrono::Days::new(1)),
        );
        let ledger_days: HashMap<String, i64> =
            crate::store::ledger::per_day(&conn, &from, &key(today))
                .unwrap()
                .into_iter()
                .collect();
        for (k, n) in &kept.month_days {
            assert_eq!(*n, ledger_days.get(k).copied().unwrap_or(0), "{k}");
        }
        assert_eq!(
            kept.busiest,
            crate::store::ledger::busiest(&conn, &from, &to, 5).unwrap()
        );
        let month_total: i64 = crate::store::ledger::per_day(&conn, &from, &to)
            .unwrap()
            .iter()
            .map(|d| d.1)
            .sum();
        assert_eq!(kept.month_movements, month_total);
    }
}
