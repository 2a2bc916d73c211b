//! Building the salvaged database: a new file with ora's current schema, loaded table by table
//! with the rows the salvage found (rowids kept), indexes built after the load, rows that fit
//! nowhere put in `lost_and_found`, and the ledger reconciled so the result passes `verify`:
//! a sku whose movements were lost gets one balancing adjustment that keeps the stock level
//! inventory_current recorded, a product row that was lost is recreated from its movements.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::types::Value;
use rusqlite::Connection;

use super::salvage::RawRow;
use super::sql;
use crate::error::Result;
use crate::store::schema;

/// One column of a table as stored.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub decl: String,
    pub notnull: bool,
    /// The INTEGER PRIMARY KEY (stored as NULL; the value is the rowid).
    pub ipk: bool,
    /// A generated column whose value is stored in the record (not insertable).
    pub generated_stored: bool,
    /// It has a DEFAULT: a record written before the column was added (`ALTER TABLE ADD
    /// COLUMN` leaves old records short) reads it as that default.
    pub has_default: bool,
}

/// A table's stored layout: the columns a record holds, in order.
#[derive(Debug, Clone)]
pub struct Layout {
    pub table: String,
    pub columns: Vec<Column>,
}

/// Reads the stored layout of `table` from a connection where it exists.
pub fn layout(conn: &Connection, table: &str) -> Result<Layout> {
    let mut st = conn
        .prepare(
            "SELECT name, type, \"notnull\", pk, hidden, dflt_value IS NOT NULL FROM pragma_table_xinfo(?1) ORDER BY cid",
        )
        .map_err(sql("read a table layout"))?;
    let rows: Vec<(String, String, bool, i64, i64, bool)> = st
        .query_map([table], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .map_err(sql("read a table layout"))?
        .collect::<std::result::Result<_, _>>()
        .map_err(sql("read a table layout"))?;
    let pk_cols = rows.iter().filter(|r| r.3 > 0).count();
    let columns = rows
        .into_iter()
        .filter(|r| r.4 != 2) // virtual generated columns are not stored
        .map(|(name, decl, notnull, pk, hidden, has_default)| Column {
            ipk: pk == 1 && pk_cols == 1 && decl.eq_ignore_ascii_case("INTEGER"),
            generated_stored: hidden == 3,
            name,
            decl,
            notnull,
            has_default,
        })
        .collect();
    Ok(Layout {
        table: table.to_string(),
        columns,
    })
}

/// Whether a record's values fit a layout (count and declared types). A record may be short
/// by columns added later that have a default or allow NULL.
pub fn fits(l: &Layout, values: &[Value]) -> bool {
    values.len() <= l.columns.len()
        && l.columns[values.len()..]
            .iter()
            .all(|c| c.has_default || !c.notnull)
        && l.columns.iter().zip(values).all(|(c, v)| match v {
            Value::Null => c.ipk || !c.notnull,
            _ if c.ipk => false,
            Value::Integer(_) => !c.decl.eq_ignore_ascii_case("TEXT"),
            Value::Text(_) => !c.decl.eq_ignore_ascii_case("INTEGER"),
            Value::Real(_) => {
                !c.decl.eq_ignore_ascii_case("TEXT") && !c.decl.eq_ignore_ascii_case("INTEGER")
            }
            Value::Blob(_) => c.decl.is_empty() || c.decl.eq_ignore_ascii_case("BLOB"),
        })
}

/// `INSERT INTO table (rowid, the held columns) VALUES (...)`.
fn insert_sql(table: &str, target: &[&Column], held: &[bool]) -> String {
    let cols: Vec<String> = target
        .iter()
        .zip(held)
        .filter(|(_, h)| **h)
        .map(|(c, _)| format!("\"{}\"", c.name))
        .collect();
    let marks = vec!["?"; cols.len() + 1].join(",");
    let cols = std::iter::once("rowid".to_string())
        .chain(cols)
        .collect::<Vec<_>>()
        .join(",");
    format!("INSERT INTO \"{table}\" ({cols}) VALUES ({marks})")
}

/// The reference schema: ora's migrations applied to an in-memory database.
pub fn reference() -> Result<Connection> {
    let mut conn = Connection::open_in_memory().map_err(sql("build the reference schema"))?;
    schema::migrate(&mut conn, ":memory:")?;
    Ok(conn)
}

/// The new database being filled.
pub struct Output {
    pub conn: Connection,
    lost: u64,
    /// Σ movements per sku of the ledger rows loaded (for reconciliation without a rescan).
    ledger_sums: HashMap<String, i64>,
    /// current_quantity per sku of the product rows loaded.
    stock: HashMap<String, i64>,
}

const LOST_AND_FOUND: &str = "CREATE TABLE lost_and_found (
    id           INTEGER PRIMARY KEY,
    source_table TEXT,
    page         INTEGER,
    row_id       INTEGER,
    reason       TEXT NOT NULL,
    nfield       INTEGER NOT NULL,
    fields       TEXT NOT NULL
)";

fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => serde_json::json!(i),
        Value::Real(f) => serde_json::json!(f),
        Value::Text(t) => serde_json::json!(t),
        Value::Blob(b) => serde_json::json!(format!("X'{}'", crate::fsutil::hex(b))),
    }
}

/// The output's page cache while rows are loaded (the unique indexes that guard the load are
/// written in key order, not row order: a large cache keeps them off the disk).
const LOAD_CACHE: &str = "PRAGMA cache_size = -200000;";
/// The page cache and sorting threads while the other indexes are built (see `finish`).
const INDEX_BUILD_MEMORY: &str = "PRAGMA cache_size = -32000; PRAGMA threads = 2;";

impl Output {
    /// Creates the tables (and unique indexes, which guard the load) of the reference schema
    /// in a new file at `path`.
    pub fn create(path: &Path, page_size: usize, reference: &Connection) -> Result<Output> {
        let conn = crate::store::connection::open_plain(path)
            .map_err(sql("create the output database"))?;
        conn.execute_batch(&format!(
            "PRAGMA page_size = {page_size}; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             {LOAD_CACHE} PRAGMA locking_mode = EXCLUSIVE; PRAGMA foreign_keys = OFF;"
        ))
        .map_err(sql("tune the output database"))?;
        for s in schema_sql(reference, "table")? {
            conn.execute_batch(&s).map_err(sql("create a table"))?;
        }
        for s in schema_sql(reference, "unique index")? {
            conn.execute_batch(&s)
                .map_err(sql("create a unique index"))?;
        }
        conn.execute_batch(LOST_AND_FOUND)
            .map_err(sql("create lost_and_found"))?;
        conn.execute_batch("BEGIN").map_err(sql("begin the load"))?;
        Ok(Output {
            conn,
            lost: 0,
            ledger_sums: HashMap::new(),
            stock: HashMap::new(),
        })
    }

