//! Shipments: an order with items becomes one `shipped_orders` row, one `shipped_items` row per
//! item and one Ship movement per item, all or nothing, in the writer's transaction.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::error::{Result, SqlContext, StoreError};
use super::ledger::{self, Movement, MovementResult, Rules};
use crate::model::{self, TxType};

/// Most items one order may carry.
const MAX_ITEMS: usize = 1_000;

/// One line of an order: a quantity of a base sku, optionally from a named lot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipItem {
    pub sku: String,
    pub quantity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<String>,
}

/// An order leaving the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    pub order_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_date: Option<String>,
    pub items: Vec<ShipItem>,
}

/// What a recorded shipment did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentResult {
    pub order_number: String,
    pub ship_date: String,
    pub total_units: i64,
    pub movements: Vec<MovementResult>,
}

impl Shipment {
    pub fn validate(&self) -> std::result::Result<(), String> {
        model::validate_label("order number", &self.order_number, model::MAX_SKU_LEN)?;
        if let Some(d) = &self.ship_date {
            model::validate_date("ship date", d)?;
        }
        if self.items.is_empty() {
            return Err(format!("order {} has no items", self.order_number));
        }
        if self.items.len() > MAX_ITEMS {
            return Err(format!(
                "order {} has {} items; the limit is {MAX_ITEMS}",
                self.order_number,
                self.items.len()
            ));
        }
        for (i, item) in self.items.iter().enumerate() {
            let at = |e: String| format!("item {}: {e}", i + 1);
            model::validate_sku(&item.sku).map_err(at)?;
            model::validate_quantity(item.quantity).map_err(at)?;
            if let Some(lot) = &item.lot {
                model::validate_label("lot", lot, model::MAX_SKU_LEN).map_err(at)?;
            }
        }
        Ok(())
    }
}

/// Records a shipment; any failing item (unknown sku, not enough stock) fails the whole order.
///
/// Kept whole: an order and its items are one all-or-nothing unit inside the caller's transaction:
/// the idempotency check, the order row, and each item's movement; an item that fails fails the
/// order, which reads best in one place.
pub fn record(
    conn: &Connection,
    s: &Shipment,
    request_id: Option<&str>,
    rules: Rules,
) -> Result<ShipmentResult> {
    s.validate().map_err(StoreError::invalid)?;
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT ship_date FROM shipped_orders WHERE order_number = ?1
             UNION ALL SELECT ship_date FROM archived_orders WHERE order_number = ?1",
        )
        .and_then(|mut st| st.query_row([&s.order_number], |r| r.get(0)).optional())
        .ctx("read order")?;
    if let Some(day) = existing {
        return Err(StoreError::conflict(format!(
            "order {} was already shipped on {day}; an order is recorded once",
            s.order_number
        )));
    }
    let ship_date = s.ship_date.clone().unwrap_or_else(model::today);
    let total_units: i64 = s.items.iter().map(|i| i.quantity).sum();
    conn.prepare_cached(
        "INSERT INTO shipped_orders (order_number, ship_date, item_count, total_units, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut st| {
        st.execute((
            &s.order_number,
            &ship_date,
            s.items.len() as i64,
            total_units,
            model::now_utc(),
        ))
    })
    .ctx("record order")?;
    let mut movements = Vec::with_capacity(s.items.len());
    for (i, item) in s.items.iter().enumerate() {
        let m = Movement {
            sku: item.sku.clone(),
            kind: TxType::Ship,
            quantity: item.quantity,
            date: Some(ship_date.clone()),
            notes: Some(format!("order {}", s.order_number)),
            allow_future: true,
        };
        let tag = request_id.map(|r| format!("{r}#{}", i + 1));
        let moved = ledger::apply(conn, &m, tag.as_deref(), rules).map_err(|e| {
            use super::StoreKind::{Conflict, Invalid, NotFound};
            if !matches!(e.kind(), NotFound | Conflict | Invalid) {
                return e;
            }
            StoreError::conflict(format!(
                "order {} item {}: {}; nothing of the order was recorded",
                s.order_number,
                i + 1,
                e.message()
            ))
        })?;
        conn.prepare_cached(
            "INSERT INTO shipped_items
                 (ship_date, sku_lot, base_sku, quantity_shipped, order_number, transaction_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut st| {
            st.execute((
                &ship_date,
                item.lot.as_deref().unwrap_or(&item.sku),
                &item.sku,
                item.quantity,
                &s.order_number,
                moved.id,
            ))
        })
        .ctx("record shipped item")?;
        movements.push(moved);
    }
    Ok(ShipmentResult {
        order_number: s.order_number.clone(),
        ship_date,
        total_units,
        movements,
    })
}

/// A recorded order, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_number: String,
    pub ship_date: String,
    pub item_count: i64,
    pub total_units: i64,
    pub created_at: String,
}

