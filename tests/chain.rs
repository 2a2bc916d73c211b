//! The ledger's hash chain against the sqlite3 shell: a row edited, removed or added behind
//! ora's back, with the stock made to match so the sums still agree, is found by `ora verify`,
//! which names the first broken row; `ora recover` links the chain again and says where.

use std::process::Command;

use crate::util::{have, skip, Sandbox};

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
