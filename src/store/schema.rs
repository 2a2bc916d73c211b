//! The schema, as ordered migrations recorded in `PRAGMA user_version`, and the checks that
//! keep ora from touching a file it does not understand (another application's database, or
//! one made by a newer ora). Migrations only ever append to [`MIGRATIONS`]; an applied
//! migration is never edited.

use rusqlite::{Connection, OptionalExtension};

use super::error::{Result, SqlContext, StoreError};

/// `PRAGMA application_id` of an ora database ("ORA1").
pub const APPLICATION_ID: i64 = 0x4F52_4131;

/// Migration N (1-based) brings `user_version` from N-1 to N.
pub const MIGRATIONS: &[&str] = &[
    // 1: the domain tables, the ops log and the idempotency log.
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
    // 2: change capture for the remote proxies and the local product search.
    // The outbox triggers fire only while a target is registered in sync_control, so ora
    // without remotes pays nothing for them.
    r#"
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl        TEXT NOT NULL,
    key        TEXT NOT NULL,
    op         TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    row        TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE sync_control (
    target       TEXT PRIMARY KEY NOT NULL,
    last_seq     INTEGER,
    delivered    INTEGER NOT NULL DEFAULT 0,
    last_ok      TEXT,
    last_attempt TEXT,
    last_error   TEXT
);
CREATE TRIGGER outbox_inventory_current_insert AFTER INSERT ON inventory_current
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('inventory_current', NEW.sku, 'upsert', json_object('sku', NEW.sku, 'product_name', NEW.product_name, 'current_quantity', NEW.current_quantity, 'reorder_point', NEW.reorder_point, 'alert_level', NEW.alert_level, 'last_updated', NEW.last_updated)); END;
CREATE TRIGGER outbox_inventory_current_update AFTER UPDATE ON inventory_current
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('inventory_current', NEW.sku, 'upsert', json_object('sku', NEW.sku, 'product_name', NEW.product_name, 'current_quantity', NEW.current_quantity, 'reorder_point', NEW.reorder_point, 'alert_level', NEW.alert_level, 'last_updated', NEW.last_updated)); END;
CREATE TRIGGER outbox_inventory_current_delete AFTER DELETE ON inventory_current
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('inventory_current', OLD.sku, 'delete', NULL); END;
CREATE TRIGGER outbox_inventory_transactions_insert AFTER INSERT ON inventory_transactions
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('inventory_transactions', NEW.id, 'upsert', json_object('id', NEW.id, 'date', NEW.date, 'sku', NEW.sku, 'quantity', NEW.quantity, 'transaction_type', NEW.transaction_type, 'notes', NEW.notes, 'created_at', NEW.created_at, 'request_id', NEW.request_id)); END;
CREATE TRIGGER outbox_inventory_transactions_update AFTER UPDATE ON inventory_transactions
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('inventory_transactions', NEW.id, 'upsert', json_object('id', NEW.id, 'date', NEW.date, 'sku', NEW.sku, 'quantity', NEW.quantity, 'transaction_type', NEW.transaction_type, 'notes', NEW.notes, 'created_at', NEW.created_at, 'request_id', NEW.request_id)); END;
CREATE TRIGGER outbox_inventory_transactions_delete AFTER DELETE ON inventory_transactions
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('inventory_transactions', OLD.id, 'delete', NULL); END;
CREATE TRIGGER outbox_shipped_orders_insert AFTER INSERT ON shipped_orders
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('shipped_orders', NEW.order_number, 'upsert', json_object('order_number', NEW.order_number, 'ship_date', NEW.ship_date, 'item_count', NEW.item_count, 'total_units', NEW.total_units, 'created_at', NEW.created_at)); END;
CREATE TRIGGER outbox_shipped_orders_update AFTER UPDATE ON shipped_orders
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('shipped_orders', NEW.order_number, 'upsert', json_object('order_number', NEW.order_number, 'ship_date', NEW.ship_date, 'item_count', NEW.item_count, 'total_units', NEW.total_units, 'created_at', NEW.created_at)); END;
CREATE TRIGGER outbox_shipped_orders_delete AFTER DELETE ON shipped_orders
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('shipped_orders', OLD.order_number, 'delete', NULL); END;
CREATE TRIGGER outbox_shipped_items_insert AFTER INSERT ON shipped_items
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('shipped_items', NEW.id, 'upsert', json_object('id', NEW.id, 'ship_date', NEW.ship_date, 'sku_lot', NEW.sku_lot, 'base_sku', NEW.base_sku, 'quantity_shipped', NEW.quantity_shipped, 'order_number', NEW.order_number, 'transaction_id', NEW.transaction_id)); END;
CREATE TRIGGER outbox_shipped_items_update AFTER UPDATE ON shipped_items
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('shipped_items', NEW.id, 'upsert', json_object('id', NEW.id, 'ship_date', NEW.ship_date, 'sku_lot', NEW.sku_lot, 'base_sku', NEW.base_sku, 'quantity_shipped', NEW.quantity_shipped, 'order_number', NEW.order_number, 'transaction_id', NEW.transaction_id)); END;
CREATE TRIGGER outbox_shipped_items_delete AFTER DELETE ON shipped_items
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('shipped_items', OLD.id, 'delete', NULL); END;
CREATE TRIGGER outbox_workflows_insert AFTER INSERT ON workflows
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('workflows', NEW.name, 'upsert', json_object('name', NEW.name, 'status', NEW.status, 'details', NEW.details, 'version', NEW.version, 'updated_at', NEW.updated_at)); END;
CREATE TRIGGER outbox_workflows_update AFTER UPDATE ON workflows
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('workflows', NEW.name, 'upsert', json_object('name', NEW.name, 'status', NEW.status, 'details', NEW.details, 'version', NEW.version, 'updated_at', NEW.updated_at)); END;
CREATE TRIGGER outbox_workflows_delete AFTER DELETE ON workflows
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('workflows', OLD.name, 'delete', NULL); END;
CREATE TRIGGER outbox_system_kpis_insert AFTER INSERT ON system_kpis
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('system_kpis', NEW.snapshot_date, 'upsert', json_object('snapshot_date', NEW.snapshot_date, 'orders_today', NEW.orders_today, 'shipments_sent', NEW.shipments_sent, 'pending_uploads', NEW.pending_uploads, 'system_status', NEW.system_status, 'updated_at', NEW.updated_at)); END;
CREATE TRIGGER outbox_system_kpis_update AFTER UPDATE ON system_kpis
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('system_kpis', NEW.snapshot_date, 'upsert', json_object('snapshot_date', NEW.snapshot_date, 'orders_today', NEW.orders_today, 'shipments_sent', NEW.shipments_sent, 'pending_uploads', NEW.pending_uploads, 'system_status', NEW.system_status, 'updated_at', NEW.updated_at)); END;
CREATE TRIGGER outbox_system_kpis_delete AFTER DELETE ON system_kpis
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('system_kpis', OLD.snapshot_date, 'delete', NULL); END;
CREATE VIRTUAL TABLE product_search USING fts5(
    sku, product_name, content='inventory_current', content_rowid='rowid', tokenize='trigram'
);
INSERT INTO product_search (rowid, sku, product_name) SELECT rowid, sku, product_name FROM inventory_current;
CREATE TRIGGER product_search_insert AFTER INSERT ON inventory_current BEGIN
    INSERT INTO product_search (rowid, sku, product_name) VALUES (NEW.rowid, NEW.sku, NEW.product_name);
END;
CREATE TRIGGER product_search_update AFTER UPDATE OF sku, product_name ON inventory_current BEGIN
    INSERT INTO product_search (product_search, rowid, sku, product_name) VALUES ('delete', OLD.rowid, OLD.sku, OLD.product_name);
    INSERT INTO product_search (rowid, sku, product_name) VALUES (NEW.rowid, NEW.sku, NEW.product_name);
END;
CREATE TRIGGER product_search_delete AFTER DELETE ON inventory_current BEGIN
    INSERT INTO product_search (product_search, rowid, sku, product_name) VALUES ('delete', OLD.rowid, OLD.sku, OLD.product_name);
END;
"#,
    // 3: client-supplied product vectors for Qdrant, little-endian f32s.
    // Their outbox rows carry only the sku and size: the Qdrant target reads the vector itself.
    r#"
CREATE TABLE product_vectors (
    sku        TEXT PRIMARY KEY NOT NULL REFERENCES inventory_current(sku),
    dims       INTEGER NOT NULL CHECK (dims BETWEEN 1 AND 65536),
    vector     BLOB NOT NULL CHECK (length(vector) = 4 * dims),
    updated_at TEXT NOT NULL
);
CREATE TRIGGER outbox_product_vectors_insert AFTER INSERT ON product_vectors
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('product_vectors', NEW.sku, 'upsert', json_object('sku', NEW.sku, 'dims', NEW.dims, 'updated_at', NEW.updated_at)); END;
CREATE TRIGGER outbox_product_vectors_update AFTER UPDATE ON product_vectors
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('product_vectors', NEW.sku, 'upsert', json_object('sku', NEW.sku, 'dims', NEW.dims, 'updated_at', NEW.updated_at)); END;
CREATE TRIGGER outbox_product_vectors_delete AFTER DELETE ON product_vectors
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('product_vectors', OLD.sku, 'delete', NULL); END;
"#,
    // 4: capture for the continuous replica. `replica_log` holds each captured commit's
    // changeset until the replica has it; `replica_state` the position of the capture. The
    // `replica_outside_*` triggers raise `outside` on any row change; ora's own commits clear
    // it again in the same transaction, so a commit by any other program leaves it set, and
    // the next captured commit knows the history has a hole there.
    r#"
CREATE TABLE replica_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    database_id    TEXT NOT NULL,
    enabled        INTEGER NOT NULL DEFAULT 0,
    dir            TEXT,
    mode           TEXT NOT NULL DEFAULT 'bounded' CHECK (mode IN ('bounded', 'strict')),
    seq            INTEGER NOT NULL DEFAULT 0,
    last_hash      BLOB NOT NULL DEFAULT x'',
    outside        INTEGER NOT NULL DEFAULT 0,
    schema_version INTEGER NOT NULL DEFAULT 0,
    schema_hash    TEXT NOT NULL DEFAULT ''
);
INSERT INTO replica_state (id, database_id) VALUES (1, lower(hex(randomblob(16))));
CREATE TABLE replica_log (
    seq          INTEGER PRIMARY KEY,
    committed_ms INTEGER NOT NULL,
    flags        INTEGER NOT NULL DEFAULT 0,
    first_ledger INTEGER,
    last_ledger  INTEGER,
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL,
    changeset    BLOB NOT NULL
);
CREATE TRIGGER replica_outside_inventory_current_insert AFTER INSERT ON inventory_current
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_inventory_current_update AFTER UPDATE ON inventory_current
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_inventory_current_delete AFTER DELETE ON inventory_current
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_inventory_transactions_insert AFTER INSERT ON inventory_transactions
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_inventory_transactions_update AFTER UPDATE ON inventory_transactions
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_inventory_transactions_delete AFTER DELETE ON inventory_transactions
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_shipped_orders_insert AFTER INSERT ON shipped_orders
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_shipped_orders_update AFTER UPDATE ON shipped_orders
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_shipped_orders_delete AFTER DELETE ON shipped_orders
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_shipped_items_insert AFTER INSERT ON shipped_items
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_shipped_items_update AFTER UPDATE ON shipped_items
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_shipped_items_delete AFTER DELETE ON shipped_items
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_workflows_insert AFTER INSERT ON workflows
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_workflows_update AFTER UPDATE ON workflows
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_workflows_delete AFTER DELETE ON workflows
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_system_kpis_insert AFTER INSERT ON system_kpis
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_system_kpis_update AFTER UPDATE ON system_kpis
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_system_kpis_delete AFTER DELETE ON system_kpis
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_ops_log_insert AFTER INSERT ON ops_log
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_ops_log_update AFTER UPDATE ON ops_log
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_ops_log_delete AFTER DELETE ON ops_log
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_request_log_insert AFTER INSERT ON request_log
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_request_log_update AFTER UPDATE ON request_log
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_request_log_delete AFTER DELETE ON request_log
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_outbox_insert AFTER INSERT ON outbox
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_outbox_update AFTER UPDATE ON outbox
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_outbox_delete AFTER DELETE ON outbox
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_sync_control_insert AFTER INSERT ON sync_control
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_sync_control_update AFTER UPDATE ON sync_control
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_sync_control_delete AFTER DELETE ON sync_control
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_product_vectors_insert AFTER INSERT ON product_vectors
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_product_vectors_update AFTER UPDATE ON product_vectors
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_product_vectors_delete AFTER DELETE ON product_vectors
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
"#,
    // 5: a ledger row finds the shipped item (its lot and order) it came from.
    r#"
