//! Loading domain rows with their keys kept into a database that is being built (the rebuild
//! of a lost box from the central mirror, the adoption of an old system's file), then making
//! the result obey ora's rules where the source broke them, each fix listed: a product whose
//! stock disagrees with its movements either takes their sum (the mirror: the movements are
//! what was acknowledged) or gets one balancing movement that keeps the recorded stock (an old
//! file: the stock is what was counted), a product or an order that rows refer to but that is
//! missing is recreated, a shipped item whose movement is missing is unlinked. Only for a new
//! file no server has open; never used on a live database.

use rusqlite::types::Value;
use rusqlite::Connection;

use super::error::{Result, SqlContext};

/// Inserts rows into a new database inside one transaction (foreign keys checked at the end
/// by [`Loader::finish`], since the source's order is not the schema's).
pub struct Loader<'c> {
    conn: &'c Connection,
    /// Per table: the INSERT statement and which of the given columns it takes.
    plans: std::collections::HashMap<String, (String, Vec<usize>)>,
    /// The name a recreated product gets before its sku ("(rebuilt)", "(adopted)").
    label: &'static str,
    /// The ledger's append-only triggers, put back by `finish` once the chain is linked.
    ledger_triggers: Vec<String>,
    /// The last ledger row loaded and its link: rows that come in id order are linked as they
    /// are inserted (linking them afterwards rewrote every row: a tenth of a 2 M-row adopt);
    /// `finish` links whatever came out of order.
    ledger_tail: (i64, Vec<u8>),
    /// The non-unique indexes, dropped while rows load and built again by `finish` (built
    /// once by sorting instead of row by row: most of a large load's time went to them).
    deferred_indexes: Vec<String>,
}

/// Which side wins where a product's stock and the sum of its movements disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    /// The stock is set to the sum of the movements.
    StockFromMovements,
    /// A balancing movement (notes: `note`) keeps the recorded stock; a negative stock is
    /// balanced to 0 instead (ora's rules refuse negative stock).
    BalanceToStock { note: &'static str },
}

/// What [`Loader::finish`] had to change so the result passes `verify`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Fixes {
    /// "SKU: N -> M": stock set to the sum of the product's movements.
    pub stock_from_movements: Vec<String>,
    /// "SKU: +N" / "SKU: -N": balancing movements recorded.
    pub balancing: Vec<String>,
    /// "SKU: N": a negative stock recorded, balanced to 0 (count the product).
    pub negative_stock_zeroed: Vec<String>,
    /// Products that movements or shipped items refer to, recreated.
    pub recreated_products: Vec<String>,
    /// Orders recreated from their shipped items.
    pub recreated_orders: u64,
    /// Shipped items whose movement is missing, unlinked from it.
    pub unlinked_items: u64,
}

impl Fixes {
    pub fn is_empty(&self) -> bool {
        self.stock_from_movements.is_empty()
            && self.balancing.is_empty()
            && self.negative_stock_zeroed.is_empty()
            && self.recreated_products.is_empty()
            && self.recreated_orders == 0
            && self.unlinked_items == 0
    }
}

/// The columns of `table` a row can be inserted into (generated columns are computed).
fn insertable(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut st = conn
        .prepare("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid")
        .ctx("read a table's columns")?;
    let rows = st
        .query_map([table], |r| r.get::<_, String>(0))
        .ctx("read a table's columns")?;
    rows.collect::<std::result::Result<_, _>>()
        .ctx("read a table's columns")
}

