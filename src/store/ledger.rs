//! The ledger: one movement = one append-only row in `inventory_transactions` plus the new
//! balance in `inventory_current`, in the caller's transaction. Refuses movements that would
//! take stock below zero (unless configured). Never commits and never deletes a ledger row.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::error::{Result, SqlContext, StoreError};
use crate::model::{self, TxType};

/// A stock movement as a caller asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Movement {
    pub sku: String,
    #[serde(rename = "type", alias = "transaction_type")]
    pub kind: TxType,
    pub quantity: i64,
    /// Business date (YYYY-MM-DD); today when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Accept a date more than a day ahead (refused by default: a typo in the year).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_future: bool,
}

impl Movement {
    pub fn new(sku: &str, kind: TxType, quantity: i64) -> Movement {
        Movement {
            sku: sku.to_string(),
            kind,
            quantity,
            date: None,
            notes: None,
            allow_future: false,
        }
    }

    /// Checks every field without touching the database.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self.problems().into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Every field's problem, each with the field's name, without touching the database.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = model::validate_sku(&self.sku) {
            out.push(("sku", e));
        }
        if let Err(e) = model::validate_quantity(self.quantity) {
            out.push(("quantity", e));
        }
        if let Some(d) = &self.date {
            let checked = model::validate_date("date", d).and_then(|()| {
                if self.allow_future {
                    Ok(())
                } else {
                    model::refuse_far_future("date", d)
                }
            });
            if let Err(e) = checked {
                out.push(("date", e));
            }
        }
        if let Some(n) = &self.notes {
            if let Err(e) = model::validate_text("notes", n, model::MAX_NOTES_LEN) {
                out.push(("notes", e));
            }
        }
        out
    }
}

/// What a committed movement did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovementResult {
    /// The ledger row's id.
    pub id: i64,
    pub sku: String,
    #[serde(rename = "type")]
    pub kind: TxType,
    pub quantity: i64,
    pub date: String,
    /// The sku's stock after this movement.
    pub new_quantity: i64,
    pub alert_level: String,
    pub created_at: String,
}

/// A ledger row as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRow {
    pub id: i64,
    pub date: String,
    pub sku: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub quantity: i64,
    pub notes: Option<String>,
    pub created_at: String,
    pub request_id: Option<String>,
    /// For a Ship that came from a shipment: its order and the lot shipped (when one was named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<String>,
    /// Who recorded it (none for rows older than the audit trail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// The most ledger rows one history read returns.
const MAX_HISTORY_ROWS: i64 = 10_000;

/// Checks a history row limit given from outside: 1 to [`MAX_HISTORY_ROWS`].
pub fn history_limit(n: i64) -> std::result::Result<u32, String> {
    if (1..=MAX_HISTORY_ROWS).contains(&n) {
        u32::try_from(n).map_err(|_| format!("limit must be from 1 to {MAX_HISTORY_ROWS}, got {n}"))
    } else {
        Err(format!(
            "limit must be from 1 to {MAX_HISTORY_ROWS}, got {n}"
        ))
    }
}

/// Rules the writer applies that are settings, not schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    /// Let Ship / Adjust Down take stock below zero.
    pub allow_negative_stock: bool,
}