CREATE INDEX shipped_items_transaction ON shipped_items(transaction_id);
"#,
    // 6: shipments moved out to archive files: which file holds which order.
    r#"
CREATE TABLE shipment_archives (
    id         INTEGER PRIMARY KEY,
    file       TEXT NOT NULL,
    before     TEXT NOT NULL,
    orders     INTEGER NOT NULL,
    items      INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE archived_orders (
    order_number TEXT PRIMARY KEY NOT NULL,
    ship_date    TEXT NOT NULL,
    archive_id   INTEGER NOT NULL REFERENCES shipment_archives(id)
);
CREATE TRIGGER replica_outside_shipment_archives_insert AFTER INSERT ON shipment_archives
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_shipment_archives_update AFTER UPDATE ON shipment_archives
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_shipment_archives_delete AFTER DELETE ON shipment_archives
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_archived_orders_insert AFTER INSERT ON archived_orders
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_archived_orders_update AFTER UPDATE ON archived_orders
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_archived_orders_delete AFTER DELETE ON archived_orders
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
"#,
    // 7: the slow-statement log.
    r#"
CREATE TABLE slow_statements (
    sql        TEXT PRIMARY KEY NOT NULL,
    count      INTEGER NOT NULL,
    total_ms   REAL NOT NULL,
    max_ms     REAL NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);
CREATE TRIGGER replica_outside_slow_statements_insert AFTER INSERT ON slow_statements
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_slow_statements_update AFTER UPDATE ON slow_statements
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
CREATE TRIGGER replica_outside_slow_statements_delete AFTER DELETE ON slow_statements
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
"#,
    // 8: the encrypted replica: the database's replica secret (each encrypted generation's
    // key is derived from it) and the age public key it was made for.
    r#"
ALTER TABLE replica_state ADD COLUMN seal_secret BLOB;
ALTER TABLE replica_state ADD COLUMN seal_to TEXT;
"#,
    // 9: the ledger's hash chain (`store::chain`); the rows already there are linked by
    // `after_step` in the same transaction.
    r#"
ALTER TABLE inventory_transactions ADD COLUMN chain BLOB;
"#,
    // 10: the audit trail (`store::audit`): who changed what, written in the same transaction
    // as the change; append-only like the ledger. A movement's own ledger row is its record
    // (it gains its actor here); every other change is a row of audit_log.
    r#"
ALTER TABLE inventory_transactions ADD COLUMN actor TEXT;
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    request_id TEXT,
    op         TEXT NOT NULL,
    tbl        TEXT NOT NULL,
    key        TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
    old        TEXT,
    new        TEXT,
    sku        TEXT
);
CREATE INDEX audit_log_sku ON audit_log(sku, id) WHERE sku IS NOT NULL;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER replica_outside_audit_log_insert AFTER INSERT ON audit_log
BEGIN UPDATE replica_state SET outside = 1 WHERE outside = 0 AND enabled = 1; END;
"#,
    // 11: CHECK constraints with a list of three or more values are compared term by term
    // (`after_step` rewrites them in place; see `UNROLLED_CHECKS`).
    "",
    // 12: a database file's lineage (`store::lineage`): where a detached copy came from, and
    // why the replica needs a new base after ora replaced the file in place.
    r#"
