//! The domain commands as an operator uses them: movements, products, shipments, workflows,
//! KPIs, listings, idempotency, verify.

use crate::util::{query_i64, Sandbox};

fn stock_of(s: &Sandbox, sku: &str) -> i64 {
    let v = s.json(&["stock", "show", sku]);
    v["product"]["current_quantity"].as_i64().expect("quantity")
}

// Receive, ship and adjust move the stock and write one ledger row each.
#[test]
fn movements_update_stock_and_ledger_together() {
    let s = Sandbox::new();
    s.ok(&[
        "product",
        "add",
        "A-1",
        "Blue widget",
        "--reorder-point",
        "5",
    ]);
    s.ok(&["stock", "receive", "A-1", "20"]);
    s.ok(&["stock", "ship", "A-1", "8"]);
    s.ok(&["stock", "adjust", "A-1", "-2"]);
    s.ok(&["stock", "adjust", "A-1", "+1"]);
    assert_eq!(stock_of(&s, "A-1"), 11);
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        4
    );
    let types = s.json(&["stock", "history", "A-1"]);
    let kinds: Vec<&str> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Adjust Up", "Adjust Down", "Ship", "Receive"]);
    s.ok(&["verify"]);
}

// The alert level follows the reorder point, and --low lists only what needs reordering.
#[test]
fn low_stock_listing_follows_reorder_points() {
    let s = Sandbox::new();
    s.ok(&[
        "product",
        "add",
        "OK-1",
        "Plenty",
        "--reorder-point",
        "5",
        "--initial",
        "50",
    ]);
    s.ok(&[
        "product",
        "add",
        "LOW-1",
        "Few",
        "--reorder-point",
        "5",
        "--initial",
        "5",
    ]);
    s.ok(&["product", "add", "OUT-1", "None", "--reorder-point", "5"]);
    let low = s.json(&["stock", "list", "--low"]);
    let skus: Vec<(&str, &str)> = low
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["sku"].as_str().unwrap(),
                p["alert_level"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(skus, [("OUT-1", "critical"), ("LOW-1", "low")]);
    s.ok(&["product", "update", "LOW-1", "--reorder-point", "2"]);
    assert_eq!(
        s.json(&["stock", "list", "--low"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

// A request_id makes a write idempotent: same answer, one ledger row.
#[test]
fn same_request_id_twice_gives_one_row_and_the_same_answer() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Widget"]);
    let first = s.json(&["stock", "receive", "A-1", "7", "--request-id", "scan-0001"]);
    let second = s.json(&["stock", "receive", "A-1", "7", "--request-id", "scan-0001"]);
    assert_eq!(first["movement"], second["movement"]);
    assert_eq!(first["replayed"], false);
    assert_eq!(second["replayed"], true);
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        1
    );
    assert_eq!(stock_of(&s, "A-1"), 7);
    // The same key for a different request is a conflict, not a silent replay.
    let err = s.fails(
        &["stock", "receive", "A-1", "8", "--request-id", "scan-0001"],
        1,
    );
    assert!(
        err.contains("already used for a different request"),
        "{err}"
    );
    assert_eq!(stock_of(&s, "A-1"), 7);
}

// A shipment becomes Ship movements, all or nothing.
#[test]
fn shipments_are_all_or_nothing() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Widget", "--initial", "10"]);
    s.ok(&["product", "add", "B-2", "Gadget", "--initial", "1"]);
    let before = s.snapshot();
    let err = s.fails(
        &[
            "shipment", "record", "ORD-1", "--item", "A-1:3", "--item", "B-2:2",
        ],
        1,
    );
    assert!(err.contains("not enough stock of B-2"), "{err}");
    assert_eq!(s.snapshot(), before, "a refused order changed the database");
    let out = s.json(&[
        "shipment",
        "record",
        "ORD-1",
        "--item",
        "A-1:3:LOT-9",
        "--item",
        "B-2:1",
        "--date",
        "2026-11-20",
    ]);
    assert_eq!(out["result"]["total_units"], 4);
    assert_eq!(stock_of(&s, "A-1"), 7);
    assert_eq!(stock_of(&s, "B-2"), 0);
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM shipped_items WHERE sku_lot = 'LOT-9' AND ship_date = '2026-11-20'"), 1);
    s.fails(&["shipment", "record", "ORD-1", "--item", "A-1:1"], 1);
    s.ok(&["verify"]);
}

// Workflows use optimistic locking: a stale --expect-version is refused with exit 1.
#[test]
fn workflow_versions_refuse_stale_writers() {
    let s = Sandbox::new();
    s.ok(&[
        "workflow",
        "set",
        "nightly-upload",
        "running",
        "--expect-version",
        "0",
    ]);
    s.ok(&[
        "workflow",
        "set",
        "nightly-upload",
        "done",
        "--details",
        "42 files",
        "--expect-version",
        "1",
    ]);
    let err = s.fails(
        &[
            "workflow",
            "set",
            "nightly-upload",
            "failed",
            "--expect-version",
            "1",
        ],
        1,
    );
    assert!(err.contains("version 2"), "{err}");
    let list = s.json(&["workflow", "list"]);
    assert_eq!(list[0]["status"], "done");
    assert_eq!(list[0]["version"], 2);
    assert_eq!(list[0]["details"], "42 files");
}

// KPIs are upserted per day; fields left out keep their value.
#[test]
fn kpis_upsert_per_day() {
    let s = Sandbox::new();
    s.ok(&[
        "kpi",
        "record",
        "2026-11-21",
        "--orders-today",
        "12",
        "--shipments-sent",
        "9",
    ]);
    s.ok(&["kpi", "record", "2026-11-21", "--status", "green"]);
    s.ok(&["kpi", "record", "2026-11-22", "--pending-uploads", "3"]);
    let list = s.json(&["kpi", "list"]);
    assert_eq!(list[0]["snapshot_date"], "2026-11-22");
    assert_eq!(list[1]["orders_today"], 12);
    assert_eq!(list[1]["shipments_sent"], 9);
    assert_eq!(list[1]["system_status"], "green");
}

// CSV import: all rows applied in one go, request_ids make a re-import harmless.
#[test]
fn csv_import_applies_a_file_and_reimport_is_harmless() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Widget"]);
    s.ok(&["product", "add", "B-2", "Gadget"]);
    let csv = s.path("moves.csv");
    std::fs::write(
        &csv,
        "sku,type,quantity,date,notes,request_id\nA-1,Receive,10,2026-11-01,\"dock 3, pallet 7\",r-1\nB-2,receive,5,,,r-2\nA-1,Ship,4,2026-11-02,,r-3\nB-2,adjust down,1,,recount,r-4\n",
    )
    .unwrap();
    let out = s.json(&["stock", "import", csv.to_str().unwrap()]);
    assert_eq!(out["applied"], 4);
    let again = s.json(&["stock", "import", csv.to_str().unwrap()]);
    assert_eq!(again["applied"], 0);
    assert_eq!(again["replayed"], 4);
    assert_eq!(stock_of(&s, "A-1"), 6);
    assert_eq!(stock_of(&s, "B-2"), 4);
    s.ok(&["verify"]);
}

// verify lists every violation and exits 1 when the ledger and the stock disagree.
#[test]
fn verify_finds_and_lists_ledger_violations() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Widget", "--initial", "10"]);
    s.ok(&["product", "add", "B-2", "Gadget", "--initial", "3"]);
    s.ok(&["verify"]);
    // Damage the stock figures behind ora's back, as a buggy script would.
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute_batch("UPDATE inventory_current SET current_quantity = current_quantity + 1")
        .unwrap();
    drop(conn);
    let out = s.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sku A-1 holds 11 but its movements add up to 10"),
        "{text}"
    );
    assert!(
        text.contains("sku B-2 holds 4 but its movements add up to 3"),
        "{text}"
    );
    let recorded = query_i64(
        &s.db,
        "SELECT count(*) FROM ops_log WHERE kind = 'verify' AND ok = 0",
    );
    assert_eq!(recorded, 1);
}

