//! A standby taking a new base from its primary, inside the writer's transaction: every row of
//! the checked base file replaces the standby's, table by table, through SQLite (the live file
//! is never replaced behind the connections that have it open, and a crash leaves the old
//! data or the new, whole). The base must have this build's schema (same tables, same columns
//! in the same order); the product search index is rebuilt from the copied products, and the
//! file is then a standby at the base's position. Never runs on a primary that takes writes.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::error::{Result, SqlContext, StoreError};
use super::role::{self, Following};
use super::{capture, connection, schema};

/// Where the base came from, and what the standby follows afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebase {
    pub file: std::path::PathBuf,
    pub primary_url: String,
    pub epoch: i64,
}

/// Where the standby stands after the base.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rebased {
    pub database_id: String,
    pub seq: i64,
    pub rows: u64,
}

/// Tables of a file that a base carries: everything but SQLite's own bookkeeping (except the
/// AUTOINCREMENT counters) and the search index, which is rebuilt.
fn tables(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table'
               AND (name NOT LIKE 'sqlite_%' OR name = 'sqlite_sequence')
               AND name NOT LIKE 'product_search%' ORDER BY name",
        )
        .ctx("list the tables")?;
    let names = st
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
        .ctx("list the tables")?;
    Ok(names)
}

/// The stored columns of a table (generated columns are computed, not copied).
fn columns(conn: &Connection, table: &str) -> Result<Vec<String>> {
    let mut st = conn
        .prepare("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid")
        .ctx("list a table's columns")?;
    let names = st
        .query_map([table], |r| r.get(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
        .ctx("list a table's columns")?;
    Ok(names)
}

/// Opens the base read-only and checks that its schema is this file's.
fn open_base(conn: &Connection, file: &Path) -> Result<(Connection, Vec<String>)> {
    let base = connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ctx("open the primary's base")?;
    let version = |c: &Connection| -> Result<i64> {
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .ctx("read the schema version")
    };
    let (theirs, ours) = (version(&base)?, version(conn)?);
    if theirs != ours || ours != schema::latest_version() {
        return Err(StoreError::conflict(format!(
            "the primary's base has schema version {theirs} and this standby {ours}: the two boxes run different versions of ora"
        ))
        .with_hint("install the same version of ora on both boxes, then start the standby again"));
    }
    let names = tables(&base)?;
    if names != tables(conn)? {
        return Err(StoreError::conflict(
            "the primary's base has other tables than this standby's database",
        ));
    }
    for t in &names {
        if columns(&base, t)? != columns(conn, t)? {
            return Err(StoreError::conflict(format!(
                "the primary's base has other columns in table {t} than this standby's database"
            )));
        }
    }
    Ok((base, names))
}

/// Copies one table's rows from `base` over `conn`'s.
fn copy_table(conn: &Connection, base: &Connection, table: &str) -> Result<u64> {
    let ctx = || format!("copy table {table} from the primary's base");
    let cols = columns(conn, table)?;
    let n = cols.len();
    let list = cols
        .iter()
        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute(&format!("DELETE FROM main.\"{table}\""), [])
        .ctx(&ctx())?;
    let marks = vec!["?"; n].join(", ");
    let mut insert = conn
        .prepare(&format!(
            "INSERT INTO main.\"{table}\" ({list}) VALUES ({marks})"
        ))
        .ctx(&ctx())?;
    let mut select = base
        .prepare(&format!("SELECT {list} FROM \"{table}\""))
        .ctx(&ctx())?;
    let mut rows = select.query([]).ctx(&ctx())?;
    let mut copied = 0u64;
    while let Some(row) = rows.next().ctx(&ctx())? {
        let values = (0..n)
            .map(|i| row.get::<_, Value>(i))
            .collect::<rusqlite::Result<Vec<Value>>>()
            .ctx(&ctx())?;
        insert
            .execute(rusqlite::params_from_iter(values))
            .ctx(&ctx())?;
        copied += 1;
    }
    Ok(copied)
}

/// Replaces the standby's data with the base's (see the module's comment).
pub fn apply(conn: &Connection, r: &Rebase) -> Result<Rebased> {
    let now = role::read(conn)?;
    if !now.is_standby() {
        return Err(StoreError::not_primary(
            "this database is not a standby; a primary's base never replaces its data",
        ));
    }
    let (base, names) = open_base(conn, &r.file)?;
    let st = capture::state(&base)?
        .ok_or_else(|| StoreError::conflict("the primary's base has no replica state"))?;
    let mut rows = 0u64;
    // Rows are copied in table order, not in the order their references need.
    conn.execute_batch("PRAGMA defer_foreign_keys = ON")
        .ctx("defer the foreign key checks")?;
    super::follow::with_triggers_off(conn, || {
        for t in &names {
            rows += copy_table(conn, &base, t)?;
        }
        Ok(())
    })?;
    conn.execute_batch(schema::REBUILD_DERIVED)
        .ctx("rebuild the product search index")?;
    role::become_standby(
        conn,
        &Following {
            primary_url: r.primary_url.clone(),
            database_id: st.database_id.clone(),
            epoch: r.epoch.max(st.epoch),
            seq: st.seq,
            last_hash: st.last_hash,
        },
    )?;
    Ok(Rebased {
        database_id: st.database_id,
        seq: st.seq,
        rows,
    })
}

/// A movement this file committed after a given record: one line of `ora stock import`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Movement {
    pub id: i64,
    pub sku: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub quantity: i64,
    pub date: String,
    pub notes: Option<String>,
    pub request_id: Option<String>,
}

/// The movements of the kept records after `seq`, oldest first: what an old primary committed
/// that the history it rejoins lacks (empty when no kept record after `seq` holds a movement).
pub fn movements_after(conn: &Connection, seq: i64) -> Result<Vec<Movement>> {
    let first: Option<i64> = conn
        .query_row(
            "SELECT min(first_ledger) FROM replica_log WHERE seq > ?1 AND first_ledger > 0",
            [seq],
            |r| r.get(0),
        )
        .ctx("read the kept records")?;
    let Some(first) = first else {
        return Ok(Vec::new());
    };
    let mut st = conn
        .prepare(
            "SELECT id, sku, transaction_type, quantity, date, notes, request_id
               FROM inventory_transactions WHERE id >= ?1 ORDER BY id",
        )
        .ctx("list the movements")?;
    let rows = st
        .query_map([first], |r| {
            Ok(Movement {
                id: r.get(0)?,
                sku: r.get(1)?,
                kind: r.get(2)?,
                quantity: r.get(3)?,
                date: r.get(4)?,
                notes: r.get(5)?,
                request_id: r.get(6)?,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .ctx("list the movements")?;
    Ok(rows)
}
