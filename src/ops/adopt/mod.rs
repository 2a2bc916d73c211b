//! `ora adopt OLD.db [--out NEW.db] [--check]`: brings a database made by the old system (the
//! guide's tables without ora's marker) into ora. Checks the old file (integrity_check, the
//! ledger against the recorded stock, movement types, quantities, dates, orphans), reports
//! what it found, and writes a new ora database with every row: ledger ids kept, values read
//! the way people wrote them ([`normalize`]), and explicit, listed fixes where the old data
//! breaks ora's rules (a balancing movement per sku whose stock disagrees with its ledger,
//! marked in its notes; rows that cannot be movements kept in `adopt_rejected`). The result
//! passes integrity_check and `verify` before it is named. The old file is only read, through
//! a read-only connection; `--check` writes nothing.

mod normalize;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::check::pragma_check;
use crate::file::install;
use crate::fsutil;
use crate::store::bulk::{Fixes, Loader, Reconcile};
use crate::store::error::StoreError;
use crate::store::invariants::{self as verify, VerifyOptions};
use crate::store::{connection, schema};

use normalize::Quantity;

/// What adopt reads and writes.
#[derive(Debug, Clone)]
pub struct AdoptOptions {
    /// The new ora database (must not exist).
    pub out: PathBuf,
    /// Only report; write nothing.
    pub check_only: bool,
}

/// Rows of one old table and what became of them.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TableCount {
    pub table: String,
    pub old_rows: u64,
    pub adopted: u64,
    /// Rows kept in `adopt_rejected` instead (listed in `problems`).
    pub rejected: u64,
}

/// What adopt found and did.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptReport {
    pub source: PathBuf,
    /// The new database (`None` with `--check`).
    pub output: Option<PathBuf>,
    pub integrity: String,
    pub tables: Vec<TableCount>,
    /// What the old data breaks of ora's rules, one line per kind with examples.
    pub problems: Vec<String>,
    /// What was changed to make it fit, one line per kind.
    pub fixes: Vec<String>,
    /// The ledger and stock fixes (balancing movements, recreated products and orders).
    pub reconciled: Fixes,
    /// Tables of the old file that are not the guide's (not adopted).
    pub not_adopted: Vec<String>,
    pub seconds: f64,
}

/// Notes of a balancing movement adopt records.
const BALANCING_NOTE: &str = "adopt: balances the old ledger to the stock the old system recorded";

fn sql(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| StoreError::sqlite(&format!("adopt: {what}"), e).into()
}

/// Findings of one kind: a count and the first few examples.
#[derive(Default)]
struct Tally {
    kinds: Vec<(String, u64, Vec<String>)>,
}

impl Tally {
    fn add(&mut self, kind: &str, example: impl FnOnce() -> String) {
        match self.kinds.iter_mut().find(|(k, _, _)| k == kind) {
            Some((_, n, ex)) => {
                *n += 1;
                if ex.len() < 3 {
                    ex.push(example());
                }
            }
            None => self.kinds.push((kind.to_string(), 1, vec![example()])),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.kinds
            .iter()
            .map(|(k, n, ex)| format!("{k}: {n} (for example {})", ex.join("; ")))
            .collect()
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        Value::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Text(t) => Some(t.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(f) => Some(f.to_string()),
        _ => None,
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        other => format!("{:?}", crate::model::clip(&text(other).unwrap_or_default())),
    }
}

/// An old table's rows as (rowid, column name -> value).
fn rows(old: &Connection, table: &str) -> Result<Vec<(i64, HashMap<String, Value>)>> {
    let mut st = old
        .prepare(&format!("SELECT rowid, * FROM \"{table}\" ORDER BY rowid"))
        .map_err(sql("read the old file"))?;
    let names: Vec<String> = st
        .column_names()
        .iter()
        .skip(1)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let out = st
        .query_map([], |r| {
            let rowid: i64 = r.get(0)?;
            let mut m = HashMap::new();
            for (i, n) in names.iter().enumerate() {
                m.insert(n.clone(), r.get::<_, Value>(i + 1)?);
            }
            Ok((rowid, m))
        })
        .map_err(sql("read the old file"))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql("read the old file"))?;
    Ok(out)
}

fn get<'a>(row: &'a HashMap<String, Value>, names: &[&str]) -> &'a Value {
    names
        .iter()
        .find_map(|n| row.get(*n).filter(|v| !matches!(v, Value::Null)))
        .unwrap_or(&Value::Null)
}