    /// Puts a row that fits nowhere into lost_and_found.
    pub fn lose(&mut self, table: Option<&str>, row: &RawRow, reason: &str) -> Result<()> {
        let fields =
            serde_json::Value::Array(row.values.iter().map(value_json).collect()).to_string();
        self.conn
            .prepare_cached(
                "INSERT INTO lost_and_found (source_table, page, row_id, reason, nfield, fields)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| {
                st.execute((
                    table,
                    row.page,
                    row.rowid,
                    reason,
                    row.values.len() as i64,
                    fields,
                ))
            })
            .map_err(sql("fill lost_and_found"))?;
        self.lost += 1;
        Ok(())
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Inserts rows read with layout `from` into table `to` (matching columns by name).
    /// Returns (inserted, sent to lost_and_found).
    pub fn load(&mut self, from: &Layout, to: &Layout, rows: &[RawRow]) -> Result<(u64, u64)> {
        let target: Vec<&Column> = to.columns.iter().filter(|c| !c.generated_stored).collect();
        let src_index: Vec<Option<usize>> = target
            .iter()
            .map(|t| {
                from.columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(&t.name))
            })
            .collect();
        // A column the record does not hold (added to the table after the row was written,
        // or unknown to the damaged file) is left out of the INSERT, so it takes its default.
        let mut inserts: std::collections::HashMap<Vec<bool>, String> = Default::default();
        let (mut ok, mut lost) = (0, 0);
        let null = Value::Null;
        let col = |name: &str| target.iter().position(|c| c.name == name);
        let (sku_at, qty_at, kind_at, stock_at) = (
            col("sku"),
            col("quantity"),
            col("transaction_type"),
            col("current_quantity"),
        );
        for row in rows {
            if row.values.len() > from.columns.len() {
                self.lose(Some(&to.table), row, "more fields than the table has")?;
                lost += 1;
                continue;
            }
            let rowid = Value::Integer(row.rowid);
            let held: Vec<bool> = target
                .iter()
                .zip(&src_index)
                .map(|(t, s)| match s {
                    _ if t.ipk => true,
                    Some(i) => from.columns[*i].ipk || *i < row.values.len(),
                    None => false,
                })
                .collect();
            let params: Vec<&Value> = std::iter::once(&rowid)
                .chain(target.iter().zip(&src_index).map(|(t, s)| match s {
                    _ if t.ipk => &rowid,
                    Some(i) if from.columns[*i].ipk => &rowid,
                    Some(i) => row.values.get(*i).unwrap_or(&null),
                    None => &null,
                }))
                .collect();
            let insert = inserts
                .entry(held.clone())
                .or_insert_with(|| insert_sql(&to.table, &target, &held));
            let bound = std::iter::once(params[0]).chain(
                params[1..]
                    .iter()
                    .zip(&held)
                    .filter(|(_, h)| **h)
                    .map(|(v, _)| *v),
            );
            let inserted = self
                .conn
                .prepare_cached(insert)
                .and_then(|mut st| st.execute(rusqlite::params_from_iter(bound)));
            match inserted {
                Ok(_) => {
                    ok += 1;
                    self.track(&to.table, &params[1..], sku_at, qty_at, kind_at, stock_at);
                }
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) =>
                {
                    self.lose(Some(&to.table), row, &format!("refused by the schema: {e}"))?;
                    lost += 1;
                }
                Err(e) => return Err(sql("load rows")(e)),
            }
        }
        Ok((ok, lost))
    }

    /// Keeps the per-sku figures reconciliation needs as ledger and product rows are loaded.
    fn track(
        &mut self,
        table: &str,
        v: &[&Value],
        sku_at: Option<usize>,
        qty_at: Option<usize>,
        kind_at: Option<usize>,
        stock_at: Option<usize>,
    ) {
        let text = |i: Option<usize>| match i.map(|i| v[i]) {
            Some(Value::Text(t)) => Some(t.as_str()),
            _ => None,
        };
        let int = |i: Option<usize>| match i.map(|i| v[i]) {
            Some(Value::Integer(n)) => Some(*n),
            _ => None,
        };
        match table {
            "inventory_transactions" => {
                if let (Some(sku), Some(q), Some(kind)) = (text(sku_at), int(qty_at), text(kind_at))
                {
                    let sign = if matches!(kind, "Receive" | "Adjust Up") {
                        1
                    } else {
                        -1
                    };
                    *self.ledger_sums.entry(sku.to_string()).or_default() += sign * q;
                }
            }
            "inventory_current" => {
                if let (Some(sku), Some(q)) = (text(sku_at), int(stock_at)) {
                    self.stock.insert(sku.to_string(), q);
                }
            }
            _ => {}
        }
    }

    /// Whether `table` already holds `rowid`.
    pub fn has_rowid(&self, table: &str, rowid: i64) -> Result<bool> {
        self.conn
            .prepare_cached(&format!("SELECT 1 FROM \"{table}\" WHERE rowid = ?1"))
            .and_then(|mut st| st.exists([rowid]))
            .map_err(sql("look up a rowid"))
    }

    /// Builds the remaining indexes and the triggers, then reconciles and stamps the schema.
    /// Balancing movements take ids from `first_new_id` on (above every id anything named).
    pub fn finish(
        self,
        reference: &Connection,
        first_new_id: i64,
    ) -> Result<(Connection, Reconciled)> {
        let mut reconciled = reconcile(&self.conn, &self.ledger_sums, &self.stock, first_new_id)?;
        // Lost or damaged ledger rows break the hash chain: it is linked again from there (the
        // triggers that keep the ledger append-only are created below).
        reconciled.chain_restarted_at = crate::store::chain::repair(&self.conn)?;
        // An index build sorts in runs as large as the page cache, one per sorting thread and
        // one being filled: with the load's cache and four threads that was 1 GB on a 3 GB file.
        // A small cache and two threads keep the build near 130 MB at any size, no slower. The
        // load's dirty pages leave the cache only at a commit (there is no journal to keep:
        // the output is discarded unless the whole run succeeds).
        self.conn
            .execute_batch(&format!("COMMIT; {INDEX_BUILD_MEMORY} BEGIN;"))
            .map_err(sql("size the index build"))?;
        give_back_freed_memory();
        for s in schema_sql(reference, "index")? {
            self.conn.execute_batch(&s).map_err(sql("build an index"))?;
        }
        for s in schema_sql(reference, "trigger")? {
            self.conn
                .execute_batch(&s)
                .map_err(sql("create a trigger"))?;
        }
        self.conn
            .execute_batch(schema::REBUILD_DERIVED)
            .map_err(sql("rebuild the product search index"))?;
        // Outbox sequence numbers must never go back below what a remote target has seen.
        self.conn
            .execute_batch(
                "INSERT INTO sqlite_sequence (name, seq)
                   SELECT 'outbox', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox');
                 UPDATE sqlite_sequence SET seq = max(seq,
                        (SELECT coalesce(max(seq), 0) FROM outbox),
                        (SELECT coalesce(max(last_seq), 0) FROM sync_control))
                  WHERE name = 'outbox';",
            )
            .map_err(sql("keep the outbox sequence"))?;
        self.conn
            .execute_batch(&format!(
                "COMMIT; PRAGMA user_version = {}; PRAGMA application_id = {};
                 PRAGMA locking_mode = NORMAL; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
                schema::latest_version(),
                schema::APPLICATION_ID
            ))
            .map_err(sql("finish the output database"))?;
        Ok((self.conn, reconciled))
    }
}

