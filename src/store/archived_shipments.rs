//! Shipment archives, the live database's side: copying the orders shipped before a day (and
//! their items) from one read snapshot into an archive file's tables, row by row, and then
//! removing them from the live tables in slices, one short writer transaction each, that also
//! record which file holds which order. Never removes an order the archive file does not hold,
//! nor one that changed since it was copied; never holds all the old orders in memory.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::error::{Result, SqlContext, StoreError};
use crate::model;

/// An archive of old shipments, as recorded in the live database: the orders and items counted
/// are those removed from the live tables so far (all of the file's, unless a run stopped
/// part-way).
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

/// One slice of an archive's removal: some of the orders the file holds, in order. The
/// first slice (`archive: None`) also records the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRequest {
    pub before: String,
    /// The orders of this slice, in order; the writer removes them from the first on, as many
    /// as it can in [`super::capture::SLICE_WORK`].
    pub orders: Vec<ArchivedOrder>,
    pub file: String,
    pub sha256: String,
    /// The archive recorded by the first slice; none for the first slice itself.
    #[serde(default)]
    pub archive: Option<i64>,
    /// How long the slice may work, in milliseconds (none: [`super::capture::SLICE_WORK`]);
    /// it always removes at least one order.
    #[serde(default)]
    pub work_ms: Option<u64>,
}

impl ArchiveRequest {
    /// The first slice of the removal of the orders shipped before `before` that `file`
    /// (with its checksum) holds: it records the archive; the remover offers its orders.
    pub fn first(before: &str, file: &str, sha256: &str) -> ArchiveRequest {
        ArchiveRequest {
            before: before.to_string(),
            orders: Vec::new(),
            file: file.to_string(),
            sha256: sha256.to_string(),
            archive: None,
            work_ms: None,
        }
    }
}

/// An order the archive file holds, with its number of items there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedOrder {
    pub order: String,
    pub items: i64,
}

/// The columns an archive copies, in order (the archive's tables have exactly these).
const ORDER_COLUMNS: &str = "order_number, ship_date, item_count, total_units, created_at";
const ITEM_COLUMNS: &str =
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

/// What [`copy_before`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveCopy {
    pub orders: i64,
    pub items: i64,
}

/// Copies the orders shipped before `before`, and their items, from one read snapshot of
/// `live` into the archive tables of `into` (made with [`ARCHIVE_SCHEMA`], inside the caller's
/// transaction), one row at a time, committing `into` every [`COPY_CHUNK`] rows.
pub fn copy_before(live: &Connection, before: &str, into: &Connection) -> Result<ArchiveCopy> {
    let ctx = "copy old shipments";
    live.execute_batch("BEGIN").ctx(ctx)?;
    let copied = (|| {
        let [orders, items] = copy_selects();
        Ok(ArchiveCopy {
            orders: copy_rows(live, into, "shipped_orders", ORDER_COLUMNS, &orders, before)?,
            items: copy_rows(live, into, "shipped_items", ITEM_COLUMNS, &items, before)?,
        })
    })();
    // A read transaction: ending it cannot lose anything.
    let _ = live.execute_batch("COMMIT");
    copied
}