ALTER TABLE replica_state ADD COLUMN origin TEXT NOT NULL DEFAULT '';
ALTER TABLE replica_state ADD COLUMN base_reason TEXT NOT NULL DEFAULT '';
"#,
    // 13: standbys (`store::role`): whether this file is a primary or follows one, the epoch
    // of its lineage (a promotion starts a new one), why an old primary refuses writes, and
    // `feed`: commits are captured for standbys even without a replica directory (the
    // `replica_outside_*` triggers watch when either consumer is on; `after_step`).
    r#"
ALTER TABLE replica_state ADD COLUMN role TEXT NOT NULL DEFAULT 'primary' CHECK (role = 'primary' OR role = 'standby');
ALTER TABLE replica_state ADD COLUMN primary_url TEXT NOT NULL DEFAULT '';
ALTER TABLE replica_state ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1;
ALTER TABLE replica_state ADD COLUMN feed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE replica_state ADD COLUMN fenced TEXT NOT NULL DEFAULT '';
"#,
    // 14: the central mirror carries the trail: a movement's actor, and every audit_log row
    // (mirror layout 2, `remote::postgres`), so a box rebuilt from it keeps who changed what.
    // `old || ''` hands the JSON text on as text (a value just made by json_object would be
    // embedded as an object, and come back from PostgreSQL reformatted).
    r#"
