//! The schema, as ordered migrations recorded in `PRAGMA user_version`, and the checks that
//! keep ora from touching a file it does not understand (another application's database, or
//! one made by a newer ora). Migrations only ever append to [`MIGRATIONS`]; an applied
//! migration is never edited.

use rusqlite::Connection;

use super::error::{Result, SqlContext, StoreError};

/// `PRAGMA application_id` of an ora database ("ORA1").
pub const APPLICATION_ID: i64 = 0x4F52_4131;

/// Migration N (1-based) brings `user_version` from N-1 to N.
pub const MIGRATIONS: &[&str] = &[
    // 1: the domain tables of DESIGN section 2, the ops log and the idempotency log.
    r#"
CREATE TABLE inventory_current (
    sku              TEXT PRIMARY KEY NOT NULL,
    product_name     TEXT NOT NULL,
    current_quantity INTEGER NOT NULL DEFAULT 0,
    reorder_point    INTEGER NOT NULL DEFAULT 0 CHECK (reorder_point >= 0),
    alert_level      TEXT GENERATED ALWAYS AS (
                         CASE WHEN current_quantity <= 0 THEN 'critical'
                              WHEN current_quantity <= reorder_point THEN 'low'
                              ELSE 'ok' END) VIRTUAL,
    last_updated     TEXT NOT NULL
);

CREATE TABLE inventory_transactions (
    id               INTEGER PRIMARY KEY,
    date             TEXT NOT NULL,
    sku              TEXT NOT NULL REFERENCES inventory_current(sku),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    transaction_type TEXT NOT NULL
                     CHECK (transaction_type IN ('Receive', 'Ship', 'Adjust Up', 'Adjust Down')),
    notes            TEXT,
    created_at       TEXT NOT NULL,
    request_id       TEXT
);
CREATE INDEX inventory_transactions_sku ON inventory_transactions(sku, id);
CREATE INDEX inventory_transactions_date ON inventory_transactions(date);
CREATE UNIQUE INDEX inventory_transactions_request
    ON inventory_transactions(request_id) WHERE request_id IS NOT NULL;
CREATE TRIGGER inventory_transactions_no_update BEFORE UPDATE ON inventory_transactions
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correcting movement instead'); END;
CREATE TRIGGER inventory_transactions_no_delete BEFORE DELETE ON inventory_transactions
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correcting movement instead'); END;

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
    base_sku         TEXT NOT NULL REFERENCES inventory_current(sku),
    quantity_shipped INTEGER NOT NULL CHECK (quantity_shipped > 0),
    order_number     TEXT NOT NULL REFERENCES shipped_orders(order_number),
    transaction_id   INTEGER REFERENCES inventory_transactions(id)
);
CREATE INDEX shipped_items_order ON shipped_items(order_number);
CREATE INDEX shipped_items_date ON shipped_items(ship_date);

CREATE TABLE workflows (
    name       TEXT PRIMARY KEY NOT NULL,
    status     TEXT NOT NULL,
    details    TEXT,
    version    INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL
);

CREATE TABLE system_kpis (
    snapshot_date   TEXT PRIMARY KEY NOT NULL,
    orders_today    INTEGER NOT NULL DEFAULT 0,
    shipments_sent  INTEGER NOT NULL DEFAULT 0,
    pending_uploads INTEGER NOT NULL DEFAULT 0,
    system_status   TEXT NOT NULL DEFAULT 'unknown',
    updated_at      TEXT NOT NULL
);

CREATE TABLE ops_log (
    id       INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL,
    started  TEXT NOT NULL,
    finished TEXT,
    ok       INTEGER,
    details  TEXT
);
CREATE INDEX ops_log_kind ON ops_log(kind, id);

CREATE TABLE request_log (
    request_id  TEXT PRIMARY KEY NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
"#,
];

/// The schema version this build of ora writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// What the header of an existing file says about it.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub user_version: i64,
    pub application_id: i64,
    pub tables: i64,
}

/// Reads the identity of an opened database without changing anything.
pub fn identify(conn: &Connection, path: &str) -> Result<Identity> {
    let ctx = format!("open {path}");
    let user_version = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx(&ctx)?;
    let application_id = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .ctx(&ctx)?;
    let tables = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .ctx(&ctx)?;
    Ok(Identity {
        user_version,
        application_id,
        tables,
    })
}

/// Refuses files ora must not touch: another application's database, or a newer schema.
pub fn check_compatible(id: Identity, path: &str) -> Result<()> {
    if id.application_id != 0 && id.application_id != APPLICATION_ID {
        return Err(StoreError::BadDatabase(format!(
            "{path} is a SQLite database of another application (application_id {:#x}); point --db at an ora database",
            id.application_id
        )));
    }
    if id.application_id == 0 && id.tables > 0 {
        return Err(StoreError::BadDatabase(format!(
            "{path} is a SQLite database that ora did not create ({} tables, no ora marker); point --db at an ora database or a new file",
            id.tables
        )));
    }
    if id.user_version > latest_version() {
        return Err(StoreError::BadDatabase(format!(
            "{path} was written by a newer ora (schema version {}, this ora knows up to {}); upgrade ora, nothing was changed",
            id.user_version,
            latest_version()
        )));
    }
    Ok(())
}

/// Applies every pending migration, each in its own `BEGIN IMMEDIATE` transaction, so two
/// processes starting at once cannot both apply the same step.
pub fn migrate(conn: &mut Connection, path: &str) -> Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let target = i as i64 + 1;
        let ctx = format!("migrate {path} to schema version {target}");
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .ctx(&ctx)?;
        let current: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .ctx(&ctx)?;
        if current >= target {
            continue;
        }
        tx.execute_batch(sql).ctx(&ctx)?;
        tx.execute_batch(&format!(
            "PRAGMA user_version = {target}; PRAGMA application_id = {APPLICATION_ID};"
        ))
        .ctx(&ctx)?;
        tx.commit().ctx(&ctx)?;
        log::info!("{path}: schema migrated to version {target}");
    }
    Ok(())
}