/// Applies one movement in the caller's transaction. `ledger_request_id` is stored on the
/// ledger row for tracing (unique when present).
///
/// Kept whole: the checks and writes of one movement (product, sign, negative stock, overflow, the
/// audit row and its chain link, the stock update) run inside the caller's transaction in one
/// order, which is the ledger's rule; read together they show that nothing is written before every
/// check passed.
pub fn apply(
    conn: &Connection,
    m: &Movement,
    ledger_request_id: Option<&str>,
    rules: Rules,
) -> Result<MovementResult> {
    if let Some((field, e)) = m.problems().into_iter().next() {
        return Err(StoreError::invalid(e).on(field));
    }
    let current: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT current_quantity, reorder_point FROM inventory_current WHERE sku = ?1",
        )
        .and_then(|mut st| {
            st.query_row([&m.sku], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .ctx("read stock")?;
    let Some((have, reorder_point)) = current else {
        return Err(super::products::unknown(
            conn,
            &m.sku,
            &format!(
                "a new product? add it first with `ora product add {} NAME` (or POST /api/products)",
                m.sku
            ),
        )
        .on("sku"));
    };
    let delta = m.kind.sign() * m.quantity;
    let new_quantity = have.saturating_add(delta);
    if delta < 0 && new_quantity < 0 && !rules.allow_negative_stock {
        return Err(StoreError::conflict(format!(
            "not enough stock of {}: {have} on hand, {} asked; record the missing Receive or an Adjust Up first",
            m.sku, m.quantity
        ))
        .on("quantity"));
    }
    if new_quantity.abs() > model::MAX_STOCK {
        return Err(StoreError::invalid(format!(
            "stock of {} would reach {new_quantity}, above the limit of {}; check the quantity",
            m.sku,
            model::MAX_STOCK
        ))
        .on("quantity"));
    }
    let date = m.date.clone().unwrap_or_else(model::today);
    let now = model::now_utc();
    // The row is the movement's audit record: it carries who made it.
    let actor = super::audit::actor();
    // Each row is linked to the one before it (see `chain`).
    let (last_id, prev) = super::chain::last(conn)?;
    let next_id = last_id
        .checked_add(1)
        .ok_or_else(|| StoreError::failed("the ledger has run out of ids"))?;
    let link = super::chain::hash(
        &prev,
        &super::chain::Link {
            id: next_id,
            date: &date,
            sku: &m.sku,
            quantity: m.quantity,
            kind: m.kind.as_str(),
            notes: m.notes.as_deref(),
            created_at: &now,
            request_id: ledger_request_id,
            actor: actor.as_deref(),
        },
    );
    let inserted = conn
        .prepare_cached(
            "INSERT INTO inventory_transactions
                 (id, date, sku, quantity, transaction_type, notes, created_at, request_id, chain, actor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .and_then(|mut st| {
            st.insert((
                next_id,
                &date,
                &m.sku,
                m.quantity,
                m.kind.as_str(),
                &m.notes,
                &now,
                ledger_request_id,
                &link[..],
                &actor,
            ))
        });
    let id = match inserted {
        Ok(id) => id,
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            return Err(StoreError::conflict(format!(
                "a ledger row with request_id {:?} already exists; use a new request_id",
                ledger_request_id.unwrap_or_default()
            ))
            .on("request_id"))
        }
        Err(e) => return Err(StoreError::sqlite("record movement", e)),
    };
    conn.prepare_cached(
        "UPDATE inventory_current SET current_quantity = ?1, last_updated = ?2 WHERE sku = ?3",
    )
    .and_then(|mut st| st.execute((new_quantity, &now, &m.sku)))
    .ctx("update stock")?;
    Ok(MovementResult {
        id,
        sku: m.sku.clone(),
        kind: m.kind,
        quantity: m.quantity,
        date,
        new_quantity,
        alert_level: model::alert_level(new_quantity, reorder_point).to_string(),
        created_at: now,
    })
}

/// Filters for reading the ledger back, and the page of it to read.
#[derive(Debug, Clone, Default)]
pub struct LedgerQuery {
    pub sku: Option<String>,
    /// Only movements with a business date on or after this day.
    pub since: Option<String>,
    pub limit: u32,
    /// Only rows older than this id (the cursor of the next page, newest first).
    pub before: Option<i64>,
    /// Only rows newer than this id; the page is then oldest first (the cursor of a reader
    /// walking the ledger forwards while it grows).
    pub after: Option<i64>,
}

/// The ledger rows matching `q`, newest first (oldest first with `after`).
///
/// Four statements, never `(?1 IS NULL OR t.sku = ?1)`: with the OR, SQLite cannot use the
/// (sku, id) index and walks the whole ledger looking for one product's rows (seconds on a
/// large file for a product with few movements); with `t.sku = ?1` and the id bounds it reads
/// that product's page straight from the index and stops at the limit. The cursor bounds are
/// always given (`before` defaults past the newest id, `after` to 0), so any page of any sku
/// is a range read, however deep.
pub fn history(conn: &Connection, q: &LedgerQuery) -> Result<Vec<LedgerRow>> {
    rows(conn, q, i64::from(q.limit).clamp(1, MAX_HISTORY_ROWS))
}

/// The statement of one page of the ledger: for one sku or all, newest first or (walking
/// forwards) oldest first.
fn history_sql(by_sku: bool, forwards: bool) -> &'static str {
    // One statement text, four fillings: the sku condition and the direction (the planner
    // needs each written out, see `history`).
    macro_rules! page {
        ($sku:literal, $order:literal) => {
            concat!(
                "SELECT t.id, t.date, t.sku, t.transaction_type, t.quantity, t.notes, t.created_at, t.request_id, si.order_number, CASE WHEN si.sku_lot <> si.base_sku THEN si.sku_lot END, t.actor ",
                "FROM inventory_transactions AS t LEFT JOIN shipped_items AS si ON si.transaction_id = t.id ",
                "WHERE ", $sku, " AND t.id < ?3 AND t.id > ?4 AND (?2 IS NULL OR t.date >= ?2) ORDER BY t.id ", $order, " LIMIT ?5"
            )
        };
    }
    match (by_sku, forwards) {
        (true, false) => page!("t.sku = ?1", "DESC"),
        (true, true) => page!("t.sku = ?1", "ASC"),
        (false, false) => page!("?1 IS NULL", "DESC"),
        (false, true) => page!("?1 IS NULL", "ASC"),
    }
}

fn rows(conn: &Connection, q: &LedgerQuery, limit: i64) -> Result<Vec<LedgerRow>> {
    let forwards = q.after.is_some();
    let sql = history_sql(q.sku.is_some(), forwards);
    let before = q.before.unwrap_or(i64::MAX);
    let after = q.after.unwrap_or(0);
    let mut st = conn.prepare_cached(sql).ctx("read ledger")?;
    let rows = st
        .query_map((&q.sku, &q.since, before, after, limit), |r| {
            Ok(LedgerRow {
                id: r.get(0)?,
                date: r.get(1)?,
                sku: r.get(2)?,
                kind: r.get(3)?,
                quantity: r.get(4)?,
                notes: r.get(5)?,
                created_at: r.get(6)?,
                request_id: r.get(7)?,
                order: r.get(8)?,
                lot: r.get(9)?,
                actor: r.get(10)?,
            })
        })
        .ctx("read ledger")?;
    rows.collect::<std::result::Result<Vec<_>, _>>()
        .ctx("read ledger")
}

/// One page of [`history`] and whether another follows it (one row more is read to know).
pub fn page(conn: &Connection, q: &LedgerQuery) -> Result<(Vec<LedgerRow>, bool)> {
    let want = q.limit.clamp(1, MAX_HISTORY_ROWS as u32);
    let mut rows = rows(conn, q, i64::from(want) + 1)?;
    let more = rows.len() > want as usize;
    rows.truncate(want as usize);
    Ok((rows, more))
}

/// A sku's stock by its ledger just before the row `before` (all its rows when `None`): the
/// running balance a page of its history starts from. One walk of the sku's index entries.
pub fn balance_before(conn: &Connection, sku: &str, before: Option<i64>) -> Result<i64> {
    conn.prepare_cached(BALANCE_BEFORE)
        .and_then(|mut st| st.query_row((sku, before.unwrap_or(i64::MAX)), |r| r.get(0)))
        .ctx("add up a product's movements")
}

/// One business day of a sku: units received, units shipped, and the net change (every
/// kind of movement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuDay {
    pub date: String,
    pub received: i64,
    pub shipped: i64,
    pub net: i64,
}

/// A sku's days since `since`, future-dated ones included, oldest first (the product page's
/// ship rate and stock chart, in one walk of the sku's rows).
pub fn sku_days(conn: &Connection, sku: &str, since: &str) -> Result<Vec<SkuDay>> {
    let ctx = "read a product's days";
    let mut st = conn.prepare_cached(SKU_DAYS).ctx(ctx)?;
    let rows = st
        .query_map((sku, since), |r| {
            Ok(SkuDay {
                date: r.get(0)?,
                received: r.get(1)?,
                shipped: r.get(2)?,
                net: r.get(3)?,
            })
        })
        .ctx(ctx)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
}

/// One day's and one sku's movements: how many, units received, units shipped, all units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySku {
    pub date: String,
    pub sku: String,
    pub movements: i64,
    pub received: i64,
    pub shipped: i64,
    pub units: i64,
}