/// Hands the heap's free pages back to the system: the load's page cache, freed once its pages
/// were written, would otherwise stay counted in the process's memory beneath the sorter's.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it touches no live
    // allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Statements of the reference schema: "table", "unique index", "index" (non-unique), "trigger".
fn schema_sql(reference: &Connection, which: &str) -> Result<Vec<String>> {
    // Shadow tables are created by their virtual table, not on their own.
    let shadows: Vec<String> = {
        let mut st = reference
            .prepare("SELECT name FROM pragma_table_list WHERE type = 'shadow'")
            .map_err(sql("read the reference schema"))?;
        let r = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql("read the reference schema"))?;
        r.filter_map(|n| n.ok()).collect()
    };
    let mut st = reference
        .prepare("SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid")
        .map_err(sql("read the reference schema"))?;
    let rows: Vec<(String, String)> = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(sql("read the reference schema"))?
        .filter_map(|r| r.ok())
        .filter(|(_, name, _)| !shadows.contains(name) && !name.starts_with("sqlite_"))
        .map(|(kind, _, text)| (kind, text))
        .collect();
    Ok(rows
        .into_iter()
        .filter(|(kind, text)| {
            let unique = text
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("CREATE UNIQUE");
            match which {
                "unique index" => kind == "index" && unique,
                "index" => kind == "index" && !unique,
                other => kind == other,
            }
        })
        .map(|(_, s)| s)
        .collect())
}

