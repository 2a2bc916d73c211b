//! The ledger's hash chain against the sqlite3 shell: a row edited, removed or added behind
//! ora's back, with the stock made to match so the sums still agree, is found by `ora verify`,
//! which names the first broken row; `ora recover` links the chain again and says where.

use std::process::Command;

use crate::util::{behind_the_guard, have, skip, Sandbox};

/// Ten movements on two products (ledger ids 1-12 with the two initial receipts).
fn ledger() -> Sandbox {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Lamp", "--initial", "50"]);
    s.ok(&["product", "add", "B-2", "Desk", "--initial", "50"]);
    for i in 0..10 {
        let sku = if i % 2 == 0 { "A-1" } else { "B-2" };
        s.ok(&["stock", "receive", sku, &format!("{}", i + 1)]);
    }
    s
}

fn sqlite3(s: &Sandbox, sql: &str) {
    let out = Command::new("sqlite3")
        .arg(&s.db)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ora verify` fails (exit 1) naming this ledger id, and only the chain is broken.
fn broken_at(s: &Sandbox, id: i64) -> serde_json::Value {
    let out = s.run(&["--json", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chain"]["id"], id, "{v}");
    assert!(
        v["ledger"].as_array().unwrap().is_empty(),
        "the stock was made to match: {v}"
    );
    let text = s.run(&["verify"]);
    let words =
        String::from_utf8_lossy(&text.stdout).to_string() + &String::from_utf8_lossy(&text.stderr);
    assert!(
        words.contains(&format!("ledger chain: breaks at ledger id {id}")),
        "{words}"
    );
    v
}

#[test]
fn tampering_with_the_ledger_is_found_and_named() {
    if !have("sqlite3") {
        skip(
            "tampering_with_the_ledger_is_found_and_named",
            "no sqlite3 shell (scripts/test.sh installs it)",
        );
        return;
    }
    // An untouched ledger holds.
    let s = ledger();
    let v = s.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["chain"].is_null());

    // Edited: a receipt of 5 made 105, and the stock raised by 100 to match.
    let s = ledger();
    sqlite3(
        &s,
        "DROP TRIGGER inventory_transactions_no_update;
                 UPDATE inventory_transactions SET quantity = quantity + 100 WHERE id = 7;
                 UPDATE inventory_current SET current_quantity = current_quantity + 100
                  WHERE sku = (SELECT sku FROM inventory_transactions WHERE id = 7);",
    );
    let v = broken_at(&s, 7);
    assert!(
        v["chain"]["why"].as_str().unwrap().contains("changed"),
        "{v}"
    );

    // The actor changed: the audit trail would name someone else; the chain covers it.
    let s = ledger();
    sqlite3(
        &s,
        "DROP TRIGGER inventory_transactions_no_update;
                 UPDATE inventory_transactions SET actor = 'someone-else' WHERE id = 8;",
    );
    broken_at(&s, 8);

    // Removed: ledger id 5 deleted and its stock taken back; the break is at the row after it.
    let s = ledger();
    sqlite3(
        &s,
        "DROP TRIGGER inventory_transactions_no_delete;
                 UPDATE inventory_current SET current_quantity = current_quantity -
                        (SELECT quantity FROM inventory_transactions WHERE id = 5)
                  WHERE sku = (SELECT sku FROM inventory_transactions WHERE id = 5);
                 DELETE FROM inventory_transactions WHERE id = 5;",
    );
    let v = broken_at(&s, 6);
    assert_eq!(v["chain"]["after"], 4, "{v}");

    // Added: a receipt typed in by hand, with the stock to match.
    let s = ledger();
    sqlite3(&s, "INSERT INTO inventory_transactions (date, sku, quantity, transaction_type, created_at)
                   VALUES ('2026-01-01', 'A-1', 9, 'Receive', '2026-01-01T00:00:00.000Z');
                 UPDATE inventory_current SET current_quantity = current_quantity + 9 WHERE sku = 'A-1';");
    let v = broken_at(&s, 13);
    assert!(
        v["chain"]["why"].as_str().unwrap().contains("no link"),
        "{v}"
    );
    // ora goes on linking after the row it did not write; verify still names the first break.
    s.ok(&["stock", "receive", "B-2", "1"]);
    broken_at(&s, 13);

    // Recover salvages the edited file and links the chain again from the first broken row.
    let s = ledger();
    sqlite3(
        &s,
        "DROP TRIGGER inventory_transactions_no_update;
                 UPDATE inventory_transactions SET notes = 'not what happened' WHERE id = 3;",
    );
    broken_at(&s, 3);
    let out = s.path("recovered.db");
    let r = s.ok(&["recover", "--out", out.to_str().unwrap(), "--no-compare"]);
    assert!(r.contains("linked again from ledger id 3"), "{r}");
    let checked = Sandbox {
        dir: tempfile::tempdir().unwrap(),
        db: out,
        now: None,
    }
    .json(&["verify"]);
    assert_eq!(checked["ok"], true, "{checked}");
}

/// `ora verify --nightly` (at `at` on ora's clock, when given): its exit code and report.
fn nightly(s: &Sandbox, at: Option<&str>) -> (Option<i32>, serde_json::Value) {
    s.json_at(&["verify", "--nightly"], at)
}

// The nightly pass: the first run (no full pass yet) is the full one; after it each night
// reads only the rows written since the point the last passing run proved, and still catches a
// row typed in by hand after that point, a stock set by hand, and a dropped guard trigger
// (which makes it the full pass). An edit further back, with the guard put back, is the weekly
// full pass's to find, and a week later the nightly run makes that pass by itself.
#[test]
fn the_nightly_pass_reads_what_changed_and_makes_the_full_pass_weekly() {
    if !have("sqlite3") {
        skip(
            "the nightly verify pass",
            "no sqlite3 shell (scripts/test.sh installs it)",
        );
        return;
    }
    let s = ledger();
    let (code, v) = nightly(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(0), Some("full")), "{v}");
    assert_eq!(v["ledger_rows"], 12);
    assert_eq!(v["chain_to"]["id"], 12);
    for _ in 0..3 {
        s.ok(&["stock", "receive", "A-1", "1"]);
    }
    let (code, v) = nightly(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(0), Some("quick")), "{v}");
    assert_eq!(
        (v["chain_from"].as_i64(), v["ledger_rows"].as_i64()),
        (Some(12), Some(3))
    );
    assert_eq!(v["chain_to"]["id"], 15);
    // What the night proved is in ops_log for the next one.
    let text = s.ok(&["verify", "--nightly"]);
    assert!(text.contains("quick pass, ledger from id 16"), "{text}");

    // A receipt typed in by hand after the point.
    sqlite3(&s, "INSERT INTO inventory_transactions (date, sku, quantity, transaction_type, created_at)
                   VALUES ('2026-01-01', 'A-1', 9, 'Receive', '2026-01-01T00:00:00.000Z');
                 UPDATE inventory_current SET current_quantity = current_quantity + 9 WHERE sku = 'A-1';");
    let (code, v) = nightly(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(1), Some("quick")), "{v}");
    assert_eq!(v["chain"]["id"], 16, "{v}");

    // A stock set by hand.
    let s = ledger();
    nightly(&s, None);
    sqlite3(
        &s,
        "UPDATE inventory_current SET current_quantity = 999 WHERE sku = 'B-2'",
    );
    let (code, v) = nightly(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(1), Some("quick")), "{v}");
    assert_eq!(v["ledger"][0]["sku"], "B-2", "{v}");

    // A guard dropped to edit the ledger: the nightly run makes the full pass and finds it.
    let s = ledger();
    nightly(&s, None);
    sqlite3(
        &s,
        "DROP TRIGGER inventory_transactions_no_update;
         UPDATE inventory_transactions SET notes = 'not what happened' WHERE id = 3;",
    );
    let (code, v) = nightly(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(1), Some("full")), "{v}");
    assert_eq!(v["chain"]["id"], 3, "{v}");
    let text = String::from_utf8_lossy(&s.run(&["verify", "--nightly"]).stdout).to_string();
    assert!(
        text.contains("the full pass, because the trigger inventory_transactions_no_update"),
        "{text}"
    );

    // The same edit with the guard put back: rows before the point are the weekly pass's.
    let s = ledger();
    nightly(&s, None);
    sqlite3(
        &s,
        &behind_the_guard(
            &s.db,
            "UPDATE inventory_transactions SET notes = 'not what happened' WHERE id = 3",
        ),
    );
    let (code, v) = nightly(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(0), Some("quick")), "{v}");
    let week = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let (code, v) = nightly(&s, Some(&week));
    assert_eq!((code, v["pass"].as_str()), (Some(1), Some("full")), "{v}");
    assert_eq!(v["chain"]["id"], 3, "{v}");
    // The link at the point changed (the last row proved, edited the same way): found nightly.
    let s = ledger();
    nightly(&s, None);
    sqlite3(
        &s,
        &behind_the_guard(
            &s.db,
            "UPDATE inventory_transactions SET chain = x'00' WHERE id = 12",
        ),
    );
    let (code, v) = nightly(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(1), Some("quick")), "{v}");
    assert_eq!(v["chain"]["id"], 12, "{v}");
}

// A restored database's rows were proved as a restore proves them (a backup by its checksum,
// a replica's base likewise), so its next nightly verify reads every row, and the nights after
// it only what changed.
#[test]
fn the_first_nightly_verify_after_a_restore_is_the_full_pass() {
    let s = ledger();
    let (_, v) = nightly(&s, None);
    assert_eq!(v["pass"], "full");
    let bk = s.path("bk");
    std::fs::create_dir(&bk).unwrap();
    s.ok(&["backup", "--dir", bk.to_str().unwrap()]);
    let file = std::fs::read_dir(&bk)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".db.gz"))
        .unwrap();
    let (_, v) = nightly(&s, None);
    assert_eq!(v["pass"], "quick", "{v}");
    s.ok(&["restore", file.to_str().unwrap(), "--yes"]);
    let (code, v) = nightly(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(0), Some("full")), "{v}");
    let text = String::from_utf8_lossy(&s.run(&["verify", "--nightly"]).stdout).to_string();
    assert!(
        text.contains("quick pass"),
        "the full pass once is enough: {text}"
    );
    s.ok(&["restore", file.to_str().unwrap(), "--yes"]);
    let text = String::from_utf8_lossy(&s.run(&["verify", "--nightly"]).stdout).to_string();
    assert!(
        text.contains("the full pass, because the database was restored since the last full pass"),
        "{text}"
    );
}