/// The movements dated `since` or later, summed by day and sku: all of them when `after` is 0
/// (a walk of the date index), else only the rows with an id above `after` (a walk by id:
/// the rows committed since a tally was last brought up to date).
pub fn by_day_and_sku(conn: &Connection, since: &str, after: i64) -> Result<Vec<DaySku>> {
    let sql = if after == 0 {
        BY_DAY_SKU_ALL
    } else {
        BY_DAY_SKU_AFTER
    };
    let ctx = "sum movements per day and sku";
    let mut st = conn.prepare_cached(sql).ctx(ctx)?;
    let rows = st
        .query_map((since, after), |r| {
            Ok(DaySku {
                date: r.get(0)?,
                sku: r.get(1)?,
                movements: r.get(2)?,
                received: r.get(3)?,
                shipped: r.get(4)?,
                units: r.get(5)?,
            })
        })
        .ctx(ctx)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
}

/// The id of the newest ledger row (0 for an empty ledger): the number of movements ever
/// recorded, since ids only grow.
pub fn last_id(conn: &Connection) -> Result<i64> {
    conn.query_row(LAST_ID, [], |r| r.get(0))
        .ctx("read the last ledger id")
}

/// Number of rows in the ledger.
pub fn count(conn: &Connection) -> Result<i64> {
    conn.query_row("SELECT count(*) FROM inventory_transactions", [], |r| {
        r.get(0)
    })
    .ctx("count ledger rows")
}

