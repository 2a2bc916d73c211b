//! The rows of each old table, read the way people wrote them and loaded into the new
//! database, or kept in `adopt_rejected` with the reason; every fix and finding counted in
//! the report's words. One method per table; never writes to the old file.

use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::Connection;

use super::normalize::{self, Quantity};
use super::{get, int, shown, sql, text, TableCount, Tally};
use crate::error::Result;
use crate::model::TxType;
use crate::store::Loader;

/// An old table's rows as (rowid, column name -> value).
pub(super) type Rows = Vec<(i64, HashMap<String, Value>)>;

/// What the ledger's earlier rows said: the day of the last movement (for a row whose date
/// cannot be read), and the spellings of movement types read.
#[derive(Default)]
struct LedgerSeen {
    last_date: Option<String>,
    types_read: HashMap<String, u64>,
}

/// One movement as adopted.
struct Movement {
    id: i64,
    date: String,
    sku: String,
    quantity: i64,
    kind: TxType,
    notes: Option<String>,
    created: String,
}

/// Appends `[adopt: what]` to a movement's notes.
fn remark(notes: &mut Option<String>, what: String) {
    *notes = Some(match notes.take() {
        Some(old) if !old.is_empty() => format!("{old} [adopt: {what}]"),
        _ => format!("[adopt: {what}]"),
    });
}

/// The adoption under way: where rows go, and what was found and fixed on the way.
pub(super) struct Adoption<'c> {
    /// The new database (for `adopt_rejected`).
    pub conn: &'c Connection,
    pub loader: Loader<'c>,
    /// What the old data breaks of ora's rules.
    pub found: Tally,
    /// What was changed to make it fit.
    pub fixed: Tally,
    /// Per table: old rows, adopted, rejected.
    pub counts: Vec<TableCount>,
    /// The time of the adoption, for rows that carry none.
    pub now: String,
}

