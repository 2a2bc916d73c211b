//! Units received and shipped per day over the last 30 days, for the status page's chart,
//! kept up to date by adding each new ledger row once: the first page reads the window (one
//! pass over its rows by the date index), every later one only the rows committed since (by
//! id; the ledger is append-only and its ids only grow). A ledger whose newest id went down
//! (another file) or a new day starts the window again. Reads only.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::NaiveDate;
use rusqlite::Connection;

use crate::error::Result;

/// Days the chart covers, today included.
pub const DAYS: u32 = 30;

/// The sums so far: up to which ledger id, from which day, by day.
#[derive(Default)]
pub struct Flow {
    upto: i64,
    first: String,
    days: BTreeMap<String, (i64, i64)>,
}

/// `(label, received, shipped)` for each of the last [`DAYS`] days ending `today`.
pub fn series(
    cache: &Mutex<Flow>,
    conn: &Connection,
    today: NaiveDate,
) -> Result<Vec<(String, f64, f64)>> {
    let first = today - chrono::Days::new(u64::from(DAYS - 1));
    let first_key = first.format("%Y-%m-%d").to_string();
    let last = crate::store::ledger::last_id(conn)?;
    let mut f = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if f.first != first_key || last < f.upto {
        *f = Flow {
            first: first_key.clone(),
            ..Flow::default()
        };
    }
    if last > f.upto || f.upto == 0 {
        for (day, received, shipped) in crate::store::ledger::flow_by_day(conn, &first_key, f.upto)?
        {
            let e = f.days.entry(day).or_default();
            e.0 += received;
            e.1 += shipped;
        }
        f.upto = last;
    }
    Ok(super::charts::days(first, today)
        .into_iter()
        .map(|(key, label)| {
            let (r, s) = f.days.get(&key).copied().unwrap_or_default();
            (label, r as f64, s as f64)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TxType;
    use crate::store::ledger::{apply, Movement, Rules};

    // The sums kept across pages equal the sums read afresh, as rows come in, back-dated ones
    // included; a row dated before the window is not counted.
    #[test]
    fn kept_sums_equal_a_fresh_read() {
        let conn = crate::store::products::tests::test_db("A", "a", 100);
        let today = NaiveDate::parse_from_str(&crate::model::today(), "%Y-%m-%d").unwrap();
        let day = |n: u64| {
            (today - chrono::Days::new(n))
                .format("%Y-%m-%d")
                .to_string()
        };
        let cache = Mutex::new(Flow::default());
        let mv = |kind, q, d: String| {
            let mut m = Movement::new("A", kind, q);
            m.date = Some(d);
            apply(&conn, &m, None, Rules::default()).unwrap();
        };
        let first = series(&cache, &conn, today).unwrap();
        assert_eq!(first.len(), DAYS as usize);
        assert_eq!(first[first.len() - 1], ("today".to_string(), 100.0, 0.0));
        mv(TxType::Ship, 7, day(0));
        mv(TxType::Receive, 5, day(3));
        mv(TxType::Ship, 2, day(40));
        let kept = series(&cache, &conn, today).unwrap();
        let fresh = series(&Mutex::new(Flow::default()), &conn, today).unwrap();
        assert_eq!(kept, fresh);
        assert_eq!(kept[kept.len() - 1].2, 7.0);
        assert_eq!(kept[kept.len() - 4].1, 5.0);
        assert_eq!(kept.iter().map(|p| p.2).sum::<f64>(), 7.0);
    }
}