/// One shipped item of an order, with the ledger movement it became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedItem {
    pub sku: String,
    /// The lot named when it was shipped, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lot: Option<String>,
    pub quantity: i64,
    pub ledger_id: Option<i64>,
}

/// An order with its items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: Order,
    pub items: Vec<ShippedItem>,
}

/// Most orders one listing returns.
pub const MAX_LISTED_ORDERS: u32 = 10_000;

fn order_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Order> {
    Ok(Order {
        order_number: r.get(0)?,
        ship_date: r.get(1)?,
        item_count: r.get(2)?,
        total_units: r.get(3)?,
        created_at: r.get(4)?,
    })
}

/// Orders shipped on or after `since` (all when `None`), newest first, at most `limit`.
pub fn list(conn: &Connection, since: Option<&str>, limit: u32) -> Result<Vec<Order>> {
    list_after(conn, since, None, limit)
}

/// A page of [`list`]: the orders that come after `cursor` (an order of an earlier page) in
/// its order: ship date, then recording time, newest first, then order number.
pub fn list_after(
    conn: &Connection,
    since: Option<&str>,
    cursor: Option<&Order>,
    limit: u32,
) -> Result<Vec<Order>> {
    let ctx = "list shipments";
    let mut st = conn
        .prepare_cached(
            "SELECT order_number, ship_date, item_count, total_units, created_at
               FROM shipped_orders WHERE (?1 IS NULL OR ship_date >= ?1)
                AND (?3 IS NULL OR ship_date < ?3
                     OR (ship_date = ?3 AND (created_at < ?4
                         OR (created_at = ?4 AND order_number > ?5))))
              ORDER BY ship_date DESC, created_at DESC, order_number LIMIT ?2",
        )
        .ctx(ctx)?;
    let rows = st
        .query_map(
            (
                since,
                i64::from(limit.clamp(1, MAX_LISTED_ORDERS)),
                cursor.map(|c| c.ship_date.as_str()),
                cursor.map(|c| c.created_at.as_str()),
                cursor.map(|c| c.order_number.as_str()),
            ),
            order_from,
        )
        .ctx(ctx)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
}

/// One order with its items, if it was recorded.
pub fn get(conn: &Connection, order_number: &str) -> Result<Option<OrderDetail>> {
    let ctx = "read shipment";
    let order = conn
        .prepare_cached(
            "SELECT order_number, ship_date, item_count, total_units, created_at
               FROM shipped_orders WHERE order_number = ?1",
        )
        .and_then(|mut st| st.query_row([order_number], order_from).optional())
        .ctx(ctx)?;
    let Some(order) = order else {
        return Ok(None);
    };
    let mut st = conn
        .prepare_cached(
            "SELECT base_sku, CASE WHEN sku_lot <> base_sku THEN sku_lot END, quantity_shipped,
                    transaction_id
               FROM shipped_items WHERE order_number = ?1 ORDER BY id",
        )
        .ctx(ctx)?;
    let items = st
        .query_map([order_number], |r| {
            Ok(ShippedItem {
                sku: r.get(0)?,
                lot: r.get(1)?,
                quantity: r.get(2)?,
                ledger_id: r.get(3)?,
            })
        })
        .ctx(ctx)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .ctx(ctx)?;
    Ok(Some(OrderDetail { order, items }))
}

/// An archive of old shipments, as recorded in the live database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentArchive {
    pub id: i64,
    pub file: String,
    /// Orders shipped before this day are in it.
    pub before: String,
    pub orders: i64,
    pub items: i64,
    pub sha256: String,
    pub created_at: String,
}

/// What is moved to an archive: the orders shipped before a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRequest {
    pub before: String,
    /// The orders written to the file (only these are removed).
    pub orders: Vec<String>,
    pub items: i64,
    pub file: String,
    pub sha256: String,
}

/// Rows as they are stored, column by column (in [`ORDER_COLUMNS`] / [`ITEM_COLUMNS`] order).
type RawRows = Vec<Vec<rusqlite::types::Value>>;