impl<'c> Loader<'c> {
    /// Starts the load on `conn`, a new ora database (current schema, no rows).
    pub fn begin(conn: &'c Connection, label: &'static str) -> Result<Loader<'c>> {
        // Sorting threads for the index builds in `finish`.
        conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA threads = 2; BEGIN")
            .ctx("start loading")?;
        let ledger_triggers = super::chain::open_ledger(conn)?;
        let deferred =
            super::schema::set_aside(conn, "index", "upper(sql) NOT LIKE 'CREATE UNIQUE%'")?;
        Ok(Loader {
            deferred_indexes: deferred,
            ledger_triggers,
            ledger_tail: super::chain::last(conn)?,
            conn,
            plans: std::collections::HashMap::new(),
            label,
        })
    }

    /// Inserts one row of `table` given as `cols` and `values` (columns the table computes
    /// or does not have are left out). Every row of a table comes with the same `cols`.
    pub fn insert(&mut self, table: &str, cols: &[&str], values: &[Value]) -> Result<()> {
        let ledger = table == "inventory_transactions" && !cols.contains(&"chain");
        if !self.plans.contains_key(table) {
            let have = insertable(self.conn, table)?;
            let picked: Vec<usize> = (0..cols.len())
                .filter(|&i| have.iter().any(|h| h == cols[i]))
                .collect();
            let mut names: Vec<String> =
                picked.iter().map(|&i| format!("\"{}\"", cols[i])).collect();
            if ledger {
                names.push("chain".into());
            }
            let marks = vec!["?"; names.len()].join(", ");
            let sql = format!(
                "INSERT INTO \"{table}\" ({}) VALUES ({marks})",
                names.join(", ")
            );
            self.plans.insert(table.to_string(), (sql, picked));
        }
        let link = if ledger {
            self.link(cols, values)
        } else {
            None
        };
        let Some((sql, picked)) = self.plans.get(table) else {
            return Ok(());
        };
        let mut st = self.conn.prepare_cached(sql).ctx("load a row")?;
        let chain = link.map_or(Value::Null, |l| Value::Blob(l.to_vec()));
        let params = picked
            .iter()
            .map(|&i| values.get(i).unwrap_or(&Value::Null))
            .chain(ledger.then_some(&chain));
        st.execute(rusqlite::params_from_iter(params))
            .ctx(&format!("load a row of {table}"))?;
        Ok(())
    }

    /// The link of a ledger row that follows the last one loaded (`None` for a row out of id
    /// order: `finish` links it).
    fn link(&mut self, cols: &[&str], values: &[Value]) -> Option<[u8; super::chain::LINK_BYTES]> {
        let at = |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .and_then(|i| values.get(i))
        };
        let text = |name: &str| match at(name) {
            Some(Value::Text(t)) => Some(t.as_str()),
            _ => None,
        };
        let int = |name: &str| match at(name) {
            Some(Value::Integer(n)) => Some(*n),
            _ => None,
        };
        let id = int("id")?;
        if id <= self.ledger_tail.0 {
            return None;
        }
        let h = super::chain::hash(
            &self.ledger_tail.1,
            &super::chain::Link {
                id,
                date: text("date")?,
                sku: text("sku")?,
                quantity: int("quantity")?,
                kind: text("transaction_type")?,
                notes: text("notes"),
                created_at: text("created_at")?,
                request_id: text("request_id"),
                actor: text("actor"),
            },
        );
        self.ledger_tail = (id, h.to_vec());
        Some(h)
    }

    /// Makes the loaded rows obey ora's rules (see [`Fixes`]) and commits.
    pub fn finish(self, mode: Reconcile) -> Result<Fixes> {
        let conn = self.conn;
        for sql in &self.deferred_indexes {
            conn.execute_batch(sql).ctx("build the indexes")?;
        }
        let mut f = Fixes::default();
        let now = crate::model::now_utc();
        f.recreated_products = recreate_products(conn, self.label, &now)?;
        reconcile_stock(conn, mode, &now, &mut f)?;
        f.recreated_orders = conn
            .execute(
                "INSERT INTO shipped_orders (order_number, ship_date, item_count, total_units, created_at)
                 SELECT order_number, min(ship_date), count(*), sum(quantity_shipped), ?1 FROM shipped_items
                  WHERE order_number NOT IN (SELECT order_number FROM shipped_orders) GROUP BY order_number",
                [&now],
            )
            .ctx("recreate orders")? as u64;
        f.unlinked_items = conn
            .execute(
                "UPDATE shipped_items SET transaction_id = NULL
                  WHERE transaction_id IS NOT NULL
                    AND transaction_id NOT IN (SELECT id FROM inventory_transactions)",
                [],
            )
            .ctx("unlink shipped items")? as u64;
        // Every loaded and added movement linked into the ledger's hash chain.
        super::chain::repair(conn)?;
        super::chain::close_ledger(conn, &self.ledger_triggers)?;
        conn.execute_batch(super::schema::REBUILD_DERIVED)
            .ctx("rebuild the product search index")?;
        conn.execute_batch("COMMIT; PRAGMA foreign_keys = ON")
            .ctx("finish loading")?;
        Ok(f)
    }
}