/// What reconciliation changed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Reconciled {
    /// "SKU: +N" / "SKU: -N" balancing adjustments recorded.
    pub balancing: Vec<String>,
    /// Products recreated from their movements.
    pub recreated_products: Vec<String>,
    /// Orders recreated from their items.
    pub recreated_orders: u64,
    /// Shipped items unlinked from a movement that was lost.
    pub unlinked_items: u64,
    /// Stored answers of idempotent requests whose movement was lost, removed so that a replay
    /// records the movement again instead of answering with an id that no longer exists.
    pub requests_forgotten: u64,
    /// The first ledger id from which the hash chain had to be linked again (rows before it
    /// or at it were lost, damaged or added), `None` when it held.
    pub chain_restarted_at: Option<i64>,
}

/// Kept whole: the repairs after a salvage (lost products recreated, lost movements balanced,
/// stored answers of lost requests removed, the chain relinked) run in one transaction and each
/// records what it did in the report.
fn reconcile(
    conn: &Connection,
    sums: &HashMap<String, i64>,
    stock: &HashMap<String, i64>,
    first_new_id: i64,
) -> Result<Reconciled> {
    let mut next_id = first_new_id;
    let mut r = Reconciled::default();
    let now = crate::model::now_utc();
    let today = crate::model::today();
    // Products that movements or shipped items refer to but whose row was lost.
    let mut missing: Vec<String> = sums
        .keys()
        .filter(|s| !stock.contains_key(*s))
        .cloned()
        .collect();
    {
        let mut st = conn
            .prepare("SELECT DISTINCT base_sku FROM shipped_items")
            .map_err(sql("find lost products"))?;
        let items: Vec<String> = st
            .query_map([], |r| r.get(0))
            .map_err(sql("find lost products"))?
            .collect::<std::result::Result<_, _>>()
            .map_err(sql("find lost products"))?;
        missing.extend(
            items
                .into_iter()
                .filter(|s| !stock.contains_key(s) && !sums.contains_key(s)),
        );
    }
    missing.sort();
    let mut stock = stock.clone();
    for sku in &missing {
        let q = sums.get(sku).copied().unwrap_or(0).max(0);
        conn.execute(
            "INSERT INTO inventory_current (sku, product_name, current_quantity, reorder_point, last_updated)
             VALUES (?1, ?2, ?3, 0, ?4)",
            (sku, format!("(recovered) {sku}"), q, &now),
        )
        .map_err(sql("recreate a product"))?;
        stock.insert(sku.clone(), q);
        r.recreated_products.push(sku.clone());
    }
    // Stock as recorded stays; the movements that were lost become one adjustment per sku.
    let mut skus: Vec<&String> = stock.keys().collect();
    skus.sort();
    for sku in skus {
        let diff = stock[sku] - sums.get(sku).copied().unwrap_or(0);
        if diff == 0 {
            continue;
        }
        let kind = if diff > 0 { "Adjust Up" } else { "Adjust Down" };
        conn.execute(
            "INSERT INTO inventory_transactions (id, date, sku, quantity, transaction_type, notes, created_at)
             VALUES (?6, ?1, ?2, ?3, ?4, 'recover: balances movements lost to damage; stock as recorded before it', ?5)",
            (&today, sku, diff.abs(), kind, &now, next_id),
        )
        .map_err(sql("record a balancing adjustment"))?;
        next_id = next_id.saturating_add(1);
        r.balancing.push(format!("{sku}: {diff:+}"));
    }
    r.recreated_orders = conn
        .execute(
            "INSERT INTO shipped_orders (order_number, ship_date, item_count, total_units, created_at)
             SELECT order_number, min(ship_date), count(*), sum(quantity_shipped), ?1 FROM shipped_items
              WHERE order_number NOT IN (SELECT order_number FROM shipped_orders) GROUP BY order_number",
            [&now],
        )
        .map_err(sql("recreate orders"))? as u64;
    r.unlinked_items = conn
        .execute(
            "UPDATE shipped_items SET transaction_id = NULL
              WHERE transaction_id IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM inventory_transactions t WHERE t.id = shipped_items.transaction_id
                       AND t.transaction_type = 'Ship' AND t.sku = shipped_items.base_sku
                       AND t.quantity = shipped_items.quantity_shipped)",
            [],
        )
        .map_err(sql("unlink shipped items"))? as u64;
    Ok(r)
}
