//! Salvage of damaged files at page level: garbage pages, a truncated file, a WAL holding the
//! newest rows, an undamaged file (nothing lost), and --replace beside a running server.

use std::collections::HashMap;
use std::path::Path;

use crate::util::{query_i64, Rng, Sandbox, Server};

const ROWS: u64 = 60_000;

fn sample() -> Sandbox {
    let s = Sandbox::empty();
    ora::sample::generate(&s.db, ROWS, 300, 11).expect("sample");
    s
}

/// Every ledger row of `rec` that is not a balancing adjustment equals the row with the same
/// id in `orig`; returns how many were compared.
fn ledger_rows_match(orig: &Path, rec: &Path) -> i64 {
    let o = rusqlite::Connection::open(orig).unwrap();
    let r = rusqlite::Connection::open(rec).unwrap();
    let mut original: HashMap<i64, String> = HashMap::new();
    let mut st = o.prepare("SELECT id, date || sku || quantity || transaction_type || coalesce(notes,'') || created_at || coalesce(request_id,'') FROM inventory_transactions").unwrap();
    let mut rows = st.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        original.insert(row.get(0).unwrap(), row.get(1).unwrap());
    }
    let mut st = r
        .prepare("SELECT id, date || sku || quantity || transaction_type || coalesce(notes,'') || created_at || coalesce(request_id,'') FROM inventory_transactions WHERE notes IS NULL OR notes NOT LIKE 'recover:%'")
        .unwrap();
    let mut rows = st.query([]).unwrap();
    let mut n = 0;
    while let Some(row) = rows.next().unwrap() {
        let id: i64 = row.get(0).unwrap();
        let v: String = row.get(1).unwrap();
        assert_eq!(
            original.get(&id),
            Some(&v),
            "salvaged ledger row {id} differs from the original"
        );
        n += 1;
    }
    n
}

/// Keys (`key` = rowid or a key column) of `table` in `orig` that `rec` lacks.
fn lost_ids(orig: &Path, rec: &Path, table: &str) -> std::collections::BTreeSet<String> {
    let keys = |db: &Path| -> std::collections::BTreeSet<String> {
        let key = match table {
            "workflows" => "name",
            "inventory_current" => "sku",
            _ => "rowid",
        };
        let c = rusqlite::Connection::open(db).unwrap();
        let mut st = c
            .prepare(&format!("SELECT CAST({key} AS TEXT) FROM {table}"))
            .unwrap();
        let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    };
    let there = keys(rec);
    keys(orig)
        .into_iter()
        .filter(|k| !there.contains(k))
        .collect()
}

/// The report never says more is known lost than was, and its bound covers the truth.
fn within_bounds(t: &serde_json::Value, truth: u64) {
    let known = t["known_lost"].as_u64().unwrap();
    let possibly = t["possibly_lost"].as_u64().unwrap();
    assert!(
        known <= truth,
        "known lost {known} > truly lost {truth}: {t}"
    );
    assert!(
        truth <= known + possibly,
        "truly lost {truth} > known {known} + possibly {possibly}: {t}"
    );
}

/// Pages of `name` (a table or an index) of type `kind` ("leaf", "internal"), in order.
fn pages_of(db: &Path, name: &str, kind: &str) -> Vec<u64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT pageno FROM dbstat WHERE name = ?1 AND pagetype = ?2 ORDER BY pageno")
        .unwrap();
    let rows = st.query_map([name, kind], |r| r.get::<_, i64>(0)).unwrap();
    rows.map(|r| r.unwrap() as u64).collect()
}

/// A copy of the database as it is, all of it in the main file (a WAL would hold newer copies
/// of the pages a test then wrecks in the main file).
fn keep_original(s: &Sandbox) -> std::path::PathBuf {
    rusqlite::Connection::open(&s.db)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let orig = s.path("orig.db");
    std::fs::copy(&s.db, &orig).unwrap();
    orig
}

fn wreck(db: &Path, pages: &[u64], rng: &mut Rng) {
    let mut bytes = std::fs::read(db).unwrap();
    for p in pages {
        let at = (*p as usize - 1) * 4096;
        for b in &mut bytes[at..at + 4096] {
            *b = rng.next() as u8;
        }
    }
    std::fs::write(db, &bytes).unwrap();
}