DROP TRIGGER outbox_inventory_transactions_insert;
DROP TRIGGER outbox_inventory_transactions_update;
CREATE TRIGGER outbox_inventory_transactions_insert AFTER INSERT ON inventory_transactions
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('inventory_transactions', NEW.id, 'upsert', json_object('id', NEW.id, 'date', NEW.date, 'sku', NEW.sku, 'quantity', NEW.quantity, 'transaction_type', NEW.transaction_type, 'notes', NEW.notes, 'created_at', NEW.created_at, 'request_id', NEW.request_id, 'actor', NEW.actor)); END;
CREATE TRIGGER outbox_inventory_transactions_update AFTER UPDATE ON inventory_transactions
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('inventory_transactions', NEW.id, 'upsert', json_object('id', NEW.id, 'date', NEW.date, 'sku', NEW.sku, 'quantity', NEW.quantity, 'transaction_type', NEW.transaction_type, 'notes', NEW.notes, 'created_at', NEW.created_at, 'request_id', NEW.request_id, 'actor', NEW.actor)); END;
CREATE TRIGGER outbox_audit_log_insert AFTER INSERT ON audit_log
WHEN EXISTS (SELECT 1 FROM sync_control)
BEGIN INSERT INTO outbox (tbl, key, op, row) VALUES ('audit_log', NEW.id, 'upsert', json_object('id', NEW.id, 'at', NEW.at, 'actor', NEW.actor, 'request_id', NEW.request_id, 'op', NEW.op, 'tbl', NEW.tbl, 'key', NEW.key, 'action', NEW.action, 'old', NEW.old || '', 'new', NEW.new || '', 'sku', NEW.sku)); END;
"#,
    // 15: stock changed outside ora, noticed as it happens (`store::stock_watch`). ora's
    // writer changes a stock only together with the ledger row that explains it, inserted
    // first in the same transaction; any other change of `current_quantity` (the sqlite3
    // shell, a script) leaves its sku here, with the stock before and after.
    r#"