// Negative stock is refused, the refusal changes nothing; configuration can allow it.
#[test]
fn negative_stock_is_refused_unless_configured() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Widget", "--initial", "2"]);
    let before = s.snapshot();
    let err = s.fails(&["stock", "ship", "A-1", "3"], 1);
    assert!(
        err.contains("not enough stock of A-1: 2 on hand, 3 asked"),
        "{err}"
    );
    assert_eq!(s.snapshot(), before);
    let cfg = s.path("ora.toml");
    std::fs::write(&cfg, "[database]\nallow_negative_stock = true\n").unwrap();
    s.ok(&[
        "--config",
        cfg.to_str().unwrap(),
        "stock",
        "ship",
        "A-1",
        "3",
    ]);
    assert_eq!(stock_of(&s, "A-1"), -1);
    s.ok(&["--config", cfg.to_str().unwrap(), "verify"]);
    s.fails(&["verify"], 1);
}

// Regression: `ora stock history | head -1` ended with "internal error (a bug): failed
// printing to stdout: Broken pipe", exit 3. A reader that goes away ends the job quietly.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "P-1", "Pipe", "--initial", "1"]);
    let mut csv = String::from("sku,type,quantity\n");
    for _ in 0..3000 {
        csv.push_str("P-1,Receive,1\n");
    }
    std::fs::write(s.path("m.csv"), csv).unwrap();
    s.ok(&["stock", "import", s.path("m.csv").to_str().unwrap()]);
    let mut child = s
        .cmd(&["stock", "history", "--limit", "3000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close our end of the pipe.
    {
        use std::io::BufRead;
        let out = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
        assert!(!line.is_empty());
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}