// The ledger's last leaf pages and the workflows' only page destroyed, with a backup: the
// report's known lost is exactly what was lost (named by the ledger's indexes and the backup),
// the workflows lost have their own line, the balancing movements take ids above every id the
// file ever held, and a request whose movement was lost is recorded again when it is sent
// again instead of answering with another movement's id.
#[test]
fn the_report_says_exactly_what_was_lost_and_ids_are_never_reused() {
    let s = sample();
    for (name, status) in [("picking", "running"), ("packing", "done")] {
        s.ok(&["workflow", "set", name, status]);
    }
    let sku: String = rusqlite::Connection::open(&s.db)
        .unwrap()
        .query_row(
            "SELECT sku FROM inventory_current ORDER BY sku LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let first = s.json(&["stock", "receive", &sku, "7", "--request-id", "scan-last"]);
    let last_id = first["movement"]["id"].as_i64().unwrap();
    s.ok(&["backup"]);
    let orig = keep_original(&s);
    let leaves = pages_of(&s.db, "inventory_transactions", "leaf");
    let mut hit: Vec<u64> = leaves[leaves.len() - 3..].to_vec();
    hit.extend(pages_of(&s.db, "workflows", "leaf"));
    wreck(&s.db, &hit, &mut Rng(7));
    let rec = s.path("rec.db");
    let report = s.json(&["recover", "--out", rec.to_str().unwrap()]);
    let ledger = table(&report, "inventory_transactions");
    let truth = lost_ids(&orig, &rec, "inventory_transactions");
    assert!(
        truth.contains(&last_id.to_string()),
        "the last movement was on a wrecked page"
    );
    assert_eq!(
        ledger["known_lost"].as_u64(),
        Some(truth.len() as u64),
        "{ledger}"
    );
    assert_eq!(
        ledger["missing_vs_backup"].as_u64(),
        Some(truth.len() as u64),
        "{ledger}"
    );
    assert!(ledger["damaged_pages"].as_u64().unwrap() >= 3, "{ledger}");
    let wf = table(&report, "workflows");
    let wf_truth = lost_ids(&orig, &rec, "workflows");
    assert!(wf_truth.len() >= 2);
    assert_eq!(
        wf["known_lost"].as_u64(),
        Some(wf_truth.len() as u64),
        "{wf}"
    );
    let named = wf["known_lost_examples"].to_string();
    assert!(
        named.contains("picking") && named.contains("packing"),
        "{wf}"
    );
    // New rows take ids above the highest the file held.
    let r = rusqlite::Connection::open(&rec).unwrap();
    let lowest_new: i64 = r
        .query_row(
            "SELECT coalesce(min(id), 0) FROM inventory_transactions WHERE notes LIKE 'recover:%'",
            [],
            |x| x.get(0),
        )
        .unwrap();
    assert!(
        lowest_new > last_id,
        "a balancing movement took id {lowest_new} <= {last_id}"
    );
    drop(r);
    assert!(
        report["reconciled"]["requests_forgotten"].as_u64().unwrap() >= 1,
        "{report}"
    );
    let rec_sandbox = Sandbox {
        dir: tempfile::tempdir().unwrap(),
        db: rec.clone(),
        now: None,
    };
    rec_sandbox.ok(&["verify"]);
    // The lost request, sent again, is recorded again: of its own sku, under a new id.
    let again = rec_sandbox.json(&["stock", "receive", &sku, "7", "--request-id", "scan-last"]);
    assert_eq!(again["replayed"], false, "{again}");
    assert_eq!(again["movement"]["sku"], sku.as_str(), "{again}");
    assert!(
        again["movement"]["id"].as_i64().unwrap() > last_id,
        "{again}"
    );
}

// Single bytes flipped in many pages of the ledger: every page that lost a row is counted as
// damaged, and what is known lost is exactly what was (the backup names every row).
#[test]
fn flipped_bytes_are_counted_as_damage() {
    let s = sample();
    s.ok(&["backup"]);
    let orig = keep_original(&s);
    let leaves = pages_of(&s.db, "inventory_transactions", "leaf");
    let mut bytes = std::fs::read(&s.db).unwrap();
    let mut rng = Rng(0x5EED);
    for i in 0..40 {
        let p = leaves[(i * 37) % leaves.len()] as usize;
        // A byte of the cell pointer array: the cell it points at is lost.
        let at = (p - 1) * 4096 + 8 + (rng.below(20) as usize);
        bytes[at] ^= 0x5A;
    }
    std::fs::write(&s.db, &bytes).unwrap();
    let rec = s.path("rec.db");
    let report = s.json(&["recover", "--out", rec.to_str().unwrap()]);
    let ledger = table(&report, "inventory_transactions");
    let truth = lost_ids(&orig, &rec, "inventory_transactions").len() as u64;
    assert!(truth > 0, "the flips must lose rows: {ledger}");
    assert!(ledger["damaged_pages"].as_u64().unwrap() > 0, "{ledger}");
    assert_eq!(ledger["known_lost"].as_u64(), Some(truth), "{ledger}");
    within_bounds(ledger, truth);
}

fn table<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap()
}