CREATE TABLE stock_outside (
    sku     TEXT PRIMARY KEY NOT NULL,
    at      TEXT NOT NULL,
    was     INTEGER NOT NULL,
    now     INTEGER NOT NULL
);
CREATE TRIGGER stock_outside_update AFTER UPDATE OF current_quantity ON inventory_current
WHEN NEW.current_quantity IS NOT OLD.current_quantity
 AND NEW.current_quantity - OLD.current_quantity IS NOT (
     SELECT CASE WHEN transaction_type = 'Receive' OR transaction_type = 'Adjust Up' THEN quantity ELSE -quantity END
       FROM inventory_transactions WHERE sku = NEW.sku ORDER BY id DESC LIMIT 1)
BEGIN
INSERT INTO stock_outside (sku, at, was, now)
VALUES (NEW.sku, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), OLD.current_quantity, NEW.current_quantity)
ON CONFLICT (sku) DO UPDATE SET at = excluded.at, now = excluded.now;
END;
"#,
];

/// The migration step whose `after_step` makes the outside-change triggers watch for the
/// standbys' feed too.
const FEED_STEP: i64 = 13;

/// The migration step whose `after_step` runs [`unroll_checks`].
const UNROLL_STEP: i64 = 11;

/// CHECK constraints that SQLite evaluates by building a small temporary b-tree of the
/// allowed values for every row it checks (an `IN` list of more than two constants), and
/// their equivalent written as comparisons, which it evaluates in place. On the ledger this
/// cost every INSERT a temporary b-tree, and more than doubled the time of `PRAGMA
/// quick_check`. Same values allowed, same NULL handling.
const UNROLLED_CHECKS: &[(&str, &str, &str)] = &[
    (
        "inventory_transactions",
        "CHECK (transaction_type IN ('Receive', 'Ship', 'Adjust Up', 'Adjust Down'))",
        "CHECK (transaction_type = 'Receive' OR transaction_type = 'Ship' OR transaction_type = 'Adjust Up' OR transaction_type = 'Adjust Down')",
    ),
    (
        "audit_log",
        "CHECK (action IN ('insert', 'update', 'delete'))",
        "CHECK (action = 'insert' OR action = 'update' OR action = 'delete')",
    ),
];