/// Movements per business date from `since` to `until` (inclusive, `YYYY-MM-DD`), dates with
/// none left out, oldest first.
pub fn per_day(conn: &Connection, since: &str, until: &str) -> Result<Vec<(String, i64)>> {
    let ctx = "count movements per day";
    let mut st = conn.prepare_cached(PER_DAY).ctx(ctx)?;
    let rows = st
        .query_map([since, until], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx(ctx)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
}

/// When the oldest ledger row was recorded (`created_at`), if there is one: the first row by
/// id (ids only grow), one lookup, where `min(created_at)` would scan the whole ledger on
/// every /health.
pub fn oldest_created_at(conn: &Connection) -> Result<Option<String>> {
    conn.query_row(OLDEST, [], |r| r.get(0))
        .optional()
        .ctx("read the oldest movement")
}

// The ledger's reads, each one an index walk (their plans are checked by a test below).
const BALANCE_BEFORE: &str =
    "SELECT coalesce(sum(CASE WHEN transaction_type = 'Receive' OR transaction_type = 'Adjust Up'
                                  THEN quantity ELSE -quantity END), 0)
           FROM inventory_transactions WHERE sku = ?1 AND id < ?2";
const SKU_DAYS: &str = "SELECT date,
                    sum(CASE WHEN transaction_type = 'Receive' THEN quantity ELSE 0 END),
                    sum(CASE WHEN transaction_type = 'Ship' THEN quantity ELSE 0 END),
                    sum(CASE WHEN transaction_type = 'Receive' OR transaction_type = 'Adjust Up'
                             THEN quantity ELSE -quantity END)
               FROM inventory_transactions WHERE sku = ?1 AND date >= ?2
              GROUP BY date ORDER BY date";
const BY_DAY_SKU_ALL: &str = "SELECT date, sku, count(*),
                sum(CASE WHEN transaction_type = 'Receive' THEN quantity ELSE 0 END),
                sum(CASE WHEN transaction_type = 'Ship' THEN quantity ELSE 0 END), sum(quantity)
           FROM inventory_transactions WHERE date >= ?1 AND ?2 = 0 GROUP BY date, sku";
const BY_DAY_SKU_AFTER: &str = "SELECT date, sku, count(*),
                sum(CASE WHEN transaction_type = 'Receive' THEN quantity ELSE 0 END),
                sum(CASE WHEN transaction_type = 'Ship' THEN quantity ELSE 0 END), sum(quantity)
           FROM inventory_transactions WHERE id > ?2 AND +date >= ?1 GROUP BY date, sku";
const PER_DAY: &str = "SELECT date, count(*) FROM inventory_transactions
              WHERE date >= ?1 AND date <= ?2 GROUP BY date ORDER BY date";
