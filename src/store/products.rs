//! Products and their stock: adding and changing products (in the writer's transaction) and
//! reading `inventory_current`. Stock levels change only through the ledger; this module never
//! writes `current_quantity` except as the first Receive of a new product.

use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::error::{Result, SqlContext, StoreError};
use super::ledger::{self, Movement, Rules};
use crate::model::{self, TxType};

/// A product to create, optionally with its opening stock (recorded as a Receive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub sku: String,
    pub product_name: String,
    #[serde(default)]
    pub reorder_point: i64,
    #[serde(default)]
    pub initial_quantity: i64,
}

/// A change to a product's name or reorder point; absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChange {
    pub sku: String,
    #[serde(default)]
    pub product_name: Option<String>,
    #[serde(default)]
    pub reorder_point: Option<i64>,
}

/// A row of `inventory_current`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub sku: String,
    pub product_name: String,
    pub current_quantity: i64,
    pub reorder_point: i64,
    pub alert_level: String,
    pub last_updated: String,
    /// How far below its reorder point the stock is (reorder point minus stock; 0 when above).
    pub shortage: i64,
}

impl NewProduct {
    pub fn validate(&self) -> std::result::Result<(), String> {
        model::validate_sku(&self.sku)?;
        model::validate_label("product name", &self.product_name, model::MAX_NAME_LEN)?;
        model::validate_count("reorder point", self.reorder_point)?;
        if self.initial_quantity != 0 {
            model::validate_quantity(self.initial_quantity)?;
        }
        Ok(())
    }
}

impl ProductChange {
    pub fn validate(&self) -> std::result::Result<(), String> {
        model::validate_sku(&self.sku)?;
        if let Some(n) = &self.product_name {
            model::validate_label("product name", n, model::MAX_NAME_LEN)?;
        }
        if let Some(r) = self.reorder_point {
            model::validate_count("reorder point", r)?;
        }
        if self.product_name.is_none() && self.reorder_point.is_none() {
            return Err("nothing to change: give a new name or reorder point".into());
        }
        Ok(())
    }
}

/// Creates a product; its opening stock, if any, goes through the ledger as a Receive.
pub fn add(conn: &Connection, p: &NewProduct, request_id: Option<&str>) -> Result<Product> {
    p.validate().map_err(StoreError::invalid)?;
    if get(conn, &p.sku)?.is_some() {
        return Err(StoreError::conflict(format!(
            "product {} already exists; change it with `ora product update {}`",
            p.sku, p.sku
        )));
    }
    conn.prepare_cached(
        "INSERT INTO inventory_current (sku, product_name, current_quantity, reorder_point, last_updated)
         VALUES (?1, ?2, 0, ?3, ?4)",
    )
    .and_then(|mut st| {
        st.execute((&p.sku, p.product_name.trim(), p.reorder_point, model::now_utc()))
    })
    .ctx("add product")?;
    if p.initial_quantity > 0 {
        let mut m = Movement::new(&p.sku, TxType::Receive, p.initial_quantity);
        m.notes = Some("opening stock".into());
        ledger::apply(conn, &m, request_id, Rules::default())?;
    }
    must_get(conn, &p.sku)
}

/// Changes a product's name or reorder point.
pub fn update(conn: &Connection, c: &ProductChange) -> Result<Product> {
    c.validate().map_err(StoreError::invalid)?;
    let changed = conn
        .prepare_cached(
            "UPDATE inventory_current
                SET product_name = coalesce(?2, product_name),
                    reorder_point = coalesce(?3, reorder_point),
                    last_updated = ?4
              WHERE sku = ?1",
        )
        .and_then(|mut st| {
            st.execute((
                &c.sku,
                c.product_name.as_deref().map(str::trim),
                c.reorder_point,
                model::now_utc(),
            ))
        })
        .ctx("update product")?;
    if changed == 0 {
        return Err(unknown(conn, &c.sku, "list products with `ora stock list`"));
    }
    must_get(conn, &c.sku)
}

/// The error for a sku no product has: "did you mean" the product whose sku differs only in
/// case or by one or two typed characters (never advice to create a near-duplicate), else
/// `otherwise` (what to do when the product really is new).
pub fn unknown(conn: &Connection, sku: &str, otherwise: &str) -> StoreError {
    match similar(conn, sku) {
        Some(near) if near.to_lowercase() == sku.to_lowercase() => StoreError::not_found(format!(
            "unknown sku {sku:?}; did you mean {near:?}? (skus are exact: upper and lower case differ)"
        )),
        Some(near) => StoreError::not_found(format!("unknown sku {sku:?}; did you mean {near:?}?")),
        None => StoreError::not_found(format!("unknown sku {sku:?}; {otherwise}")),
    }
}