impl Adoption<'_> {
    /// Keeps a row that cannot be adopted in `adopt_rejected`, with why and all its fields.
    fn reject(
        &self,
        table: &str,
        rowid: i64,
        reason: &str,
        row: &HashMap<String, Value>,
    ) -> Result<()> {
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
        self.conn
            .execute(
                "INSERT INTO adopt_rejected (source_table, source_rowid, reason, fields) VALUES (?1, ?2, ?3, ?4)",
                (table, rowid, reason, serde_json::Value::Object(fields).to_string()),
            )
            .map(|_| ())
            .map_err(sql("keep a rejected row"))
    }

    /// `inventory_current`: one product per sku (the first of a sku listed twice).
    ///
    /// Kept whole: one loop over the foreign table's rows that reads each column the way people
    /// wrote it and says, per row, what was kept, fixed or skipped.
    pub(super) fn products(&mut self, rows: Rows) -> Result<()> {
        let mut c = TableCount {
            table: "inventory_current".into(),
            ..TableCount::default()
        };
        let mut skus = std::collections::HashSet::new();
        for (rowid, row) in rows {
            c.old_rows += 1;
            let Some(sku) = text(get(&row, &["sku"]))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
            else {
                self.found
                    .add("products without a sku (kept in adopt_rejected)", || {
                        format!("row {rowid}")
                    });
                self.reject("inventory_current", rowid, "no sku", &row)?;
                c.rejected += 1;
                continue;
            };
            if !skus.insert(sku.clone()) {
                self.found.add(
                    "products listed twice (the first is kept, the others in adopt_rejected)",
                    || sku.clone(),
                );
                self.reject("inventory_current", rowid, "the sku is listed twice", &row)?;
                c.rejected += 1;
                continue;
            }
            let name = text(get(&row, &["product_name", "name"]))
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| {
                    self.fixed
                        .add("products without a name, named by their sku", || {
                            sku.clone()
                        });
                    sku.clone()
                });
            let raw_q = get(&row, &["current_quantity", "quantity"]);
            let q = int(raw_q).unwrap_or_else(|| {
                if !matches!(raw_q, Value::Null) {
                    self.found.add(
                        "stock levels that are not whole numbers (read as 0)",
                        || format!("{sku}: {}", shown(raw_q)),
                    );
                }
                0
            });
            let rp = int(get(&row, &["reorder_point"])).unwrap_or(0);
            let rp = if rp < 0 {
                self.fixed.add("negative reorder points set to 0", || {
                    format!("{sku}: {rp}")
                });
                0
            } else {
                rp
            };
            let updated = text(get(&row, &["last_updated", "updated_at"]))
                .and_then(|t| normalize::instant(&t))
                .unwrap_or_else(|| self.now.clone());
            self.loader.insert(
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
        self.counts.push(c);
        Ok(())
    }

    /// `inventory_transactions`, ids kept: types, signs and dates read the way people wrote them.
    pub(super) fn ledger(&mut self, rows: Rows) -> Result<()> {
        let mut c = TableCount {
            table: "inventory_transactions".into(),
            ..TableCount::default()
        };
        let mut seen = LedgerSeen::default();
        for (rowid, row) in rows {
            c.old_rows += 1;
            let Some(m) = self.movement(rowid, &row, &mut seen)? else {
                c.rejected += 1;
                continue;
            };
            seen.last_date = Some(m.date.clone());
            self.loader.insert(
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
                    Value::Integer(m.id),
                    Value::Text(m.date),
                    Value::Text(m.sku),
                    Value::Integer(m.quantity),
                    Value::Text(m.kind.as_str().into()),
                    m.notes.map_or(Value::Null, Value::Text),
                    Value::Text(m.created),
                ],
            )?;
            c.adopted += 1;
        }
        self.counts.push(c);
        let mut spellings: Vec<(String, u64)> = seen.types_read.into_iter().collect();
        spellings.sort();
        for (s, n) in spellings {
            self.fixed.add("movement types in another spelling", || {
                format!("{s} ({n} rows)")
            });
        }
        Ok(())
    }

    /// One old ledger row as a movement, or `None` when it was kept in `adopt_rejected`.
    fn movement(
        &mut self,
        rowid: i64,
        row: &HashMap<String, Value>,
        seen: &mut LedgerSeen,
    ) -> Result<Option<Movement>> {
        let table = "inventory_transactions";
        let id = int(get(row, &["id"])).unwrap_or(rowid);
        let sku = text(get(row, &["sku"]))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let raw_type = text(get(row, &["transaction_type", "type"])).unwrap_or_default();
        let Some(kind) = normalize::tx_type(&raw_type) else {
            self.found.add("movements of an unknown type (kept in adopt_rejected; the balancing covers their stock)", || format!("id {id}: {}", shown(get(row, &["transaction_type", "type"]))));
            self.reject(table, rowid, "unknown movement type", row)?;
            return Ok(None);
        };
        if raw_type != kind.as_str() {
            *seen
                .types_read
                .entry(format!("{raw_type:?} read as {}", kind.as_str()))
                .or_default() += 1;
        }
        if sku.is_empty() {
            self.found
                .add("movements without a sku (kept in adopt_rejected)", || {
                    format!("id {id}")
                });
            self.reject(table, rowid, "no sku", row)?;
            return Ok(None);
        }
        let raw_q = get(row, &["quantity"]);
        let Some(q) = int(raw_q) else {
            self.found.add(
                "movements whose quantity is not a whole number (kept in adopt_rejected)",
                || format!("id {id}: {}", shown(raw_q)),
            );
            self.reject(table, rowid, "quantity is not a whole number", row)?;
            return Ok(None);
        };
        let mut notes = text(get(row, &["notes", "note"]));
        let Some((kind, q)) = self.signed(id, kind, q, &mut notes) else {
            self.reject(table, rowid, "quantity 0 moves nothing", row)?;
            return Ok(None);
        };
        let created = text(get(row, &["created_at", "timestamp"]))
            .as_deref()
            .and_then(normalize::instant);
        let raw_date = text(get(row, &["date"])).unwrap_or_default();
        let date = self.day(id, &raw_date, created.as_deref(), seen, &mut notes);
        Ok(Some(Movement {
            created: created.unwrap_or_else(|| format!("{date}T00:00:00.000Z")),
            id,
            date,
            sku,
            quantity: q,
            kind,
            notes,
        }))
    }

    /// The movement's type and size from a signed quantity; `None` for a quantity of 0.
    fn signed(
        &mut self,
        id: i64,
        kind: TxType,
        q: i64,
        notes: &mut Option<String>,
    ) -> Option<(TxType, i64)> {
        match normalize::quantity(kind, q) {
            Quantity::Kept(k, q) => Some((k, q)),
            Quantity::SignDropped(k, q) => {
                self.fixed.add(
                    "negative quantities on Ship/Adjust Down read as their size",
                    || format!("id {id}: {} {}", kind.as_str(), -q),
                );
                Some((k, q))
            }
            Quantity::Reversed(k, q) => {
                self.found
                    .add("negative quantities on Receive/Adjust Up", || {
                        format!("id {id}: {} -{q}", kind.as_str())
                    });
                self.fixed.add(
                    "negative incoming movements recorded as Adjust Down (noted on the movement)",
                    || format!("id {id}"),
                );
                remark(notes, format!("was {} -{q}", kind.as_str()));
                Some((k, q))
            }
            Quantity::Unusable => {
                self.found
                    .add("movements of quantity 0 (kept in adopt_rejected)", || {
                        format!("id {id}")
                    });
                None
            }
        }
    }

    /// The movement's day: its date as written, else the day it was recorded, else the day of
    /// the movement before it (noted on the movement).
    fn day(
        &mut self,
        id: i64,
        raw_date: &str,
        created: Option<&str>,
        seen: &LedgerSeen,
        notes: &mut Option<String>,
    ) -> String {
        if let Some(d) = normalize::date(raw_date) {
            if d != raw_date {
                self.fixed
                    .add("dates written another way, stored as YYYY-MM-DD", || {
                        format!("id {id}: {raw_date:?} -> {d}")
                    });
            }
            return d;
        }
        let fallback = created
            .map(|c| c[..10].to_string())
            .or_else(|| seen.last_date.clone())
            .unwrap_or_else(crate::model::today);
        self.found.add("movements with a date that cannot be read (the time it was recorded, else the movement before it; noted)", || format!("id {id}: {raw_date:?} -> {fallback}"));
        remark(
            notes,
            format!("original date {:?}", crate::model::clip(raw_date)),
        );
        fallback
    }

    /// `shipped_orders` (the old system had no link to movements).
    pub(super) fn orders(&mut self, rows: Rows) -> Result<()> {
        let mut c = TableCount {
            table: "shipped_orders".into(),
            ..TableCount::default()
        };
        for (rowid, row) in rows {
            c.old_rows += 1;
            let order = text(get(&row, &["order_number"])).filter(|s| !s.trim().is_empty());
            let day = text(get(&row, &["ship_date"])).and_then(|d| normalize::date(&d));
            let (Some(order), Some(day)) = (order, day) else {
                self.found.add(
                    "orders without a number or a readable date (kept in adopt_rejected)",
                    || format!("row {rowid}"),
                );
                self.reject("shipped_orders", rowid, "no order number or date", &row)?;
                c.rejected += 1;
                continue;
            };
            let created = text(get(&row, &["created_at"]))
                .and_then(|t| normalize::instant(&t))
                .unwrap_or_else(|| format!("{day}T00:00:00.000Z"));
            self.loader.insert(
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
        self.counts.push(c);
        Ok(())
    }

    /// `shipped_items`.
    pub(super) fn items(&mut self, rows: Rows) -> Result<()> {
        let mut c = TableCount {
            table: "shipped_items".into(),
            ..TableCount::default()
        };
        for (rowid, row) in rows {
            c.old_rows += 1;
            let id = int(get(&row, &["id"])).unwrap_or(rowid);
            let day = text(get(&row, &["ship_date"])).and_then(|d| normalize::date(&d));
            let sku = text(get(&row, &["base_sku", "sku"])).filter(|s| !s.trim().is_empty());
            let order = text(get(&row, &["order_number"])).filter(|s| !s.trim().is_empty());
            let q = int(get(&row, &["quantity_shipped", "quantity"])).filter(|q| *q > 0);
            let (Some(day), Some(sku), Some(order), Some(q)) = (day, sku, order, q) else {
                self.found.add("shipped items without a readable date, sku, order or positive quantity (kept in adopt_rejected)", || format!("row {rowid}"));
                self.reject(
                    "shipped_items",
                    rowid,
                    "missing date, sku, order or quantity",
                    &row,
                )?;
                c.rejected += 1;
                continue;
            };
            let lot = text(get(&row, &["sku_lot", "lot"])).unwrap_or_else(|| sku.clone());
            self.loader.insert(
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
        self.counts.push(c);
        Ok(())
    }

    /// `workflows`.
    pub(super) fn workflows(&mut self, rows: Rows) -> Result<()> {
        let mut c = TableCount {
            table: "workflows".into(),
            ..TableCount::default()
        };
        for (rowid, row) in rows {
            c.old_rows += 1;
            let Some(name) = text(get(&row, &["name"])).filter(|s| !s.trim().is_empty()) else {
                self.reject("workflows", rowid, "no name", &row)?;
                c.rejected += 1;
                continue;
            };
            let status = text(get(&row, &["status"])).unwrap_or_else(|| "unknown".into());
            let updated = text(get(&row, &["updated_at", "last_run"]))
                .and_then(|t| normalize::instant(&t))
                .unwrap_or_else(|| self.now.clone());
            let version = int(get(&row, &["version"])).filter(|v| *v > 0).unwrap_or(1);
            self.loader.insert(
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
        self.counts.push(c);
        Ok(())
    }

    /// `system_kpis`, one row per day.
    pub(super) fn kpis(&mut self, rows: Rows) -> Result<()> {
        let mut c = TableCount {
            table: "system_kpis".into(),
            ..TableCount::default()
        };
        for (rowid, row) in rows {
            c.old_rows += 1;
            let Some(day) = text(get(&row, &["snapshot_date"])).and_then(|d| normalize::date(&d))
            else {
                self.found.add(
                    "KPI days whose date cannot be read (kept in adopt_rejected)",
                    || format!("row {rowid}"),
                );
                self.reject("system_kpis", rowid, "the day cannot be read", &row)?;
                c.rejected += 1;
                continue;
            };
            let n = |k: &str| Value::Integer(int(get(&row, &[k])).unwrap_or(0).max(0));
            let updated = text(get(&row, &["updated_at", "created_at"]))
                .and_then(|t| normalize::instant(&t))
                .unwrap_or_else(|| format!("{day}T00:00:00.000Z"));
            self.loader.insert(
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
        self.counts.push(c);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c, ":memory:").unwrap();
        c.execute_batch(
            "CREATE TABLE adopt_rejected (id INTEGER PRIMARY KEY, source_table TEXT NOT NULL,
             source_rowid INTEGER, reason TEXT NOT NULL, fields TEXT NOT NULL)",
        )
        .unwrap();
        c
    }

    fn row(pairs: &[(&str, Value)]) -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn adoption(conn: &Connection) -> Adoption<'_> {
        Adoption {
            conn,
            loader: Loader::begin(conn, "(adopted)").unwrap(),
            found: Tally::default(),
            fixed: Tally::default(),
            counts: Vec::new(),
            now: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    // A product without a sku, and a sku listed twice, are kept aside; a missing name is the sku.
    #[test]
    fn products_keep_one_row_per_sku() {
        let conn = new_db();
        let mut a = adoption(&conn);
        a.products(vec![
            (1, row(&[("sku", t("A")), ("current_quantity", t("5"))])),
            (2, row(&[("sku", t("A")), ("product_name", t("again"))])),
            (3, row(&[("product_name", t("no sku"))])),
        ])
        .unwrap();
        let c = &a.counts[0];
        assert_eq!((c.old_rows, c.adopted, c.rejected), (3, 1, 2));
        assert!(a.fixed.lines()[0].starts_with("products without a name"));
        let rejected: i64 = conn
            .query_row("SELECT count(*) FROM adopt_rejected", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rejected, 2);
    }

    // Types in other spellings, signs, zero quantities and unreadable dates, each as the
    // report says.
    #[test]
    fn movements_are_read_the_way_people_wrote_them() {
        let conn = new_db();
        let mut a = adoption(&conn);
        a.products(vec![(
            1,
            row(&[("sku", t("A")), ("current_quantity", t("100"))]),
        )])
        .unwrap();
        let mv = |id: i64, ty: &str, q: i64, date: &str| {
            (
                id,
                row(&[
                    ("id", Value::Integer(id)),
                    ("sku", t("A")),
                    ("transaction_type", t(ty)),
                    ("quantity", Value::Integer(q)),
                    ("date", t(date)),
                ]),
            )
        };
        a.ledger(vec![
            mv(1, "receive", 10, "2025-03-01"),
            mv(2, "Ship", -3, "01/03/2025"),
            mv(3, "Receive", -2, "2025-03-02"),
            mv(4, "Ship", 0, "2025-03-02"),
            mv(5, "Ship", 1, "someday"),
            mv(6, "Steal", 1, "2025-03-02"),
        ])
        .unwrap();
        let c = &a.counts[1];
        assert_eq!((c.old_rows, c.adopted, c.rejected), (6, 4, 2));
        let notes: Vec<(i64, String, Option<String>, String)> = {
            let mut st = conn
                .prepare("SELECT id, transaction_type, notes, date FROM inventory_transactions ORDER BY id")
                .unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        assert_eq!(notes[0].1, "Receive");
        assert_eq!(notes[1].1, "Ship");
        assert_eq!(notes[2].1, "Adjust Down");
        assert!(notes[2].2.as_deref().unwrap().contains("was Receive -2"));
        // The unreadable date takes the day of the movement before it.
        assert_eq!(notes[3].3, "2025-03-02");
        assert!(notes[3].2.as_deref().unwrap().contains("original date"));
        let fixed = a.fixed.lines().join("\n");
        assert!(
            fixed.contains("movement types in another spelling"),
            "{fixed}"
        );
        assert!(fixed.contains("negative quantities on Ship"), "{fixed}");
        let found = a.found.lines().join("\n");
        assert!(
            found.contains("quantity 0") && found.contains("unknown type"),
            "{found}"
        );
    }
}
