//! `ora adopt`: databases in the old system's layout, made here with the guide's tables (no
//! ora marker), clean and dirty (mixed-case types, signed quantities, free-text dates, unknown
//! types, orphans, stock that disagrees with its ledger), damaged, and not databases at all.
//! The result is a working ora database; the old file is never changed.

use rusqlite::Connection;

use crate::util::{query_i64, Sandbox, Server};

const OLD_SCHEMA: &str = "
CREATE TABLE inventory_current (sku TEXT PRIMARY KEY, product_name TEXT, current_quantity INTEGER DEFAULT 0,
    reorder_point INTEGER DEFAULT 0, alert_level TEXT, last_updated TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE inventory_transactions (id INTEGER PRIMARY KEY AUTOINCREMENT, date TEXT, sku TEXT, quantity INTEGER,
    transaction_type TEXT, notes TEXT, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE shipped_items (id INTEGER PRIMARY KEY, ship_date TEXT, sku_lot TEXT, base_sku TEXT,
    quantity_shipped INTEGER, order_number TEXT);
CREATE TABLE workflows (name TEXT PRIMARY KEY, status TEXT, details TEXT, updated_at TIMESTAMP);
CREATE TABLE system_kpis (snapshot_date TEXT PRIMARY KEY, orders_today INTEGER, shipments_sent INTEGER,
    pending_uploads INTEGER, system_status TEXT, created_at TIMESTAMP);
CREATE TABLE automation_log (id INTEGER PRIMARY KEY, line TEXT);
";

fn old_db(s: &Sandbox, name: &str, rows: &str) -> std::path::PathBuf {
    let p = s.path(name);
    let c = Connection::open(&p).unwrap();
    c.execute_batch(OLD_SCHEMA).unwrap();
    c.execute_batch(rows).unwrap();
    drop(c);
    p
}

fn digest(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

// A clean old database (types in the old system's spellings, stock agreeing with the ledger)
// becomes an ora database with every row and its ledger ids; nothing needs balancing; ora
// serves it; the old file is byte for byte unchanged.
#[test]
fn a_clean_old_database_is_adopted_with_its_ids() {
    let s = Sandbox::empty();
    let old = old_db(
        &s,
        "old.db",
        "INSERT INTO inventory_current VALUES ('A-1', 'Blue widget', 7, 2, 'ok', '2025-01-10 08:00:00'),
                                              ('B-2', 'Red gadget', 0, 1, 'critical', '2025-01-10 08:00:00');
         INSERT INTO inventory_transactions VALUES (10, '2025-01-10', 'A-1', 10, 'Receive', 'first', '2025-01-10 08:00:00'),
                                                   (11, '2025-01-11', 'A-1', 3, 'ship', NULL, '2025-01-11 09:00:00'),
                                                   (15, '2025-01-12', 'B-2', 4, 'RECEIVE', NULL, '2025-01-12 10:00:00'),
                                                   (16, '2025-01-12', 'B-2', 4, 'Adjust Down', 'broken', '2025-01-12 11:00:00');
         INSERT INTO shipped_items VALUES (1, '2025-01-11', 'A-1-LOT7', 'A-1', 3, 'ORD-1');
         INSERT INTO workflows VALUES ('picking', 'running', 'wave 3', '2025-01-12 11:00:00');
         INSERT INTO system_kpis VALUES ('2025-01-12', 4, 1, 0, 'ok', '2025-01-12 23:00:00');
         INSERT INTO automation_log VALUES (1, 'hello');",
    );
    let before = digest(&old);
    let r = s.json(&["adopt", old.to_str().unwrap()]);
    assert_eq!(r["integrity"], "ok");
    assert!(
        r["reconciled"]["balancing"].as_array().unwrap().is_empty(),
        "{r}"
    );
    assert!(r["problems"].as_array().unwrap().is_empty(), "{r}");
    assert!(
        r["fixes"].to_string().contains("\\\"ship\\\" read as Ship"),
        "{r}"
    );
    assert!(
        r["not_adopted"][0]
            .as_str()
            .unwrap()
            .starts_with("automation_log (1 rows)"),
        "{r}"
    );
    assert_eq!(digest(&old), before, "the old file is never changed");
    assert_eq!(
        query_i64(&s.db, "SELECT group_concat(id) = '10,11,15,16' FROM (SELECT id FROM inventory_transactions ORDER BY id)"),
        1
    );
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT current_quantity FROM inventory_current WHERE sku = 'A-1'"
        ),
        7
    );
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT count(*) FROM shipped_orders WHERE order_number = 'ORD-1' AND total_units = 3"
        ),
        1
    );
    let v = s.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    // The adoption is on record in the new file; the rows it loaded are not audit rows.
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM ops_log WHERE kind = 'adopt' AND ok = 1 AND details LIKE '%old.db%'"),
        1
    );
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM audit_log"), 0);
    // It is an ora database now: ora writes to it and serves it, and audits the writes.
    s.ok(&["stock", "receive", "B-2", "5"]);
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT count(*) FROM inventory_transactions WHERE actor IS NOT NULL"
        ),
        1,
        "only the new movement has an actor"
    );
    assert_eq!(
        query_i64(&s.db, "SELECT max(id) FROM inventory_transactions"),
        17
    );
    let srv = Server::start(&s, &[]);
    let (status, inv) = crate::util::call(&srv.addr, "GET", "/api/inventory/A-1", None, None);
    assert_eq!(status, 200, "{inv}");
    assert_eq!(inv["current_quantity"], 7, "{inv}");
}