/// The existing sku nearest to `sku`: equal but for case, else at most two edits away (case
/// ignored); ties go to the first in sku order. None when the read fails or nothing is near.
fn similar(conn: &Connection, sku: &str) -> Option<String> {
    let mut st = conn
        .prepare_cached("SELECT sku FROM inventory_current ORDER BY sku")
        .ok()?;
    let want: Vec<char> = sku.to_lowercase().chars().collect();
    let mut best: Option<(usize, String)> = None;
    let rows = st.query_map([], |r| r.get::<_, String>(0)).ok()?;
    for have in rows.flatten() {
        let h: Vec<char> = have.to_lowercase().chars().collect();
        if h.len().abs_diff(want.len()) > 2 {
            continue;
        }
        let d = distance(&want, &h, 2);
        if d <= 2 && best.as_ref().is_none_or(|(b, _)| d < *b) {
            best = Some((d, have));
        }
    }
    best.map(|(_, s)| s)
}

/// The edit distance of `a` and `b`, or `cap + 1` once it is certainly above `cap`.
fn distance(a: &[char], b: &[char], cap: usize) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        if cur.iter().min().is_some_and(|m| *m > cap) {
            return cap + 1;
        }
        prev = cur;
    }
    prev[b.len()]
}

const COLUMNS: &str =
    "sku, product_name, current_quantity, reorder_point, alert_level, last_updated,
     max(reorder_point - current_quantity, 0)";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        sku: r.get(0)?,
        product_name: r.get(1)?,
        current_quantity: r.get(2)?,
        reorder_point: r.get(3)?,
        alert_level: r.get(4)?,
        last_updated: r.get(5)?,
        shortage: r.get(6)?,
    })
}

/// One product, if it exists.
pub fn get(conn: &Connection, sku: &str) -> Result<Option<Product>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM inventory_current WHERE sku = ?1"
    ))
    .and_then(|mut st| st.query_row([sku], from_row).optional())
    .ctx("read product")
}

fn must_get(conn: &Connection, sku: &str) -> Result<Product> {
    get(conn, sku)?.ok_or_else(|| unknown(conn, sku, "list products with `ora stock list`"))
}

/// All products (or only those at `low`/`critical`), most urgent first.
pub fn list(conn: &Connection, only_low: bool) -> Result<Vec<Product>> {
    list_after(conn, only_low, None, i64::MAX)
}

/// Up to `limit` products (or only those at `low`/`critical`), most urgent first, after the
/// product `after` in that order (as its stock and reorder point stand now: a product whose
/// stock changes while a reader pages may move past the cursor or back before it).
pub fn list_after(
    conn: &Connection,
    only_low: bool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Product>> {
    // The order: urgency, then the largest shortfall, the least stock, sku.
    const ORDER: &str = "CASE alert_level WHEN 'critical' THEN 0 WHEN 'low' THEN 1 ELSE 2 END,
                         current_quantity - reorder_point, current_quantity, sku";
    let mut cond = Vec::new();
    if only_low {
        cond.push("alert_level IN ('critical', 'low')".to_string());
    }
    if after.is_some() {
        cond.push(format!(
            "({ORDER}) > (SELECT {ORDER} FROM inventory_current WHERE sku = ?1)"
        ));
    }
    let filter = if cond.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", cond.join(" AND "))
    };
    let sql = format!("SELECT {COLUMNS} FROM inventory_current {filter} ORDER BY {ORDER} LIMIT ?2");
    let ctx = "list products";
    let mut st = conn.prepare_cached(&sql).ctx(ctx)?;
    let rows = st
        .query_map(rusqlite::params![after.unwrap_or(""), limit], from_row)
        .ctx(ctx)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
}

/// How many products there are.
pub fn count(conn: &Connection) -> Result<i64> {
    conn.query_row("SELECT count(*) FROM inventory_current", [], |r| r.get(0))
        .ctx("count products")
}

/// The product whose sku is `sku` in any letter case (the first, when several differ only by
/// case).
pub fn get_nocase(conn: &Connection, sku: &str) -> Result<Option<Product>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM inventory_current WHERE sku = ?1 COLLATE NOCASE ORDER BY sku LIMIT 1"
    ))
    .and_then(|mut st| st.query_row([sku], from_row).optional())
    .ctx("read product")
}

#[cfg(test)]
pub mod tests {
    use super::distance;

    /// A migrated in-memory database holding one product with `initial` in stock (unit tests).
    pub fn test_db(sku: &str, name: &str, initial: i64) -> rusqlite::Connection {
        let mut conn = rusqlite::Connection::open_in_memory().expect("open");
        crate::store::schema::migrate(&mut conn, ":memory:").expect("migrate");
        super::add(
            &conn,
            &super::NewProduct {
                sku: sku.into(),
                product_name: name.into(),
                reorder_point: 2,
                initial_quantity: initial,
            },
            None,
        )
        .expect("add the product");
        conn
    }

    #[test]
    fn edit_distance_is_capped_and_exact_below_the_cap() {
        let d = |a: &str, b: &str| {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            distance(&a, &b, 2)
        };
        assert_eq!(d("wh-1011", "wh-1011"), 0);
        assert_eq!(d("wh-1011", "wh-1012"), 1);
        assert_eq!(d("wh1011", "wh-1011"), 1);
        assert_eq!(d("wh-1101", "wh-1011"), 2);
        assert_eq!(d("abc", "xyzw"), 3, "capped at cap + 1");
        assert_eq!(d("", "ab"), 2);
    }
}