/// Rewrites the CHECK constraints of [`UNROLLED_CHECKS`] in `sqlite_schema`, inside the
/// migration's transaction. Only the constraint's text changes: every row already satisfies
/// the new one, because it allows exactly the same values, so no row has to be rewritten
/// (SQLite documents this `writable_schema` edit for constraint changes of this kind). A table
/// whose text differs (made by something else) keeps its constraint: it is only slower. The
/// schema cookie moves, so other connections reload; [`migrate`] reloads this one.
fn unroll_checks(conn: &Connection) -> Result<()> {
    let ctx = "compare CHECK values term by term";
    let mut edits = Vec::new();
    for (table, old, new) in UNROLLED_CHECKS {
        let sql: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .optional()
            .ctx(ctx)?;
        match sql {
            Some(sql) if sql.matches(old).count() == 1 => {
                edits.push((*table, sql.replacen(old, new, 1)));
            }
            _ => log::debug!("{table}: its CHECK is not the expected text; left as it is"),
        }
    }
    if edits.is_empty() {
        return Ok(());
    }
    let version: i64 = conn
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .ctx(ctx)?;
    let next = version
        .checked_add(1)
        .ok_or_else(|| StoreError::bad_database("the schema version overflowed"))?;
    conn.execute_batch("PRAGMA writable_schema = ON").ctx(ctx)?;
    let edited = edits.iter().try_for_each(|(table, sql)| {
        conn.execute(
            "UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = ?2",
            [sql.as_str(), table],
        )
        .map(|_| ())
    });
    let bumped =
        edited.and_then(|()| conn.execute_batch(&format!("PRAGMA schema_version = {next}")));
    // Off again whatever happened; a failure rolls the whole migration back.
    let off = conn.execute_batch("PRAGMA writable_schema = OFF");
    bumped.and(off).ctx(ctx)
}

/// The work a migration step needs beyond its SQL, in the same transaction.
fn after_step(conn: &Connection, target: i64) -> Result<()> {
    if target == 9 {
        super::chain::with_ledger_open(conn, || super::chain::repair(conn).map(|_| ()))?;
    }
    if target == UNROLL_STEP {
        unroll_checks(conn)?;
    }
    if target == FEED_STEP {
        watch_for_feed(conn)?;
    }
    Ok(())
}