// A dirty old database: every rule ora has is broken somewhere. Adopt lists each kind of
// problem, applies explicit fixes (noted on the movements), keeps what cannot be a movement in
// adopt_rejected, and the result passes verify. --check reports the same and writes nothing.
#[test]
fn a_dirty_old_database_is_adopted_with_every_fix_listed() {
    let s = Sandbox::empty();
    let old = old_db(
        &s,
        "old.db",
        "INSERT INTO inventory_current VALUES ('A-1', 'Blue widget', 20, -1, 'ok', 'last tuesday'),
                                              ('C-3', NULL, -4, 0, 'critical', NULL),
                                              ('D-4', 'Drifted', 50, 0, 'ok', '2025-01-01');
         INSERT INTO inventory_transactions (id, date, sku, quantity, transaction_type, notes, created_at) VALUES
            (1, '15/01/2025', 'A-1', 10, 'receive', NULL, '2025-01-15 08:00:00'),
            (2, 'Jan 16, 2025', 'A-1', -3, 'Ship', NULL, '2025-01-16 08:00:00'),
            (3, 'yesterday', 'A-1', 5, 'RECEIVE', 'counted', '2025-01-17 08:00:00'),
            (4, 'someday', 'A-1', 2, 'Adjust_Up', NULL, NULL),
            (5, '2025-01-18', 'A-1', -2, 'Receive', 'typo', '2025-01-18 08:00:00'),
            (6, '2025-01-18', 'A-1', 9, 'Transfer', NULL, '2025-01-18 08:00:00'),
            (7, '2025-01-18', 'A-1', 0, 'Receive', NULL, '2025-01-18 08:00:00'),
            (8, '2025-01-19', 'Z-9', 6, 'Receive', 'orphan', '2025-01-19 08:00:00'),
            (9, '2025-01-19', 'D-4', 'ten', 'Receive', NULL, '2025-01-19 08:00:00'),
            (10, '2025-01-19', 'D-4', 40, 'Receive', NULL, '2025-01-19 08:00:00');
         INSERT INTO shipped_items VALUES (1, '2025-01-16', 'A-1-L', 'A-1', 3, 'ORD-7'),
                                          (2, '2025-01-16', 'Q-5', 'Q-5', 1, 'ORD-7'),
                                          (3, 'never', 'A-1', 'A-1', 1, 'ORD-8'),
                                          (4, '2025-01-16', 'A-1', 'A-1', -1, 'ORD-8');
         INSERT INTO system_kpis VALUES ('not a day', 1, 1, 1, 'ok', NULL);",
    );
    let before = digest(&old);
    let out = s.path("new.db");
    let check = s.json(&[
        "adopt",
        old.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--check",
    ]);
    assert!(!out.exists(), "--check writes nothing");
    assert!(check["output"].is_null());
    let r = s.json(&[
        "adopt",
        old.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        check["problems"], r["problems"],
        "--check reports what adopting does"
    );
    assert_eq!(digest(&old), before);
    let problems = r["problems"].to_string();
    let fixes = r["fixes"].to_string();
    for p in [
        "unknown type",
        "id 6",
        "quantity 0",
        "negative quantities on Receive/Adjust Up",
        "date that cannot be read",
        "\\\"yesterday\\\" -> 2025-01-17",
        "\\\"someday\\\" -> 2025-01-17",
        "not a whole number",
        "disagrees with their ledger",
        "product table lacks",
        "Z-9",
        "negative stock levels",
        "C-3: -4",
        "KPI days",
    ] {
        assert!(problems.contains(p), "{p} missing from {problems}");
    }
    for f in [
        "negative quantities on Ship/Adjust Down read as their size",
        "recorded as Adjust Down",
        "\\\"15/01/2025\\\" -> 2025-01-15",
        "negative reorder points set to 0",
        "products without a name",
        "orders recreated",
    ] {
        assert!(fixes.contains(f), "{f} missing from {fixes}");
    }
    let db = |sql: &str| query_i64(&out, sql);
    // Ship -3 is a Ship of 3; Receive -2 an Adjust Down of 2, noted; 'yesterday' took the time
    // it was recorded and is noted.
    assert_eq!(db("SELECT count(*) FROM inventory_transactions WHERE id = 2 AND transaction_type = 'Ship' AND quantity = 3"), 1);
    assert_eq!(db("SELECT count(*) FROM inventory_transactions WHERE id = 5 AND transaction_type = 'Adjust Down' AND quantity = 2 AND notes LIKE 'typo [adopt: was Receive -2]'"), 1);
    assert_eq!(db("SELECT count(*) FROM inventory_transactions WHERE id = 3 AND date = '2025-01-17' AND notes LIKE '%original date \"yesterday\"%'"), 1);
    // The stock the old system recorded stays; one balancing movement per sku that disagreed.
    assert_eq!(
        db("SELECT current_quantity FROM inventory_current WHERE sku = 'A-1'"),
        20
    );
    assert_eq!(
        db("SELECT current_quantity FROM inventory_current WHERE sku = 'D-4'"),
        50
    );
    assert_eq!(
        db("SELECT current_quantity FROM inventory_current WHERE sku = 'C-3'"),
        0
    );
    assert_eq!(db("SELECT count(*) FROM inventory_transactions WHERE notes LIKE 'adopt: balances%' AND id > 10"), 2);
    assert_eq!(db("SELECT count(*) FROM inventory_current WHERE sku IN ('Z-9', 'Q-5') AND product_name LIKE '(adopted) %'"), 2);
    // Unknown type, quantity 0, a quantity that is not a number, unreadable items and KPIs.
    assert_eq!(
        db("SELECT count(*) FROM adopt_rejected WHERE source_table = 'inventory_transactions'"),
        3
    );
    assert_eq!(
        db("SELECT count(*) FROM adopt_rejected WHERE source_table = 'shipped_items'"),
        2
    );
    assert_eq!(
        db("SELECT count(*) FROM adopt_rejected WHERE source_table = 'system_kpis'"),
        1
    );
    let v = crate::util::Sandbox {
        dir: tempfile::tempdir().unwrap(),
        db: out.clone(),
        now: None,
    }
    .json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
}

// What is not an old database is refused with a clear line and nothing is written: a text
// file, an empty file, a file that is not there, a damaged database, an ora database, a
// SQLite file without the old tables, an --out that exists.
#[test]
fn what_cannot_be_adopted_is_refused() {
    let s = Sandbox::empty();
    let out = s.path("new.db");
    let o = out.to_str().unwrap();
    let text = s.path("notes.txt");
    std::fs::write(&text, "sku,qty\nA-1,5\n").unwrap();
    let empty = s.path("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let header_only = s.path("header.db");
    std::fs::write(&header_only, b"SQLite format 3\0garbage after the header").unwrap();
    for (file, words) in [
        (text.clone(), "is not a SQLite database"),
        (empty.clone(), "shorter than a SQLite header"),
        (s.path("missing.db"), "no file at"),
    ] {
        let err = s.fails(&["adopt", file.to_str().unwrap(), "--out", o], 2);
        assert!(err.contains(words), "{err}");
        assert!(!out.exists());
    }
    let err = s.fails(&["adopt", header_only.to_str().unwrap(), "--out", o], 2);
    assert!(
        err.contains("cannot be read as a SQLite database")
            || err.contains("not a SQLite database"),
        "{err}"
    );

    // Damaged: a page of the ledger overwritten after the file was written.
    let rows: String = (1..=3000)
        .map(|i| format!("({i}, '2025-01-10', 'A-1', 1, 'Receive', 'padding padding padding {i}', '2025-01-10 08:00:00'),"))
        .collect();
    let damaged = old_db(
        &s,
        "damaged.db",
        &format!(
            "INSERT INTO inventory_current VALUES ('A-1', 'W', 3000, 0, 'ok', NULL);
             INSERT INTO inventory_transactions VALUES {};",
            rows.trim_end_matches(',')
        ),
    );
    let mut bytes = std::fs::read(&damaged).unwrap();
    let page = 4096;
    for b in &mut bytes[page * 6..page * 6 + 300] {
        *b = 0xA5;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let err = s.fails(&["adopt", damaged.to_str().unwrap(), "--out", o], 1);
    assert!(
        err.contains("is damaged") && err.contains(".recover"),
        "{err}"
    );
    assert!(!out.exists());

    // An ora database is not adopted again.
    let ora = Sandbox::new();
    let err = s.fails(&["adopt", ora.db.to_str().unwrap(), "--out", o], 2);
    assert!(err.contains("already an ora database"), "{err}");

    // Another application's SQLite file.
    let other = s.path("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE customers (id INTEGER)")
        .unwrap();
    let err = s.fails(&["adopt", other.to_str().unwrap(), "--out", o], 2);
    assert!(
        err.contains("has no inventory_current table") && err.contains("customers"),
        "{err}"
    );

    // --out exists: kept as it is.
    let good = old_db(
        &s,
        "good.db",
        "INSERT INTO inventory_current VALUES ('A-1', 'W', 0, 0, 'ok', NULL);",
    );
    std::fs::write(&out, b"keep").unwrap();
    let err = s.fails(&["adopt", good.to_str().unwrap(), "--out", o], 2);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
}