/// Refuses what is not an old database before any SQLite connection opens it.
fn check_source(old: &Path) -> Result<()> {
    let mut head = [0u8; 16];
    let read =
        std::fs::File::open(old).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::usage(format!("adopt: no file at {}", old.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::usage(format!(
            "adopt: {} is not a SQLite database (it is shorter than a SQLite header)",
            old.display()
        ))),
        Err(e) => Err(Error::io(format!("adopt: read {}", old.display()), e)),
        Ok(()) if &head != b"SQLite format 3\0" => Err(Error::usage(format!(
            "adopt: {} is not a SQLite database",
            old.display()
        ))),
        Ok(()) => Ok(()),
    }
}

/// Checks `old` and, unless `check_only`, writes the adopted database to `o.out`.
pub fn run(old: &Path, o: &AdoptOptions) -> Result<AdoptReport> {
    let t0 = Instant::now();
    let started = crate::model::now_utc();
    check_source(old)?;
    if !o.check_only && o.out.exists() {
        return Err(Error::usage(format!(
            "adopt: {} already exists; pass another --out (the old file is never changed)",
            o.out.display()
        )));
    }
    let src = connection::open_with_flags(
        old,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("open the old file read-only"))?;
    src.execute_batch("PRAGMA query_only = 1")
        .map_err(sql("open the old file read-only"))?;
    let app: i64 = src
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| {
            Error::usage(format!(
                "adopt: {} cannot be read as a SQLite database ({e})",
                old.display()
            ))
        })?;
    if app == schema::APPLICATION_ID {
        return Err(Error::usage(format!(
            "adopt: {} is already an ora database; use it with --db (nothing to adopt)",
            old.display()
        )));
    }
    // A check that cannot even finish (a page it cannot read) is damage too.
    let integrity = pragma_check(&src, "integrity_check")
        .unwrap_or_else(|e| format!("the check could not finish: {}", e.message()));
    if integrity != "ok" {
        return Err(Error::check_failed(format!(
            "adopt: {} is damaged (integrity_check: {integrity}); nothing was written. Adopt a good copy (the old system's last backup), or salvage it first with `sqlite3 OLD.db .recover | sqlite3 SALVAGED.db` and adopt that",
            old.display()
        )));
    }
    let tables: Vec<String> = {
        let mut st = src
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .map_err(sql("read the old schema"))?;
        let r = st
            .query_map([], |r| r.get(0))
            .map_err(sql("read the old schema"))?;
        r.collect::<std::result::Result<_, _>>()
            .map_err(sql("read the old schema"))?
    };
    let has = |t: &str| tables.iter().any(|x| x.eq_ignore_ascii_case(t));
    for t in ["inventory_current", "inventory_transactions"] {
        if !has(t) {
            return Err(Error::usage(format!(
                "adopt: {} has no {t} table, so it is not the old system's database (tables: {})",
                old.display(),
                if tables.is_empty() {
                    "none".into()
                } else {
                    tables.join(", ")
                }
            )));
        }
    }
    let known = [
        "inventory_current",
        "inventory_transactions",
        "shipped_orders",
        "shipped_items",
        "workflows",
        "system_kpis",
    ];
    let not_adopted: Vec<String> = tables
        .iter()
        .filter(|t| !known.iter().any(|k| k.eq_ignore_ascii_case(t)))
        .map(|t| {
            let n: i64 = src
                .query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))
                .unwrap_or(0);
            format!("{t} ({n} rows)")
        })
        .collect();

    // The new file is built even with --check (in a temporary name, then removed): the
    // report then says exactly what adopting would do.
    let out_dir = fsutil::parent_dir(&o.out);
    if !out_dir.is_dir() {
        return Err(Error::usage(format!(
            "adopt: the directory {} does not exist",
            out_dir.display()
        )));
    }
    let building = install::Building::beside(&o.out, "adopt");
    let tmp = building.path().to_path_buf();
    let conn = building.create("adopt")?;
    conn.execute_batch(
        "CREATE TABLE adopt_rejected (
            id INTEGER PRIMARY KEY, source_table TEXT NOT NULL, source_rowid INTEGER,
            reason TEXT NOT NULL, fields TEXT NOT NULL)",
    )
    .map_err(sql("create adopt_rejected"))?;
    let mut found = Tally::default();
    let mut fixed = Tally::default();
    let mut counts = Vec::new();
    let mut loader = Loader::begin(&conn, "(adopted)")?;
    let reject = |table: &str, rowid: i64, reason: &str, row: &HashMap<String, Value>| {
        let fields: serde_json::Map<String, serde_json::Value> = row
            .iter()
            .map(|(k, v)| {
                let j = match v {
                    Value::Null => serde_json::Value::Null,
                    Value::Integer(i) => serde_json::json!(i),
                    Value::Real(f) => serde_json::json!(f),
                    Value::Text(t) => serde_json::json!(t),
                    Value::Blob(b) => serde_json::json!(format!("X'{}'", crate::fsutil::hex(b))),
                };
                (k.clone(), j)
            })
            .collect();
        conn.execute(
            "INSERT INTO adopt_rejected (source_table, source_rowid, reason, fields) VALUES (?1, ?2, ?3, ?4)",
            (table, rowid, reason, serde_json::Value::Object(fields).to_string()),
        )
        .map(|_| ())
        .map_err(sql("keep a rejected row"))
    };
    let now = crate::model::now_utc();

    // Products.
    let mut c = TableCount {
        table: "inventory_current".into(),
        ..TableCount::default()
    };
    let mut skus = std::collections::HashSet::new();
    for (rowid, row) in rows(&src, "inventory_current")? {
        c.old_rows += 1;
        let Some(sku) = text(get(&row, &["sku"]))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
        else {
            found.add("products without a sku (kept in adopt_rejected)", || {
                format!("row {rowid}")
            });
            reject("inventory_current", rowid, "no sku", &row)?;
            c.rejected += 1;
            continue;
        };
        if !skus.insert(sku.clone()) {
            found.add(
                "products listed twice (the first is kept, the others in adopt_rejected)",
                || sku.clone(),
            );
            reject("inventory_current", rowid, "the sku is listed twice", &row)?;
            c.rejected += 1;
            continue;
        }
        let name = text(get(&row, &["product_name", "name"]))
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| {
                fixed.add("products without a name, named by their sku", || {
                    sku.clone()
                });
                sku.clone()
            });
        let raw_q = get(&row, &["current_quantity", "quantity"]);
        let q = int(raw_q).unwrap_or_else(|| {
            if !matches!(raw_q, Value::Null) {
                found.add(
                    "stock levels that are not whole numbers (read as 0)",
                    || format!("{sku}: {}", shown(raw_q)),
                );
            }
            0
        });
        let rp = int(get(&row, &["reorder_point"])).unwrap_or(0);
        let rp = if rp < 0 {
            fixed.add("negative reorder points set to 0", || {
                format!("{sku}: {rp}")
            });
            0
        } else {
            rp
        };
        let updated = text(get(&row, &["last_updated", "updated_at"]))
            .and_then(|t| normalize::instant(&t))
            .unwrap_or_else(|| now.clone());
        loader.insert(
            "inventory_current",
            &[
                "sku",
                "product_name",
                "current_quantity",
                "reorder_point",
                "last_updated",
            ],
            &[
                Value::Text(sku),
                Value::Text(name),
                Value::Integer(q),
                Value::Integer(rp),
                Value::Text(updated),
            ],
        )?;
        c.adopted += 1;
    }
    counts.push(c);

    // The ledger, ids kept.
    let mut c = TableCount {
        table: "inventory_transactions".into(),
        ..TableCount::default()
    };
    let mut last_date: Option<String> = None;
    let mut types_read: HashMap<String, u64> = HashMap::new();
    for (rowid, row) in rows(&src, "inventory_transactions")? {
        c.old_rows += 1;
        let id = int(get(&row, &["id"])).unwrap_or(rowid);
        let sku = text(get(&row, &["sku"]))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let raw_type = text(get(&row, &["transaction_type", "type"])).unwrap_or_default();
        let Some(kind) = normalize::tx_type(&raw_type) else {
            found.add("movements of an unknown type (kept in adopt_rejected; the balancing covers their stock)", || format!("id {id}: {}", shown(get(&row, &["transaction_type", "type"]))));
            reject(
                "inventory_transactions",
                rowid,
                "unknown movement type",
                &row,
            )?;
            c.rejected += 1;
            continue;
        };
        if raw_type != kind.as_str() {
            *types_read
                .entry(format!("{raw_type:?} read as {}", kind.as_str()))
                .or_default() += 1;
        }
        if sku.is_empty() {
            found.add("movements without a sku (kept in adopt_rejected)", || {
                format!("id {id}")
            });
            reject("inventory_transactions", rowid, "no sku", &row)?;
            c.rejected += 1;
            continue;
        }
        let raw_q = get(&row, &["quantity"]);
        let Some(q) = int(raw_q) else {
            found.add(
                "movements whose quantity is not a whole number (kept in adopt_rejected)",
                || format!("id {id}: {}", shown(raw_q)),
            );
            reject(
                "inventory_transactions",
                rowid,
                "quantity is not a whole number",
                &row,
            )?;
            c.rejected += 1;
            continue;
        };
        let mut notes = text(get(&row, &["notes", "note"]));
        let remark = |n: &mut Option<String>, what: String| {
            *n = Some(match n.take() {
                Some(old) if !old.is_empty() => format!("{old} [adopt: {what}]"),
                _ => format!("[adopt: {what}]"),
            });
        };
        let (kind, q) = match normalize::quantity(kind, q) {
            Quantity::Kept(k, q) => (k, q),
            Quantity::SignDropped(k, q) => {
                fixed.add(
                    "negative quantities on Ship/Adjust Down read as their size",
                    || format!("id {id}: {} {}", kind.as_str(), -q),
                );
                (k, q)
            }
            Quantity::Reversed(k, q) => {
                found.add("negative quantities on Receive/Adjust Up", || {
                    format!("id {id}: {} -{q}", kind.as_str())
                });
                fixed.add(
                    "negative incoming movements recorded as Adjust Down (noted on the movement)",
                    || format!("id {id}"),
                );
                remark(&mut notes, format!("was {} -{q}", kind.as_str()));
                (k, q)
            }
            Quantity::Unusable => {
                found.add("movements of quantity 0 (kept in adopt_rejected)", || {
                    format!("id {id}")
                });
                reject(
                    "inventory_transactions",
                    rowid,
                    "quantity 0 moves nothing",
                    &row,
                )?;
                c.rejected += 1;
                continue;
            }
        };
        let raw_date = text(get(&row, &["date"])).unwrap_or_default();
        let created_raw = text(get(&row, &["created_at", "timestamp"]));
        let created = created_raw.as_deref().and_then(normalize::instant);
        let date = match normalize::date(&raw_date) {
            Some(d) => {
                if d != raw_date {
                    fixed.add("dates written another way, stored as YYYY-MM-DD", || {
                        format!("id {id}: {raw_date:?} -> {d}")
                    });
                }
                d
            }
            None => {
                let fallback = created
                    .as_ref()
                    .map(|c| c[..10].to_string())
                    .or_else(|| last_date.clone())
                    .unwrap_or_else(crate::model::today);
                found.add("movements with a date that cannot be read (the time it was recorded, else the movement before it; noted)", || format!("id {id}: {raw_date:?} -> {fallback}"));
                remark(
                    &mut notes,
                    format!("original date {:?}", crate::model::clip(&raw_date)),
                );
                fallback
            }
        };
        last_date = Some(date.clone());
        let created = created.unwrap_or_else(|| format!("{date}T00:00:00.000Z"));
        loader.insert(
            "inventory_transactions",
            &[
                "id",
                "date",
                "sku",
                "quantity",
                "transaction_type",
                "notes",
                "created_at",
            ],
            &[
                Value::Integer(id),
                Value::Text(date),
                Value::Text(sku),
                Value::Integer(q),
                Value::Text(kind.as_str().into()),
                notes.map_or(Value::Null, Value::Text),
                Value::Text(created),
            ],
        )?;
        c.adopted += 1;
    }
    counts.push(c);
    let mut spellings: Vec<(String, u64)> = types_read.into_iter().collect();
    spellings.sort();
    for (s, n) in spellings {
        fixed.add("movement types in another spelling", || {
            format!("{s} ({n} rows)")
        });
    }

    // Orders and shipped items (the old system had no order table and no link to movements).
    if has("shipped_orders") {
        let mut c = TableCount {
            table: "shipped_orders".into(),
            ..TableCount::default()
        };
        for (rowid, row) in rows(&src, "shipped_orders")? {
            c.old_rows += 1;
            let order = text(get(&row, &["order_number"])).filter(|s| !s.trim().is_empty());
            let day = text(get(&row, &["ship_date"])).and_then(|d| normalize::date(&d));
            let (Some(order), Some(day)) = (order, day) else {
                found.add(
                    "orders without a number or a readable date (kept in adopt_rejected)",
                    || format!("row {rowid}"),
                );
                reject("shipped_orders", rowid, "no order number or date", &row)?;
                c.rejected += 1;
                continue;
            };
            let created = text(get(&row, &["created_at"]))
                .and_then(|t| normalize::instant(&t))
                .unwrap_or_else(|| format!("{day}T00:00:00.000Z"));
            loader.insert(
                "shipped_orders",
                &[
                    "order_number",
                    "ship_date",
                    "item_count",
                    "total_units",
                    "created_at",
                ],
                &[
                    Value::Text(order),
                    Value::Text(day),
                    Value::Integer(int(get(&row, &["item_count"])).unwrap_or(0)),
                    Value::Integer(int(get(&row, &["total_units"])).unwrap_or(0)),
                    Value::Text(created),
                ],
            )?;
            c.adopted += 1;
        }
        counts.push(c);
    }
    if has("shipped_items") {
        let mut c = TableCount {
            table: "shipped_items".into(),
            ..TableCount::default()
        };
        for (rowid, row) in rows(&src, "shipped_items")? {
            c.old_rows += 1;
            let id = int(get(&row, &["id"])).unwrap_or(rowid);
            let day = text(get(&row, &["ship_date"])).and_then(|d| normalize::date(&d));
            let sku = text(get(&row, &["base_sku", "sku"])).filter(|s| !s.trim().is_empty());
            let order = text(get(&row, &["order_number"])).filter(|s| !s.trim().is_empty());
            let q = int(get(&row, &["quantity_shipped", "quantity"])).filter(|q| *q > 0);
            let (Some(day), Some(sku), Some(order), Some(q)) = (day, sku, order, q) else {
                found.add("shipped items without a readable date, sku, order or positive quantity (kept in adopt_rejected)", || format!("row {rowid}"));
                reject(
                    "shipped_items",
                    rowid,
                    "missing date, sku, order or quantity",
                    &row,
                )?;
                c.rejected += 1;
                continue;
            };
            let lot = text(get(&row, &["sku_lot", "lot"])).unwrap_or_else(|| sku.clone());
            loader.insert(
                "shipped_items",
                &[
                    "id",
                    "ship_date",
                    "sku_lot",
                    "base_sku",
                    "quantity_shipped",
                    "order_number",
                ],
                &[
                    Value::Integer(id),
                    Value::Text(day),
                    Value::Text(lot),
                    Value::Text(sku),
                    Value::Integer(q),
                    Value::Text(order),
                ],
            )?;
            c.adopted += 1;
        }
        counts.push(c);
    }
    if has("workflows") {
        let mut c = TableCount {
            table: "workflows".into(),
            ..TableCount::default()
        };
        for (rowid, row) in rows(&src, "workflows")? {
            c.old_rows += 1;
            let Some(name) = text(get(&row, &["name"])).filter(|s| !s.trim().is_empty()) else {
                reject("workflows", rowid, "no name", &row)?;
                c.rejected += 1;
                continue;
            };
            let status = text(get(&row, &["status"])).unwrap_or_else(|| "unknown".into());
            let updated = text(get(&row, &["updated_at", "last_run"]))
                .and_then(|t| normalize::instant(&t))
                .unwrap_or_else(|| now.clone());
            let version = int(get(&row, &["version"])).filter(|v| *v > 0).unwrap_or(1);
            loader.insert(
                "workflows",
                &["name", "status", "details", "version", "updated_at"],
                &[
                    Value::Text(name),
                    Value::Text(status),
                    text(get(&row, &["details"])).map_or(Value::Null, Value::Text),
                    Value::Integer(version),
                    Value::Text(updated),
                ],
            )?;
            c.adopted += 1;
        }
        counts.push(c);
    }
    if has("system_kpis") {
        let mut c = TableCount {
            table: "system_kpis".into(),
            ..TableCount::default()
        };
        for (rowid, row) in rows(&src, "system_kpis")? {
            c.old_rows += 1;
            let Some(day) = text(get(&row, &["snapshot_date"])).and_then(|d| normalize::date(&d))
            else {
                found.add(
                    "KPI days whose date cannot be read (kept in adopt_rejected)",
                    || format!("row {rowid}"),
                );
                reject("system_kpis", rowid, "the day cannot be read", &row)?;
                c.rejected += 1;
                continue;
            };
            let n = |k: &str| Value::Integer(int(get(&row, &[k])).unwrap_or(0).max(0));
            let updated = text(get(&row, &["updated_at", "created_at"]))
                .and_then(|t| normalize::instant(&t))
                .unwrap_or_else(|| format!("{day}T00:00:00.000Z"));
            loader.insert(
                "system_kpis",
                &[
                    "snapshot_date",
                    "orders_today",
                    "shipments_sent",
                    "pending_uploads",
                    "system_status",
                    "updated_at",
                ],
                &[
                    Value::Text(day),
                    n("orders_today"),
                    n("shipments_sent"),
                    n("pending_uploads"),
                    Value::Text(
                        text(get(&row, &["system_status"])).unwrap_or_else(|| "unknown".into()),
                    ),
                    Value::Text(updated),
                ],
            )?;
            c.adopted += 1;
        }
        counts.push(c);
    }
    drop(src);
    let reconciled = loader.finish(Reconcile::BalanceToStock {
        note: BALANCING_NOTE,
    })?;
    if !reconciled.balancing.is_empty() {
        found.add_all("skus whose recorded stock disagrees with their ledger (one balancing movement each, noted)", &reconciled.balancing);
    }
    if !reconciled.recreated_products.is_empty() {
        found.add_all(
            "movements or shipped items of skus the product table lacks (products recreated)",
            &reconciled.recreated_products,
        );
    }
    if !reconciled.negative_stock_zeroed.is_empty() {
        found.add_all(
            "negative stock levels (balanced to 0: count these products)",
            &reconciled.negative_stock_zeroed,
        );
    }
    if reconciled.recreated_orders > 0 {
        fixed.add(
            "orders recreated from their shipped items (the old system kept none)",
            || format!("{} orders", reconciled.recreated_orders),
        );
    }
    drop(conn);

    let conn = connection::open_plain(&tmp).map_err(sql("reopen the new database"))?;
    let checked = pragma_check(&conn, "integrity_check")?;
    let violations = verify::check(
        &conn,
        &VerifyOptions {
            allow_negative_stock: false,
            skip_integrity: true,
            skip_chain: false,
        },
    )?
    .violations();
    if checked != "ok" || !violations.is_empty() {
        return Err(Error::check_failed(format!(
            "adopt: the new database does not pass its checks ({checked}; {}); nothing was written. Please report this",
            violations.join("; ")
        )));
    }
    let output = if o.check_only {
        None
    } else {
        drop(conn);
        install::seal_built(&tmp, "adopt")?;
        building.name_as(
            &o.out,
            "adopt",
            &crate::store::lineage::Origin::new_database("adopt", &old.display().to_string()),
        )?;
        crate::file::oplog::record(
            &o.out,
            "adopt",
            &started,
            true,
            &serde_json::json!({
                "from": old.display().to_string(),
                "rows": counts.iter().map(|t| t.adopted).sum::<u64>(),
                "fixes": fixed.lines(),
                "balancing": reconciled.balancing.len(),
            }),
        );
        Some(o.out.clone())
    };
    Ok(AdoptReport {
        source: old.to_path_buf(),
        output,
        integrity,
        tables: counts,
        problems: found.lines(),
        fixes: fixed.lines(),
        reconciled,
        not_adopted,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

impl Tally {
    fn add_all(&mut self, kind: &str, items: &[String]) {
        for i in items {
            self.add(kind, || i.clone());
        }
    }
}