/// The raw rows of the orders shipped before `before` and of their items (for writing them to
/// an archive).
pub fn rows_before(conn: &Connection, before: &str) -> Result<(RawRows, RawRows)> {
    let ctx = "read old shipments";
    let take = |sql: &str| -> Result<RawRows> {
        let mut st = conn.prepare(sql).ctx(ctx)?;
        let n = st.column_count();
        let rows = st
            .query_map([before], |r| {
                (0..n)
                    .map(|i| r.get(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .ctx(ctx)?;
        rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
    };
    Ok((
        take(&format!(
            "SELECT {ORDER_COLUMNS} FROM shipped_orders WHERE ship_date < ?1 ORDER BY order_number"
        ))?,
        take(&format!(
            "SELECT {ITEM_COLUMNS} FROM shipped_items
              WHERE order_number IN (SELECT order_number FROM shipped_orders WHERE ship_date < ?1)
              ORDER BY id"
        ))?,
    ))
}

/// The columns an archive copies, in order (the archive's tables have exactly these).
pub const ORDER_COLUMNS: &str = "order_number, ship_date, item_count, total_units, created_at";
pub const ITEM_COLUMNS: &str =
    "id, ship_date, sku_lot, base_sku, quantity_shipped, order_number, transaction_id";

/// The tables of an archive file: the live ones' columns, without the references into the
/// live ledger (the archive stands on its own).
pub const ARCHIVE_SCHEMA: &str = "
CREATE TABLE shipped_orders (
    order_number TEXT PRIMARY KEY NOT NULL,
    ship_date    TEXT NOT NULL,
    item_count   INTEGER NOT NULL,
    total_units  INTEGER NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE TABLE shipped_items (
    id               INTEGER PRIMARY KEY,
    ship_date        TEXT NOT NULL,
    sku_lot          TEXT NOT NULL,
    base_sku         TEXT NOT NULL,
    quantity_shipped INTEGER NOT NULL,
    order_number     TEXT NOT NULL,
    transaction_id   INTEGER
);
CREATE INDEX shipped_items_order ON shipped_items(order_number);
";

/// Removes archived orders from the live tables, in the writer's transaction, and records
/// which file holds them. An order that changed since it was read is not removed (refused).
pub fn remove_archived(conn: &Connection, a: &ArchiveRequest) -> Result<ShipmentArchive> {
    let ctx = "remove archived shipments";
    let now = model::now_utc();
    conn.prepare_cached(
        "INSERT INTO shipment_archives (file, before, orders, items, sha256, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut st| {
        st.execute((
            &a.file,
            &a.before,
            a.orders.len() as i64,
            a.items,
            &a.sha256,
            &now,
        ))
    })
    .ctx(ctx)?;
    let id = conn.last_insert_rowid();
    let mut items_removed = 0i64;
    for order in &a.orders {
        let day: Option<String> = conn
            .prepare_cached(
                "SELECT ship_date FROM shipped_orders WHERE order_number = ?1 AND ship_date < ?2",
            )
            .and_then(|mut st| st.query_row([order, &a.before], |r| r.get(0)).optional())
            .ctx(ctx)?;
        let Some(day) = day else {
            return Err(StoreError::conflict(format!(
                "order {order} changed while it was being archived; nothing was removed, run the archive again"
            )));
        };
        items_removed += conn
            .prepare_cached("DELETE FROM shipped_items WHERE order_number = ?1")
            .and_then(|mut st| st.execute([order]))
            .ctx(ctx)? as i64;
        conn.prepare_cached("DELETE FROM shipped_orders WHERE order_number = ?1")
            .and_then(|mut st| st.execute([order]))
            .ctx(ctx)?;
        conn.prepare_cached(
            "INSERT INTO archived_orders (order_number, ship_date, archive_id) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut st| st.execute((order, &day, id)))
        .ctx(ctx)?;
    }
    if items_removed != a.items {
        return Err(StoreError::conflict(format!(
            "the archived orders had {items_removed} items, not the {} written to the file; nothing was removed, run the archive again",
            a.items
        )));
    }
    Ok(ShipmentArchive {
        id,
        file: a.file.clone(),
        before: a.before.clone(),
        orders: a.orders.len() as i64,
        items: a.items,
        sha256: a.sha256.clone(),
        created_at: now,
    })
}

/// Every archive, newest first.
pub fn archives(conn: &Connection) -> Result<Vec<ShipmentArchive>> {
    let ctx = "list shipment archives";
    let mut st = conn
        .prepare_cached(
            "SELECT id, file, before, orders, items, sha256, created_at FROM shipment_archives ORDER BY id DESC",
        )
        .ctx(ctx)?;
    let rows = st
        .query_map([], |r| {
            Ok(ShipmentArchive {
                id: r.get(0)?,
                file: r.get(1)?,
                before: r.get(2)?,
                orders: r.get(3)?,
                items: r.get(4)?,
                sha256: r.get(5)?,
                created_at: r.get(6)?,
            })
        })
        .ctx(ctx)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
}

/// The archive file holding `order`, if it was archived.
pub fn archived_in(conn: &Connection, order: &str) -> Result<Option<String>> {
    conn.prepare_cached(
        "SELECT a.file FROM archived_orders o JOIN shipment_archives a ON a.id = o.archive_id
          WHERE o.order_number = ?1",
    )
    .and_then(|mut st| st.query_row([order], |r| r.get(0)).optional())
    .ctx("read archived order")
}