/// The `replica_outside_*` triggers raise `outside` while the replica (`enabled`) or the
/// standbys' feed (`feed`) captures commits: each is dropped and made again with that
/// condition, inside the migration's transaction.
fn watch_for_feed(conn: &Connection) -> Result<()> {
    let old = "WHERE outside = 0 AND enabled = 1;";
    let new = "WHERE outside = 0 AND (enabled = 1 OR feed = 1);";
    let sqls = set_aside(
        conn,
        "trigger",
        "name LIKE 'replica\\_outside\\_%' ESCAPE '\\'",
    )?;
    for sql in sqls {
        conn.execute_batch(&sql.replace(old, new))
            .ctx("make the outside-change triggers watch the feed")?;
    }
    Ok(())
}

/// Drops the schema objects of `kind` ("index", "trigger") that `condition` (SQL over
/// `name` and `sql`) selects, and returns their SQL so the caller can put them back exactly.
/// For builders of a new file and migrations only, inside their transaction.
pub fn set_aside(conn: &Connection, kind: &str, condition: &str) -> Result<Vec<String>> {
    let ctx = format!("set the {kind}s aside");
    let found: Vec<(String, String)> = {
        let mut st = conn
            .prepare(&format!(
                "SELECT name, sql FROM sqlite_schema WHERE type = ?1 AND sql IS NOT NULL AND ({condition})"
            ))
            .ctx(&ctx)?;
        let r = st
            .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx(&ctx)?;
        r.collect::<std::result::Result<_, _>>().ctx(&ctx)?
    };
    for (name, _) in &found {
        conn.execute_batch(&format!("DROP {} \"{name}\"", kind.to_ascii_uppercase()))
            .ctx(&ctx)?;
    }
    Ok(found.into_iter().map(|(_, sql)| sql).collect())
}

/// Tables whose content is derived (virtual tables such as the product search index, and
/// their shadow tables): rebuilt, never copied row by row.
pub fn derived_tables(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn
        .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type IN ('virtual', 'shadow')")
        .ctx("list derived tables")?;
    let rows = st.query_map([], |r| r.get(0)).ctx("list derived tables")?;
    rows.collect::<std::result::Result<Vec<String>, _>>()
        .ctx("list derived tables")
}

/// Statements that rebuild the derived tables' content after a bulk load.
pub const REBUILD_DERIVED: &str = "INSERT INTO product_search (product_search) VALUES ('rebuild');";

/// `name` as an SQL identifier: in double quotes, quotes inside doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

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
        return Err(StoreError::bad_database(format!(
            "{path} is a SQLite database of another application (application_id {:#x}); point --db at an ora database",
            id.application_id
        )));
    }
    if id.application_id == 0 && id.tables > 0 {
        return Err(StoreError::bad_database(format!(
            "{path} is a SQLite database that ora did not create ({} tables, no ora marker); point --db at an ora database or a new file",
            id.tables
        )));
    }
    if id.user_version > latest_version() {
        return Err(StoreError::bad_database(format!(
            "{path} was written by a newer ora (schema version {}, this ora knows up to {}); upgrade ora, nothing was changed",
            id.user_version,
            latest_version()
        )));
    }
    Ok(())
}

/// Applies every pending migration, each in its own `BEGIN IMMEDIATE` transaction, so two
/// processes starting at once cannot both apply the same step.
/// A file with no schema yet is made with `auto_vacuum = INCREMENTAL`, so that maintenance can
/// give free pages back in short slices instead of a VACUUM that holds every writer. SQLite
/// takes the setting only before the first table is made and before WAL mode writes the
/// file's header: called on a new file's first connection, before anything else. Changes
/// nothing on a file that has a schema.
pub fn prepare_new(conn: &Connection, path: &str) -> Result<()> {
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .ctx(&format!("open {path}"))?;
    if objects == 0 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
            .ctx(&format!("open {path}"))?;
    }
    Ok(())
}