// 20 pages overwritten with garbage: recover finishes, says what it lost, and its output
// passes integrity_check and verify, with every kept row as it was.
#[test]
fn twenty_garbage_pages_are_salvaged_around() {
    let s = sample();
    s.ok(&["backup"]);
    let orig = s.path("orig.db");
    std::fs::copy(&s.db, &orig).unwrap();
    let pages = std::fs::metadata(&s.db).unwrap().len() / 4096;
    let mut bytes = std::fs::read(&s.db).unwrap();
    let mut rng = Rng(0xC0FF_EE00_1234_5678);
    let mut hit = std::collections::BTreeSet::new();
    while hit.len() < 20 {
        hit.insert(2 + rng.below(pages - 2));
    }
    for p in &hit {
        let at = *p as usize * 4096;
        for b in &mut bytes[at..at + 4096] {
            *b = rng.next() as u8;
        }
    }
    std::fs::write(&s.db, &bytes).unwrap();
    assert_eq!(
        s.run(&["verify"]).status.code(),
        Some(1),
        "the damage must be visible first"
    );
    let rec = s.path("rec.db");
    let report = s.json(&["recover", "--out", rec.to_str().unwrap()]);
    assert!(report["damaged_pages"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["integrity"], "ok");
    let ledger = table(&report, "inventory_transactions");
    let salvaged = ledger["salvaged"].as_i64().unwrap() + ledger["from_orphans"].as_i64().unwrap();
    let lost = ledger["known_lost"].as_i64().unwrap();
    assert_eq!(
        salvaged + lost,
        ROWS as i64,
        "salvaged + known lost must account for every row: {ledger}"
    );
    assert!(
        salvaged as f64 >= 0.9 * ROWS as f64,
        "kept only {salvaged} of {ROWS}"
    );
    assert_eq!(
        ledger["in_backup"].as_i64(),
        Some(ROWS as i64),
        "compared with the backup: {ledger}"
    );
    let rec_sandbox = Sandbox {
        dir: tempfile::tempdir().unwrap(),
        db: rec.clone(),
        now: None,
    };
    rec_sandbox.ok(&["verify"]);
    assert_eq!(ledger_rows_match(&orig, &rec), salvaged);
    // Against the truth: the backup names every row, so what is known lost is what was, for
    // every table.
    for t in ["inventory_transactions", "inventory_current", "workflows"] {
        let truth = lost_ids(&orig, &rec, t).len() as u64;
        let r = table(&report, t);
        assert_eq!(r["known_lost"].as_u64(), Some(truth), "{t}: {r}");
        assert_eq!(r["missing_vs_backup"].as_u64(), Some(truth), "{t}: {r}");
    }
    // Stock levels are kept as recorded: every product the salvage found holds what it held.
    let o = rusqlite::Connection::open(&orig).unwrap();
    let r = rusqlite::Connection::open(&rec).unwrap();
    let mut st = r.prepare("SELECT sku, current_quantity FROM inventory_current WHERE product_name NOT LIKE '(recovered)%'").unwrap();
    let kept: Vec<(String, i64)> = st
        .query_map([], |x| Ok((x.get(0)?, x.get(1)?)))
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    for (sku, q) in kept {
        let before: i64 = o
            .query_row(
                "SELECT current_quantity FROM inventory_current WHERE sku = ?1",
                [&sku],
                |x| x.get(0),
            )
            .unwrap();
        assert_eq!(q, before, "stock of {sku} changed");
    }
}

// A file cut off in the middle: the tail is lost, the rest salvaged, the output verifies.
#[test]
fn a_truncated_file_is_salvaged() {
    let s = sample();
    let orig = s.path("orig.db");
    std::fs::copy(&s.db, &orig).unwrap();
    let len = std::fs::metadata(&s.db).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&s.db).unwrap();
    f.set_len(len * 6 / 10 + 1234).unwrap();
    drop(f);
    let rec = s.path("rec.db");
    let report = s.json(&["recover", "--out", rec.to_str().unwrap()]);
    let ledger = table(&report, "inventory_transactions");
    // No backup: what is known lost is what the surviving index entries name; the rest of
    // the truth lies within the bound.
    let truth = lost_ids(&orig, &rec, "inventory_transactions").len() as u64;
    assert!(truth > 0);
    within_bounds(ledger, truth);
    assert!(ledger["salvaged"].as_i64().unwrap() > 0, "{ledger}");
    let rec_sandbox = Sandbox {
        dir: tempfile::tempdir().unwrap(),
        db: rec,
        now: None,
    };
    rec_sandbox.ok(&["verify"]);
}