const OLDEST: &str = "SELECT created_at FROM inventory_transactions ORDER BY id LIMIT 1";
const LAST_ID: &str = "SELECT coalesce(max(id), 0) FROM inventory_transactions";

/// A sku whose stored stock was set back to the sum of its movements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    pub sku: String,
    /// The stock as it was stored.
    pub was: i64,
    /// The sum of its movements, now stored.
    pub now: i64,
}

/// Sets the stored stock of `skus` (every sku when empty) to the sum of its movements, in the
/// caller's transaction: the ledger is the record of what happened, so a stock changed behind
/// ora's back is put back to it. Returns the skus that changed; an unknown sku is refused.
pub fn reconcile(conn: &Connection, skus: &[String]) -> Result<Vec<Reconciled>> {
    let ctx = "reconcile stock with the ledger";
    let mut targets: Vec<(String, i64)> = Vec::new();
    if skus.is_empty() {
        let mut st = conn
            .prepare("SELECT sku, current_quantity FROM inventory_current ORDER BY sku")
            .ctx(ctx)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).ctx(ctx)?;
        targets = rows.collect::<std::result::Result<_, _>>().ctx(ctx)?;
    } else {
        for sku in skus {
            let stored: Option<i64> = conn
                .query_row(
                    "SELECT current_quantity FROM inventory_current WHERE sku = ?1",
                    [sku],
                    |r| r.get(0),
                )
                .optional()
                .ctx(ctx)?;
            match stored {
                Some(q) => targets.push((sku.clone(), q)),
                None => {
                    return Err(StoreError::not_found(format!(
                        "unknown sku {sku:?}; list products with `ora stock list`"
                    )))
                }
            }
        }
    }
    let mut sum = conn
        .prepare_cached(
            "SELECT coalesce(sum(CASE WHEN transaction_type IN ('Receive', 'Adjust Up')
                                      THEN quantity ELSE -quantity END), 0)
               FROM inventory_transactions WHERE sku = ?1",
        )
        .ctx(ctx)?;
    let mut set = conn
        .prepare_cached(
            "UPDATE inventory_current SET current_quantity = ?2, last_updated = ?3 WHERE sku = ?1",
        )
        .ctx(ctx)?;
    let mut out = Vec::new();
    for (sku, was) in targets {
        let now: i64 = sum.query_row([&sku], |r| r.get(0)).ctx(ctx)?;
        if now != was {
            set.execute((&sku, now, model::now_utc())).ctx(ctx)?;
            out.push(Reconciled {
                sku: sku.clone(),
                was,
                now,
            });
        }
        super::stock_watch::forget(conn, &sku)?;
    }
    Ok(out)
}

/// A sku's stock at the end of a day, replayed from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockAsOf {
    pub sku: String,
    pub product_name: String,
    /// The sum of its movements dated on or before the day.
    pub quantity: i64,
    /// Movements dated on or before the day.
    pub movements: i64,
}

/// Every product's stock at the end of `date` (or one sku's), from the movements dated on or
/// before it: the ledger is the history, so any past day can be replayed. A product without
/// movements by then shows 0.
pub fn stock_as_of(conn: &Connection, date: &str, sku: Option<&str>) -> Result<Vec<StockAsOf>> {
    let ctx = "replay the ledger";
    let signed =
        "CASE WHEN transaction_type IN ('Receive', 'Adjust Up') THEN quantity ELSE -quantity END";
    let mut sums: std::collections::HashMap<String, (i64, i64)> = std::collections::HashMap::new();
    {
        // One sku through its index; every sku in one pass over the table (the date index
        // would look up each row at random).
        let sql = match sku {
            Some(_) => format!(
                "SELECT sku, coalesce(sum({signed}), 0), count(*) FROM inventory_transactions
                  WHERE sku = ?2 AND date <= ?1 GROUP BY sku"
            ),
            None => format!(
                "SELECT sku, sum({signed}), count(*) FROM inventory_transactions NOT INDEXED
                  WHERE date <= ?1 AND ?2 IS NULL GROUP BY sku"
            ),
        };
        let mut st = conn.prepare(&sql).ctx(ctx)?;
        let rows = st
            .query_map((date, sku), |r| {
                Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?)))
            })
            .ctx(ctx)?;
        for row in rows {
            let (k, v) = row.ctx(ctx)?;
            sums.insert(k, v);
        }
    }
    let mut st = conn
        .prepare("SELECT sku, product_name FROM inventory_current WHERE ?1 IS NULL OR sku = ?1 ORDER BY sku")
        .ctx(ctx)?;
    let rows = st
        .query_map([sku], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .ctx(ctx)?;
    let mut out = Vec::new();
    for row in rows {
        let (sku, product_name) = row.ctx(ctx)?;
        let (quantity, movements) = sums.get(&sku).copied().unwrap_or((0, 0));
        out.push(StockAsOf {
            sku,
            product_name,
            quantity,
            movements,
        });
    }
    Ok(out)
}

