//! The outbox: every change to a domain table, written by triggers in the same transaction as
//! the change (only while a target is registered in `sync_control`). This module reads it in
//! order, folds a batch to the last change per row, keeps each target's position, reports lag,
//! and prunes what every target has. It never writes domain data; its writes to
//! `sync_control` and `outbox` are short transactions on the caller's connection.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use crate::store::sync_state;
use crate::store::{Result, SqlContext, StoreError};

/// The domain tables mirrored, with their key column and columns (as the triggers write them).
pub const TABLES: &[(&str, &str, &[&str])] = &[
    (
        "inventory_current",
        "sku",
        &[
            "sku",
            "product_name",
            "current_quantity",
            "reorder_point",
            "alert_level",
            "last_updated",
        ],
    ),
    (
        "inventory_transactions",
        "id",
        &[
            "id",
            "date",
            "sku",
            "quantity",
            "transaction_type",
            "notes",
            "created_at",
            "request_id",
            "actor",
        ],
    ),
    (
        "shipped_orders",
        "order_number",
        &[
            "order_number",
            "ship_date",
            "item_count",
            "total_units",
            "created_at",
        ],
    ),
    (
        "shipped_items",
        "id",
        &[
            "id",
            "ship_date",
            "sku_lot",
            "base_sku",
            "quantity_shipped",
            "order_number",
            "transaction_id",
        ],
    ),
    (
        "workflows",
        "name",
        &["name", "status", "details", "version", "updated_at"],
    ),
    (
        "system_kpis",
        "snapshot_date",
        &[
            "snapshot_date",
            "orders_today",
            "shipments_sent",
            "pending_uploads",
            "system_status",
            "updated_at",
        ],
    ),
    (
        "audit_log",
        "id",
        &[
            "id",
            "at",
            "actor",
            "request_id",
            "op",
            "tbl",
            "key",
            "action",
            "old",
            "new",
            "sku",
        ],
    ),
];

/// One captured change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: i64,
    pub table: String,
    pub key: String,
    /// The row after the change; `None` for a delete.
    pub row: Option<serde_json::Value>,
}

const LOCK_WAIT: Duration = Duration::from_secs(30);

fn short_write<T>(conn: &Connection, f: impl FnOnce() -> Result<T>) -> Result<T> {
    crate::store::capture::short_write(conn, LOCK_WAIT, |_| f())
}

/// Registers a target: from now on every change is captured for it.
pub fn register(conn: &Connection, target: &str) -> Result<()> {
    short_write(conn, || {
        conn.execute(
            "INSERT OR IGNORE INTO sync_control (target) VALUES (?1)",
            [target],
        )
        .ctx("register a sync target")?;
        Ok(())
    })
}

/// Forgets where `target` is, so that its next delivery is a full copy.
pub fn reset_position(conn: &Connection, target: &str) -> Result<()> {
    short_write(conn, || {
        conn.execute(
            "UPDATE sync_control SET last_seq = NULL WHERE target = ?1",
            [target],
        )
        .ctx("reset a sync target's position")?;
        Ok(())
    })
}

/// Forgets every target's position (each one's next delivery is a full copy); how many.
pub fn reset_all_positions(conn: &Connection) -> Result<usize> {
    short_write(conn, || {
        conn.execute("UPDATE sync_control SET last_seq = NULL", [])
            .ctx("reset the sync positions")
    })
}

/// In a database rebuilt from `target` itself: records that the target holds everything up to
/// `seq` and numbers the next change after it, so delivery resumes with no full copy and no
/// sequence the target has already seen.
pub fn resume_at(conn: &Connection, target: &str, seq: i64) -> Result<()> {
    let now = crate::model::now_utc();
    short_write(conn, || {
        conn.execute(
            "INSERT INTO sync_control (target, last_seq, last_ok) VALUES (?1, ?2, ?3)
             ON CONFLICT (target) DO UPDATE SET last_seq = excluded.last_seq, last_ok = excluded.last_ok",
            (target, seq, &now),
        )
        .ctx("record the target's position")?;
        conn.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', 0
              WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')",
            [],
        )
        .ctx("number the outbox")?;
        conn.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'outbox'",
            [seq],
        )
        .ctx("number the outbox")?;
        Ok(())
    })
}