// An undamaged file loses nothing, including rows that live only in the WAL.
#[test]
fn an_undamaged_file_with_a_wal_loses_nothing() {
    let s = sample();
    // Leave committed rows in the WAL: a writer that dies before any checkpoint (the
    // connection is leaked, so nothing checkpoints or removes the WAL).
    let c = rusqlite::Connection::open(&s.db).unwrap();
    c.execute_batch("PRAGMA wal_autocheckpoint = 0;").unwrap();
    for _ in 0..50 {
        c.execute(
            "INSERT INTO inventory_transactions (date, sku, quantity, transaction_type, created_at) VALUES ('2026-11-22', 'SKU-00001', 1, 'Receive', 'x')",
            [],
        )
        .unwrap();
        c.execute("UPDATE inventory_current SET current_quantity = current_quantity + 1 WHERE sku = 'SKU-00001'", []).unwrap();
    }
    std::mem::forget(c);
    let expected: Vec<(String, i64)> = [
        "inventory_current",
        "inventory_transactions",
        "shipped_orders",
        "shipped_items",
        "workflows",
        "system_kpis",
    ]
    .iter()
    .map(|t| {
        (
            t.to_string(),
            query_i64(&s.db, &format!("SELECT count(*) FROM {t}")),
        )
    })
    .collect();
    assert_eq!(expected[1].1, ROWS as i64 + 50);
    let rec = s.path("rec.db");
    let report = s.json(&["recover", "--out", rec.to_str().unwrap(), "--no-compare"]);
    assert!(report["pages_from_wal"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["lost_and_found"], 0, "{report}");
    assert_eq!(
        report["reconciled"]["balancing"].as_array().unwrap().len(),
        0
    );
    for (t, n) in expected {
        assert_eq!(
            query_i64(&rec, &format!("SELECT count(*) FROM {t}")),
            n,
            "{t}"
        );
        assert_eq!(
            table(&report, &t)["known_lost"].as_i64().unwrap_or(0),
            0,
            "{t}"
        );
    }
    assert_eq!(ledger_rows_match(&s.db, &rec), ROWS as i64 + 50);
}

// --replace installs the salvage over the damaged file (kept beside it), and is refused while
// a server holds the database.
#[test]
fn replace_installs_the_salvage_and_waits_for_the_server() {
    let s = sample();
    let server = Server::start(&s, &[]);
    let err = s.fails(&["recover", "--replace", "--no-compare"], 3);
    assert!(err.contains(&format!("pid {}", server.child.id())), "{err}");
    drop(server);
    let report = s.json(&["recover", "--replace", "--no-compare"]);
    let kept = report["kept_previous"].as_str().unwrap();
    assert!(Path::new(kept).exists());
    s.ok(&["verify"]);
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        ROWS as i64
    );
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM ops_log WHERE kind = 'recover'"),
        1
    );
}

// Hostile inputs: garbage, an empty file, a missing file. Recover never panics.
#[test]
fn recover_handles_garbage_and_missing_files() {
    let s = Sandbox::empty();
    let mut rng = Rng(42);
    let garbage: Vec<u8> = (0..200_000).map(|_| rng.next() as u8).collect();
    std::fs::write(&s.db, &garbage).unwrap();
    let rec = s.path("rec.db");
    let report = s.json(&["recover", "--out", rec.to_str().unwrap(), "--no-compare"]);
    assert_eq!(report["header_readable"], false);
    assert_eq!(report["integrity"], "ok");
    std::fs::write(&s.db, b"").unwrap();
    let rec2 = s.path("rec2.db");
    s.json(&["recover", "--out", rec2.to_str().unwrap(), "--no-compare"]);
    let err = s.fails(&["recover", "--out", rec2.to_str().unwrap()], 2);
    assert!(err.contains("already exists"), "{err}");
    std::fs::remove_file(&s.db).unwrap();
    let err = s.fails(&["recover"], 2);
    assert!(err.contains("no database file"), "{err}");
}