/// The two reads of [`copy_before`]: the old orders, and their items. The items are read by a
/// join, not `IN (SELECT ...)`: that list, and the sort after it, would be held in memory
/// (every old order's number); the join walks the items in id order and looks each order up.
fn copy_selects() -> [String; 2] {
    let items = ITEM_COLUMNS
        .split(", ")
        .map(|c| format!("i.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    [
        format!(
            "SELECT {ORDER_COLUMNS} FROM shipped_orders WHERE ship_date < ?1 ORDER BY order_number"
        ),
        format!(
            "SELECT {items} FROM shipped_items i
               JOIN shipped_orders o ON o.order_number = i.order_number
              WHERE o.ship_date < ?1 ORDER BY i.id"
        ),
    ]
}

/// Rows the archive file takes between two of its commits. The file is a scratch copy until
/// it is checked and compressed, so a commit is not a promise; it sends the pages written so
/// far to the disk a few MB at a time, rather than hundreds of MB at the end, in front of the
/// server's commits on the same disk.
const COPY_CHUNK: i64 = 20_000;

/// The rows `select` reads from `live`, inserted into `table` of `into`; their number.
fn copy_rows(
    live: &Connection,
    into: &Connection,
    table: &str,
    cols: &str,
    select: &str,
    before: &str,
) -> Result<i64> {
    let ctx = "copy old shipments";
    let n = cols.split(',').count();
    let marks = vec!["?"; n].join(", ");
    let mut put = into
        .prepare(&format!("INSERT INTO {table} ({cols}) VALUES ({marks})"))
        .ctx("write the archive")?;
    let mut st = live.prepare(select).ctx(ctx)?;
    let mut rows = st.query([before]).ctx(ctx)?;
    let mut count = 0i64;
    while let Some(r) = rows.next().ctx(ctx)? {
        let values = (0..n)
            .map(|i| r.get::<_, Value>(i))
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx(ctx)?;
        put.execute(rusqlite::params_from_iter(values.iter()))
            .ctx("write the archive")?;
        count += 1;
        if count % COPY_CHUNK == 0 {
            into.execute_batch("COMMIT; BEGIN")
                .ctx("write the archive")?;
        }
    }
    Ok(count)
}

/// The next orders of an archive file after `after` (in order-number order), as many as fit
/// in `rows` live rows (an order and its items; at least one order), each with its items'
/// count.
pub fn next_slice(
    archive: &Connection,
    after: Option<&str>,
    rows: usize,
) -> Result<Vec<ArchivedOrder>> {
    let ctx = "read the archive's orders";
    let mut st = archive
        .prepare_cached(
            "SELECT o.order_number,
                    (SELECT count(*) FROM shipped_items i WHERE i.order_number = o.order_number)
               FROM shipped_orders o WHERE o.order_number > ?1 ORDER BY o.order_number LIMIT ?2",
        )
        .ctx(ctx)?;
    let limit = i64::try_from(rows.max(1)).unwrap_or(i64::MAX);
    let mut found = st.query((after.unwrap_or(""), limit)).ctx(ctx)?;
    let (mut orders, mut taken) = (Vec::new(), 0usize);
    while let Some(r) = found.next().ctx(ctx)? {
        let (order, items): (String, i64) = (r.get(0).ctx(ctx)?, r.get(1).ctx(ctx)?);
        let cost = 1 + usize::try_from(items).unwrap_or(usize::MAX);
        if !orders.is_empty() && taken.saturating_add(cost) > rows {
            break;
        }
        taken = taken.saturating_add(cost);
        orders.push(ArchivedOrder { order, items });
    }
    Ok(orders)
}

/// Removes archived orders from the live tables, in the writer's transaction, and records
/// which file holds them (the first slice records the archive itself): the slice's orders from
/// the first on, stopping once its time (`work_ms`) has been spent (a large file
/// whose pages are not in memory takes many times longer per order). Returns the archive as
/// recorded; its `orders` say how far the removal has come. An order that changed since it
/// was copied refuses the slice: nothing of it is removed.
pub fn remove_archived(conn: &Connection, a: &ArchiveRequest) -> Result<ShipmentArchive> {
    let ctx = "remove archived shipments";
    let started = std::time::Instant::now();
    let work = a
        .work_ms
        .map_or(super::capture::SLICE_WORK, std::time::Duration::from_millis);
    let id = match a.archive {
        Some(id) => id,
        None => record_archive(conn, a)?,
    };
    let (mut orders, mut items) = (0i64, 0i64);
    for o in &a.orders {
        let removed = remove_order(conn, &o.order, &a.before, id)?;
        if removed != o.items {
            return Err(StoreError::conflict(format!(
                "order {} had {removed} items, not the {} written to the file; this slice was not removed, run the archive again",
                o.order, o.items
            )));
        }
        (orders, items) = (orders + 1, items + removed);
        if started.elapsed() >= work {
            break;
        }
    }
    conn.prepare_cached(
        "UPDATE shipment_archives SET orders = orders + ?1, items = items + ?2 WHERE id = ?3",
    )
    .and_then(|mut st| st.execute((orders, items, id)))
    .ctx(ctx)?;
    archive(conn, id)?.ok_or_else(|| {
        StoreError::conflict(format!(
            "shipment archive {id} is not recorded; run the archive again"
        ))
    })
}

/// Records a new archive holding no removed order yet; its id.
fn record_archive(conn: &Connection, a: &ArchiveRequest) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO shipment_archives (file, before, orders, items, sha256, created_at)
         VALUES (?1, ?2, 0, 0, ?3, ?4)",
    )
    .and_then(|mut st| st.execute((&a.file, &a.before, &a.sha256, model::now_utc())))
    .ctx("record a shipment archive")?;
    Ok(conn.last_insert_rowid())
}