/// A sku and how much it moved in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusySku {
    pub sku: String,
    pub movements: i64,
    /// Units in and out, added up.
    pub units: i64,
}

/// The `n` skus with the most movements dated `from`..=`to`, most first.
pub fn busiest(conn: &Connection, from: &str, to: &str, n: u32) -> Result<Vec<BusySku>> {
    let ctx = "find the busiest skus";
    let mut st = conn
        .prepare_cached(
            "SELECT sku, count(*), sum(quantity) FROM inventory_transactions
              WHERE date BETWEEN ?1 AND ?2 GROUP BY sku ORDER BY 2 DESC, sku LIMIT ?3",
        )
        .ctx(ctx)?;
    let rows = st
        .query_map((from, to, i64::from(n)), |r| {
            Ok(BusySku {
                sku: r.get(0)?,
                movements: r.get(1)?,
                units: r.get(2)?,
            })
        })
        .ctx(ctx)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
}

#[cfg(test)]
mod plans {
    use super::*;

    /// The query plan's lines of `sql` on a migrated database with some rows and statistics.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let n = st.parameter_count();
        let args: Vec<rusqlite::types::Value> =
            (0..n).map(|_| rusqlite::types::Value::Integer(1)).collect();
        let rows = st
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join(" | ")
    }

    // Every read of the ledger is an index walk: a product's rows from (sku, id), a page from
    // its id bounds, a window of days from the date index, the newest rows by id; none reads
    // the whole ledger (a SCAN of inventory_transactions).
    #[test]
    fn every_ledger_read_walks_an_index() {
        let conn = crate::store::products::tests::test_db("A", "a", 0);
        for _ in 0..200 {
            apply(
                &conn,
                &Movement::new("A", TxType::Receive, 1),
                None,
                Rules::default(),
            )
            .unwrap();
        }
        conn.execute_batch("ANALYZE").unwrap();
        let cases: Vec<(&str, &str)> = vec![
            (
                history_sql(true, false),
                "USING INDEX inventory_transactions_sku (sku=? AND id>? AND id<?)",
            ),
            (
                history_sql(true, true),
                "USING INDEX inventory_transactions_sku (sku=? AND id>? AND id<?)",
            ),
            (
                history_sql(false, false),
                "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
            ),
            (
                history_sql(false, true),
                "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
            ),
            (
                BALANCE_BEFORE,
                "USING INDEX inventory_transactions_sku (sku=? AND id<?)",
            ),
            (SKU_DAYS, "USING INDEX inventory_transactions_sku (sku=?)"),
            (
                BY_DAY_SKU_ALL,
                "USING INDEX inventory_transactions_date (date>?)",
            ),
            (BY_DAY_SKU_AFTER, "USING INTEGER PRIMARY KEY (rowid>?)"),
            (
                PER_DAY,
                "USING COVERING INDEX inventory_transactions_date (date>? AND date<?)",
            ),
            (OLDEST, "SCAN t"),
            (LAST_ID, "SEARCH inventory_transactions"),
        ];
        for (sql, want) in cases {
            let p = plan(&conn, sql);
            let want = if want == "SCAN t" {
                // The first row by id: a scan that stops at once (LIMIT 1, rowid order).
                "SCAN inventory_transactions"
            } else {
                want
            };
            assert!(p.contains(want), "{sql}\nplan: {p}\nwanted: {want}");
            if sql != OLDEST {
                assert!(
                    !p.contains("SCAN inventory_transactions") && !p.contains("SCAN t "),
                    "{sql}\nreads the whole ledger: {p}"
                );
            }
        }
    }
}