pub fn migrate(conn: &mut Connection, path: &str) -> Result<()> {
    // A current file needs no write lock at all: reading the version first keeps a file that
    // another process has locked from failing here with a message about a migration.
    let now: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx(&format!("open {path}"))?;
    if now >= latest_version() {
        return Ok(());
    }
    // Every pending step in one transaction: a step that fails leaves the file exactly as it
    // was, never half upgraded.
    let ctx = format!("migrate {path} to schema version {}", latest_version());
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .ctx(&ctx)?;
    let current: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx(&ctx)?;
    let mut done = Vec::new();
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let target = i as i64 + 1;
        if target <= current {
            continue;
        }
        let step = format!("migrate {path} to schema version {target}");
        tx.execute_batch(sql).ctx(&step)?;
        after_step(&tx, target)?;
        done.push(target);
    }
    if done.is_empty() {
        return Ok(());
    }
    tx.execute_batch(&format!(
        "PRAGMA user_version = {}; PRAGMA application_id = {APPLICATION_ID};",
        latest_version()
    ))
    .ctx(&ctx)?;
    tx.commit().ctx(&ctx)?;
    if done.contains(&UNROLL_STEP) {
        // This connection parsed the schema before step 11 edited its text: read it again.
        conn.execute_batch("PRAGMA writable_schema = RESET")
            .ctx(&ctx)?;
    }
    for target in done {
        log::info!("{path}: schema migrated to version {target}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opcodes(conn: &Connection, sql: &str) -> Vec<String> {
        let mut st = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
        st.query_map([], |r| r.get::<_, String>(1))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    const INSERT: &str = "INSERT INTO inventory_transactions (date, sku, quantity, transaction_type, created_at) VALUES ('2026-01-01', 'A-1', 1, 'Ship', 'x')";

    // A file of version 10 migrated to 11 on this very connection: the ledger's CHECK is
    // compared term by term (no temporary b-tree per INSERT) at once, without reopening, and
    // allows exactly the values it allowed before.
    #[test]
    fn unrolled_checks_take_effect_on_the_migrating_connection() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..10] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 10;
             INSERT INTO inventory_current (sku, product_name, current_quantity, reorder_point, last_updated)
                  VALUES ('A-1', 'Lamp', 4, 0, 'x');")
            .unwrap();
        assert!(opcodes(&conn, INSERT).iter().any(|o| o == "OpenEphemeral"));
        let before: i64 = conn
            .query_row("PRAGMA schema_version", [], |r| r.get(0))
            .unwrap();
        migrate(&mut conn, ":memory:").unwrap();
        let after: i64 = conn
            .query_row("PRAGMA schema_version", [], |r| r.get(0))
            .unwrap();
        assert!(after > before, "the schema cookie must move");
        assert!(!opcodes(&conn, INSERT).iter().any(|o| o == "OpenEphemeral"));
        for t in ["Receive", "Ship", "Adjust Up", "Adjust Down"] {
            conn.execute(&INSERT.replace("'Ship'", "?1"), [t]).unwrap();
        }
        for bad in ["ship", "Steal", "Receive "] {
            let e = conn
                .execute(&INSERT.replace("'Ship'", "?1"), [bad])
                .unwrap_err();
            assert_eq!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ConstraintViolation),
                "{bad}: {e}"
            );
        }
        let e = conn
            .execute(
                "INSERT INTO audit_log (at, actor, op, tbl, key, action) VALUES ('x', 'a', 'o', 't', 'k', 'upsert')",
                [],
            )
            .unwrap_err();
        assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }

    // A table whose constraint is not the text ora wrote keeps it: the step changes nothing.
    #[test]
    fn a_foreign_check_text_is_left_alone() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE inventory_transactions (id INTEGER PRIMARY KEY, transaction_type TEXT CHECK (transaction_type IN ('A', 'B', 'C')));",
        )
        .unwrap();
        let v0: i64 = conn
            .query_row("PRAGMA schema_version", [], |r| r.get(0))
            .unwrap();
        unroll_checks(&conn).unwrap();
        let v1: i64 = conn
            .query_row("PRAGMA schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v0, v1);
    }
}
