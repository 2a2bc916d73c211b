//! Shipments: an order with items becomes one `shipped_orders` row, one `shipped_items` row per
//! item and one Ship movement per item, all or nothing, in the writer's transaction.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::error::{Result, SqlContext, StoreError};
use super::ledger::{self, Movement, MovementResult, Rules};
use crate::model::{self, TxType};

pub use super::archived_shipments::{
    archived_in, archives, copy_before, next_slice, remove_archived, ArchiveCopy, ArchiveRequest,
    ArchivedOrder, ShipmentArchive, ARCHIVE_SCHEMA,
};

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