/// Products the movements or shipped items name but the loaded rows lack, recreated with the
/// stock their movements give (never below zero); returns their SKUs.
fn recreate_products(conn: &Connection, label: &str, now: &str) -> Result<Vec<String>> {
    let missing: Vec<String> = {
        let mut st = conn
            .prepare(
                "SELECT sku FROM inventory_transactions WHERE sku NOT IN (SELECT sku FROM inventory_current)
                 UNION SELECT base_sku FROM shipped_items WHERE base_sku NOT IN (SELECT sku FROM inventory_current)
                 ORDER BY 1",
            )
            .ctx("find missing products")?;
        let rows = st
            .query_map([], |r| r.get(0))
            .ctx("find missing products")?;
        rows.collect::<std::result::Result<_, _>>()
            .ctx("find missing products")?
    };
    for sku in &missing {
        conn.execute(
            "INSERT INTO inventory_current (sku, product_name, current_quantity, reorder_point, last_updated)
             VALUES (?1, ?2, max(0, coalesce((SELECT sum(CASE WHEN transaction_type IN ('Receive', 'Adjust Up')
                                                              THEN quantity ELSE -quantity END)
                                                FROM inventory_transactions WHERE sku = ?1), 0)), 0, ?3)",
            (sku, format!("{label} {sku}"), now),
        )
        .ctx("recreate a product")?;
    }
    Ok(missing)
}

/// (SKU, stock, movements' total) for each product the query finds.
fn stock_rows(conn: &Connection, sql: &str, what: &'static str) -> Result<Vec<(String, i64, i64)>> {
    let mut st = conn.prepare(sql).ctx(what)?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .ctx(what)?;
    rows.collect::<std::result::Result<_, _>>().ctx(what)
}

/// Makes each product's stock and its movements agree, the way `mode` says.
fn reconcile_stock(conn: &Connection, mode: Reconcile, now: &str, f: &mut Fixes) -> Result<()> {
    let wrong = stock_rows(
        conn,
        "SELECT p.sku, p.current_quantity, coalesce(m.total, 0) FROM inventory_current p
           LEFT JOIN (SELECT sku, sum(CASE WHEN transaction_type IN ('Receive', 'Adjust Up')
                                            THEN quantity ELSE -quantity END) AS total
                        FROM inventory_transactions GROUP BY sku) m ON m.sku = p.sku
          WHERE p.current_quantity != coalesce(m.total, 0) ORDER BY p.sku",
        "compare stock with movements",
    )?;
    let zeroed = match mode {
        Reconcile::StockFromMovements => Vec::new(),
        Reconcile::BalanceToStock { .. } => stock_rows(
            conn,
            "SELECT p.sku, p.current_quantity, coalesce(m.total, 0) FROM inventory_current p
               LEFT JOIN (SELECT sku, sum(CASE WHEN transaction_type IN ('Receive', 'Adjust Up')
                                                THEN quantity ELSE -quantity END) AS total
                            FROM inventory_transactions GROUP BY sku) m ON m.sku = p.sku
              WHERE p.current_quantity < 0 AND p.current_quantity = coalesce(m.total, 0)
              ORDER BY p.sku",
            "find negative stock",
        )?,
    };
    let today = crate::model::today();
    for (sku, was, total) in wrong.into_iter().chain(zeroed) {
        match mode {
            Reconcile::StockFromMovements => {
                conn.execute(
                    "UPDATE inventory_current SET current_quantity = ?2 WHERE sku = ?1",
                    (&sku, total),
                )
                .ctx("set stock from movements")?;
                super::stock_watch::forget(conn, &sku)?;
                f.stock_from_movements
                    .push(format!("{sku}: {was} -> {total}"));
            }
            Reconcile::BalanceToStock { note } => {
                let target = if was < 0 {
                    f.negative_stock_zeroed.push(format!("{sku}: {was}"));
                    conn.execute(
                        "UPDATE inventory_current SET current_quantity = 0 WHERE sku = ?1",
                        [&sku],
                    )
                    .ctx("zero a negative stock")?;
                    super::stock_watch::forget(conn, &sku)?;
                    0
                } else {
                    was
                };
                let diff = target.checked_sub(total).ok_or_else(|| {
                    super::error::StoreError::invalid(format!(
                        "{sku}: its stock and movements differ by more than a quantity can hold"
                    ))
                })?;
                if diff == 0 {
                    continue;
                }
                let kind = if diff > 0 { "Adjust Up" } else { "Adjust Down" };
                conn.execute(
                    "INSERT INTO inventory_transactions (date, sku, quantity, transaction_type, notes, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    (&today, &sku, diff.unsigned_abs() as i64, kind, note, now),
                )
                .ctx("record a balancing movement")?;
                f.balancing.push(format!("{sku}: {diff:+}"));
            }
        }
    }
    Ok(())
}