/// Forgets targets that are no longer configured (so the outbox does not grow for them).
pub fn unregister_others(conn: &Connection, keep: &[&str]) -> Result<Vec<String>> {
    let all: Vec<String> = {
        let mut st = conn
            .prepare("SELECT target FROM sync_control")
            .ctx("read sync_control")?;
        let rows = st.query_map([], |r| r.get(0)).ctx("read sync_control")?;
        rows.collect::<std::result::Result<_, _>>()
            .ctx("read sync_control")?
    };
    let gone: Vec<String> = all
        .into_iter()
        .filter(|t| !keep.contains(&t.as_str()))
        .collect();
    if !gone.is_empty() {
        short_write(conn, || {
            for t in &gone {
                conn.execute("DELETE FROM sync_control WHERE target = ?1", [t])
                    .ctx("unregister a sync target")?;
            }
            Ok(())
        })?;
    }
    Ok(gone)
}

/// A target's last delivered sequence (`None`: it still needs its first full copy).
pub fn position(conn: &Connection, target: &str) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT last_seq FROM sync_control WHERE target = ?1",
        [target],
        |r| r.get::<_, Option<i64>>(0),
    )
    .optional()
    .ctx("read sync_control")
    .map(Option::flatten)
}

/// The highest sequence written so far.
pub fn max_seq(conn: &Connection) -> Result<i64> {
    conn.query_row(
        "SELECT max(coalesce((SELECT max(seq) FROM outbox), 0), coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0))",
        [],
        |r| r.get(0),
    )
    .ctx("read the outbox")
}

/// Up to `limit` changes after `after`, in order.
pub fn batch(conn: &Connection, after: i64, limit: usize) -> Result<Vec<Change>> {
    let mut st = conn
        .prepare_cached(
            "SELECT seq, tbl, key, op, row FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .ctx("read the outbox")?;
    let rows = st
        .query_map((after, limit as i64), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })
        .ctx("read the outbox")?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, table, key, op, text) = row.ctx("read the outbox")?;
        out.push(change_of(seq, table, key, &op, text.as_deref())?);
    }
    Ok(out)
}

/// One outbox row as a change. The `op` column decides: a delete has no row; an upsert whose
/// row is missing or not JSON is refused, naming it, so delivery stops there (and retries)
/// instead of sending it as a delete.
fn change_of(seq: i64, table: String, key: String, op: &str, text: Option<&str>) -> Result<Change> {
    let bad = |why: &str| {
        StoreError::failed(format!(
            "outbox change {seq} ({table} {}) {why}; delivery stops here until it is fixed (see `ora sync --check`)",
            crate::model::clip(&key)
        ))
    };
    let row = match op {
        "delete" => None,
        "upsert" => {
            let text = text.ok_or_else(|| bad("is an upsert without a row"))?;
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|_| bad("holds a row that is not JSON"))?;
            if !v.is_object() {
                return Err(bad("holds a row that is not a JSON object"));
            }
            Some(v)
        }
        _ => return Err(bad("has an unknown operation")),
    };
    Ok(Change {
        seq,
        table,
        key,
        row,
    })
}

/// The last change of each row in a batch, in the order of those last changes: delivering
/// it leaves the target in the same state as delivering every change.
pub fn fold(changes: &[Change]) -> Vec<Change> {
    let mut last = std::collections::HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        last.insert((c.table.as_str(), c.key.as_str()), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| changes[i].clone()).collect()
}

/// Records a delivery up to `seq`.
pub fn record_ok(conn: &Connection, target: &str, seq: i64, delivered: usize) -> Result<()> {
    short_write(conn, || sync_state::record_ok(conn, target, seq, delivered))
}

/// Records a failed attempt (the position stays).
pub fn record_error(conn: &Connection, target: &str, error: &str) -> Result<()> {
    short_write(conn, || sync_state::record_error(conn, target, error))
}

/// Deletes the changes every target has (all of them when no target is registered).
pub fn prune(conn: &Connection) -> Result<usize> {
    short_write(conn, || sync_state::prune(conn))
}

/// Writes a forwarder's record in one short transaction; the outbox rows pruned.
pub fn record(conn: &Connection, r: &sync_state::SyncRecord) -> Result<usize> {
    short_write(conn, || sync_state::apply(conn, r))
}

/// A target's state, for /health, /metrics, the page and `ora health`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TargetStatus {
    pub target: String,
    pub last_seq: Option<i64>,
    /// Changes not yet delivered.
    pub lag_rows: i64,
    /// Age of the oldest undelivered change.
    pub lag_seconds: f64,
    pub delivered: i64,
    pub last_ok: Option<String>,
    pub last_attempt: Option<String>,
    pub last_error: Option<String>,
    /// The last attempt succeeded (or nothing was tried yet).
    pub up: bool,
}