/// Removes one archived order (still shipped before `before`) and its items, recording that
/// archive `id` holds it; the number of items removed.
fn remove_order(conn: &Connection, order: &str, before: &str, id: i64) -> Result<i64> {
    let ctx = "remove archived shipments";
    let day: Option<String> = conn
        .prepare_cached(
            "SELECT ship_date FROM shipped_orders WHERE order_number = ?1 AND ship_date < ?2",
        )
        .and_then(|mut st| st.query_row([order, before], |r| r.get(0)).optional())
        .ctx(ctx)?;
    let Some(day) = day else {
        return Err(StoreError::conflict(format!(
            "order {order} changed while it was being archived; it and the rest were not removed, run the archive again"
        )));
    };
    let items = conn
        .prepare_cached("DELETE FROM shipped_items WHERE order_number = ?1")
        .and_then(|mut st| st.execute([order]))
        .ctx(ctx)?;
    conn.prepare_cached("DELETE FROM shipped_orders WHERE order_number = ?1")
        .and_then(|mut st| st.execute([order]))
        .ctx(ctx)?;
    conn.prepare_cached(
        "INSERT INTO archived_orders (order_number, ship_date, archive_id) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut st| st.execute((order, &day, id)))
    .ctx(ctx)?;
    Ok(i64::try_from(items).unwrap_or(i64::MAX))
}

/// Every archive, newest first.
pub fn archives(conn: &Connection) -> Result<Vec<ShipmentArchive>> {
    let ctx = "list shipment archives";
    let mut st = conn
        .prepare_cached(&format!("{SELECT_ARCHIVE} ORDER BY id DESC"))
        .ctx(ctx)?;
    let rows = st.query_map([], archive_row).ctx(ctx)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
}

/// One archive by its id.
fn archive(conn: &Connection, id: i64) -> Result<Option<ShipmentArchive>> {
    conn.prepare_cached(&format!("{SELECT_ARCHIVE} WHERE id = ?1"))
        .and_then(|mut st| st.query_row([id], archive_row).optional())
        .ctx("read a shipment archive")
}

const SELECT_ARCHIVE: &str =
    "SELECT id, file, before, orders, items, sha256, created_at FROM shipment_archives";

fn archive_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ShipmentArchive> {
    Ok(ShipmentArchive {
        id: r.get(0)?,
        file: r.get(1)?,
        before: r.get(2)?,
        orders: r.get(3)?,
        items: r.get(4)?,
        sha256: r.get(5)?,
        created_at: r.get(6)?,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OpenMode, Store, StoreOptions};

    // The copy reads with no list or sort in memory: its memory stays flat however many orders
    // are old.
    #[test]
    fn the_copy_holds_nothing_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ora.db");
        Store::open(&StoreOptions::new(&db), OpenMode::Create)
            .unwrap()
            .close();
        let conn = Connection::open(&db).unwrap();
        for sql in copy_selects() {
            let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = st
                .query_map(["2026-01-01"], |r| r.get(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let plan = plan.join(" / ");
            assert!(
                !plan.contains("TEMP B-TREE") && !plan.contains("LIST SUBQUERY"),
                "{sql}: {plan}"
            );
        }
    }
}