/// Every registered target's state, and the number of rows in the outbox.
pub fn status(conn: &Connection) -> Result<(Vec<TargetStatus>, i64)> {
    let outbox_rows: i64 = conn
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .ctx("read the outbox")?;
    let max = max_seq(conn)?;
    let mut st = conn
        .prepare("SELECT target, last_seq, delivered, last_ok, last_attempt, last_error FROM sync_control ORDER BY target")
        .ctx("read sync_control")?;
    let rows: Vec<TargetStatus> = st
        .query_map([], |r| {
            Ok(TargetStatus {
                target: r.get(0)?,
                last_seq: r.get(1)?,
                delivered: r.get(2)?,
                last_ok: r.get(3)?,
                last_attempt: r.get(4)?,
                last_error: r.get(5)?,
                ..TargetStatus::default()
            })
        })
        .ctx("read sync_control")?
        .collect::<std::result::Result<_, _>>()
        .ctx("read sync_control")?;
    let now = crate::clock::now();
    let mut out = Vec::with_capacity(rows.len());
    for mut t in rows {
        let after = t.last_seq.unwrap_or(0);
        t.lag_rows = (max - after).max(0);
        let oldest: Option<String> = conn
            .query_row(
                "SELECT created_at FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT 1",
                [after],
                |r| r.get(0),
            )
            .optional()
            .ctx("read the outbox")?;
        t.lag_seconds = oldest
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(&c).ok())
            .map_or(0.0, |c| {
                (now - c.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0
            })
            .max(0.0);
        t.up = t.last_error.is_none();
        out.push(t);
    }
    Ok((out, outbox_rows))
}

/// A table's rows as the JSON objects the triggers write (for a target's first full copy),
/// handed to `sink` in chunks of `chunk`.
pub fn snapshot_table(
    conn: &Connection,
    table: &str,
    chunk: usize,
    sink: &mut dyn FnMut(Vec<serde_json::Value>) -> std::result::Result<(), String>,
) -> Result<std::result::Result<u64, String>> {
    let Some((_, _, cols)) = TABLES.iter().find(|(t, _, _)| *t == table) else {
        return Ok(Ok(0));
    };
    let obj = cols
        .iter()
        .map(|c| format!("'{c}', {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut st = conn
        .prepare(&format!("SELECT json_object({obj}) FROM {table}"))
        .ctx("read a table")?;
    let mut rows = st.query([]).ctx("read a table")?;
    let mut buf = Vec::with_capacity(chunk);
    let mut n = 0u64;
    while let Some(r) = rows.next().ctx("read a table")? {
        let text: String = r.get(0).ctx("read a table")?;
        // SQLite's own json_object: a row that does not parse back is a bug to report, not a
        // row to leave out of the copy silently.
        let v = serde_json::from_str(&text).map_err(|e| {
            StoreError::failed(format!(
                "sync: a row of {table} does not encode as JSON ({e}); the copy stops here"
            ))
        })?;
        buf.push(v);
        n += 1;
        if buf.len() >= chunk {
            if let Err(e) = sink(std::mem::take(&mut buf)) {
                return Ok(Err(e));
            }
        }
    }
    if !buf.is_empty() {
        if let Err(e) = sink(buf) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(seq: i64, key: &str, row: Option<i64>) -> Change {
        Change {
            seq,
            table: "t".into(),
            key: key.into(),
            row: row.map(|v| serde_json::json!({ "v": v })),
        }
    }

    // Regression: an upsert whose row could not be parsed became `row: None`, which both
    // targets deliver as a delete; and the `op` column was never read.
    #[test]
    fn changes_follow_their_op_and_a_bad_row_stops_delivery() {
        let ok = change_of(1, "t".into(), "k".into(), "upsert", Some(r#"{"v": 1}"#)).unwrap();
        assert_eq!(ok.row, Some(serde_json::json!({"v": 1})));
        let del = change_of(2, "t".into(), "k".into(), "delete", Some("ignored")).unwrap();
        assert_eq!(del.row, None);
        for (op, text) in [
            ("upsert", None),
            ("upsert", Some("{not json")),
            ("upsert", Some("[1, 2]")),
            ("upsert", Some("")),
            ("frobnicate", Some("{}")),
        ] {
            let err = change_of(7, "inventory_current".into(), "SKU-9".into(), op, text)
                .expect_err("refused")
                .to_string();
            assert!(
                err.contains("outbox change 7") && err.contains("SKU-9"),
                "{err}"
            );
        }
    }

    #[test]
    fn folding_keeps_the_last_change_per_row_in_order() {
        let b = vec![
            ch(1, "a", Some(1)),
            ch(2, "b", Some(1)),
            ch(3, "a", Some(2)),
            ch(4, "b", None),
            ch(5, "c", Some(9)),
        ];
        let f = fold(&b);
        assert_eq!(
            f,
            vec![ch(3, "a", Some(2)), ch(4, "b", None), ch(5, "c", Some(9))]
        );
    }
}
