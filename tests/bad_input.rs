//! Bad input and faults: every one gets a clear one-line error, the right exit code, and
//! leaves the database exactly as it was.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::util::{clean_env, is_root, Sandbox, ORA};

fn with_product() -> Sandbox {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Widget", "--initial", "5"]);
    s
}

// Unknown skus and every kind of bad quantity are refused with exit 2; nothing changes.
#[test]
fn bad_movements_are_refused_and_change_nothing() {
    let s = with_product();
    let before = s.snapshot();
    let cases: &[(&[&str], &str)] = &[
        (
            &["stock", "receive", "NOPE-1", "3"],
            "unknown sku \"NOPE-1\"",
        ),
        (&["stock", "receive", "A-1", "0"], "from 1 to 1000000000"),
        (&["stock", "receive", "A-1", "-4"], "from 1 to"),
        (&["stock", "receive", "A-1", "1000000001"], "from 1 to"),
        (
            &["stock", "receive", "A-1", "99999999999999999999999"],
            "out of range",
        ),
        (&["stock", "receive", "A-1", "12abc"], "whole number"),
        (&["stock", "receive", "A-1", "1.5"], "whole number"),
        (&["stock", "receive", "A-1", ""], "whole number"),
        (&["stock", "adjust", "A-1", "0"], "from 1 to"),
        (
            &[
                "stock",
                "receive",
                "A-1'; DROP TABLE inventory_current;--",
                "1",
            ],
            "contains",
        ),
        (
            &["stock", "receive", "A-1", "1", "--date", "2026-13-01"],
            "YYYY-MM-DD",
        ),
        (
            &["stock", "receive", "A-1", "1", "--notes", "bell\u{7}"],
            "control characters",
        ),
        (
            &["stock", "receive", "A-1", "1", "--request-id", "has space"],
            "request_id",
        ),
        (&["product", "add", "B-2", " "], "product name is empty"),
        (
            &["product", "add", "B-2", "Widget", "--reorder-point", "-1"],
            "reorder point",
        ),
        (&["shipment", "record", "ORD-1", "--item", "A-1"], "SKU:QTY"),
        (&["kpi", "record", "yesterday"], "YYYY-MM-DD"),
        (
            &["workflow", "set", "w", "s", "--expect-version", "x"],
            "whole number",
        ),
        // Out-of-range options are refused, never clamped behind the user's back.
        (&["kpi", "list", "--days", "0"], "1..=3660"),
        (&["kpi", "list", "--days", "99999"], "1..=3660"),
        (&["backup", "--keep-days", "0"], "1..=3650"),
        (
            &["backup", "--keep-days", "4000"],
            "4000 is out of range (1..=3650)",
        ),
        (&["backup", "--keep-days=-1"], "not a whole number of days"),
        (
            &["backup", "--keep-days", "99999999999"],
            "not a whole number of days",
        ),
    ];
    for (args, needle) in cases {
        let err = s.fails(args, 2);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let huge_note = "n".repeat(5_000);
    let err = s.fails(&["stock", "receive", "A-1", "1", "--notes", &huge_note], 2);
    assert!(err.contains("limit is 1000"), "{err}");
    assert_eq!(
        s.snapshot(),
        before,
        "a refused command changed the database"
    );
}

// An overdrawn ship is a conflict (exit 1) and changes nothing.
#[test]
fn overdrawn_ship_is_refused() {
    let s = with_product();
    let before = s.snapshot();
    let err = s.fails(&["stock", "ship", "A-1", "6"], 1);
    assert!(err.contains("5 on hand, 6 asked"), "{err}");
    s.fails(&["stock", "adjust", "A-1", "-6"], 1);
    assert_eq!(s.snapshot(), before);
}

fn import(s: &Sandbox, name: &str, content: &[u8], extra: &[&str]) -> std::process::Output {
    let f = s.path(name);
    std::fs::write(&f, content).unwrap();
    let mut args = vec!["stock", "import", f.to_str().unwrap()];
    args.extend_from_slice(extra);
    s.run(&args)
}

// Malformed CSV files are refused whole, naming each bad line; nothing is applied.
#[test]
fn malformed_csv_is_refused_with_line_numbers() {
    let s = with_product();
    let before = s.snapshot();
    let big_field = format!(
        "sku,type,quantity,notes\nA-1,Receive,1,ok\nA-1,Receive,1,{}\n",
        "x".repeat(1 << 20)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "wrong-columns.csv",
            b"sku,kind,qty\nA-1,Receive,1\n".to_vec(),
            "unknown column \"kind\"",
        ),
        (
            "missing-column.csv",
            b"sku,quantity\nA-1,1\n".to_vec(),
            "no \"type\" column",
        ),
        ("empty.csv", b"".to_vec(), "empty"),
        (
            "header-only.csv",
            b"sku,type,quantity\n".to_vec(),
            "no rows",
        ),
        (
            "bad-utf8.csv",
            b"sku,type,quantity,notes\nA-1,Receive,1,ok\nA-1,Receive,1,caf\xe9\n".to_vec(),
            "line 3: not valid UTF-8",
        ),
        (
            "short-row.csv",
            b"sku,type,quantity\nA-1,Receive,1\nA-1,Receive\n".to_vec(),
            "line 3: expected 3 fields",
        ),
        (
            "bad-quote.csv",
            b"sku,type,quantity,notes\nA-1,Receive,1,\"ok\"\nA-1,Receive,1,\"never closed\n"
                .to_vec(),
            "line 3",
        ),
        (
            "bad-values.csv",
            b"sku,type,quantity\nA-1,Receive,0\nA-1,Teleport,1\nA 1,Receive,1\nA-1,Receive,1\n"
                .to_vec(),
            "line 3: unknown movement type",
        ),
        (
            "big-field.csv",
            big_field.into_bytes(),
            "line 3: a field is 1048576 bytes",
        ),
    ];
    for (name, content, needle) in &cases {
        let out = import(&s, name, content, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(needle), "{name}: expected {needle:?} in {err}");
        crate::util::assert_clean_error(&err);
        assert_eq!(s.snapshot(), before, "{name} changed the database");
    }
}

// Rows that parse but cannot be applied (unknown sku, overdraw) also refuse the whole file.
#[test]
fn csv_rows_that_cannot_apply_refuse_the_file_unless_skip_bad() {
    let s = with_product();
    let before = s.snapshot();
    let content =
        b"sku,type,quantity\nA-1,Receive,10\nGHOST-1,Receive,1\nA-1,Ship,100\nA-1,Ship,3\n";
    let out = import(&s, "moves.csv", content, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("2 of 4 rows cannot be applied; nothing was imported"),
        "{err}"
    );
    assert!(err.contains("line 3: unknown sku \"GHOST-1\""), "{err}");
    assert!(
        err.contains("line 4: not enough stock of A-1: 15 on hand, 100 asked"),
        "{err}"
    );
    assert_eq!(s.snapshot(), before);

    // --skip-bad applies the good rows and lists the bad ones (exit 1: something was skipped).
    let out = import(&s, "moves.csv", content, &["--skip-bad", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["applied"], 2);
    assert_eq!(report["skipped_count"], 2);
    assert!(report["skipped"][0]
        .as_str()
        .unwrap()
        .starts_with("line 3:"));
    let v = s.json(&["stock", "show", "A-1"]);
    assert_eq!(v["product"]["current_quantity"], 12);
    s.ok(&["verify"]);
}

// Files ora must not touch: not SQLite, another application's database, a newer schema.
#[test]
fn foreign_files_are_refused_untouched() {
    let s = Sandbox::empty();
    let not_db = s.path("notes.db");
    std::fs::write(
        &not_db,
        "this is a shopping list, not a database\n".repeat(10),
    )
    .unwrap();
    let other = s.path("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let newer = s.path("newer.db");
    {
        let s2 = Sandbox::new();
        std::fs::copy(&s2.db, &newer).unwrap();
    }
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    for (file, needle) in [
        (&not_db, "not a SQLite database"),
        (&other, "did not create"),
        (&newer, "newer ora"),
    ] {
        let bytes = std::fs::read(file).unwrap();
        for args in [
            &["init"][..],
            &["stock", "list"][..],
            &["stock", "receive", "A-1", "1"][..],
            &["verify"][..],
        ] {
            let mut c = Command::new(ORA);
            clean_env(&mut c);
            let out = c.arg("--db").arg(file).args(args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{file:?} {args:?}: {err}");
            assert!(err.contains(needle), "{file:?} {args:?}: {err}");
            crate::util::assert_clean_error(&err);
        }
        assert_eq!(std::fs::read(file).unwrap(), bytes, "{file:?} was modified");
    }
}

// A missing database or directory is a clear error, not a silently created empty file.
#[test]
fn missing_database_or_directory_is_a_clear_error() {
    let s = Sandbox::empty();
    let err = s.fails(&["stock", "list"], 2);
    assert!(err.contains("no database at"), "{err}");
    assert!(!s.db.exists(), "a read command created a database");
    let mut c = Command::new(ORA);
    clean_env(&mut c);
    let out = c
        .args(["--db", "/nonexistent-dir/sub/ora.db", "init"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("directory /nonexistent-dir/sub of database")
    );
}

// A read-only directory (ora run as `nobody` on root's files): exit 3, a plain message,
// nothing changed.
#[test]
fn read_only_directory_is_reported_plainly() {
    if !is_root() || Command::new("runuser").arg("--help").output().is_err() {
        crate::util::skip(
            "read_only_directory_is_reported_plainly",
            "needs root and runuser",
        );
        return;
    }
    let s = with_product();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = s.snapshot();
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", ORA, "--db"])
        .arg(&s.db)
        .args(["stock", "receive", "A-1", "3"])
        .env_remove("DATABASE_PATH")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("read-only for this user"), "{err}");
    crate::util::assert_clean_error(&err);
    assert_eq!(s.snapshot(), before);
}

// A full disk: the write that does not fit fails with exit 3 and says so; everything
// committed before is intact and the file still verifies.
#[test]
fn full_disk_fails_plainly_and_keeps_what_was_committed() {
    if !is_root() {
        crate::util::skip(
            "full_disk_fails_plainly_and_keeps_what_was_committed",
            "needs root for a tmpfs",
        );
        return;
    }
    let s = Sandbox::empty();
    let mnt = s.path("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|st| st.success())
        .unwrap_or(false);
    if !mounted {
        crate::util::skip(
            "full_disk_fails_plainly_and_keeps_what_was_committed",
            "cannot mount a tmpfs here",
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let db = mnt.join("ora.db");
    let run = |args: &[&str]| {
        let mut c = Command::new(ORA);
        clean_env(&mut c);
        c.arg("--db").arg(&db).args(args).output().unwrap()
    };
    assert!(run(&["init"]).status.success());
    assert!(run(&["product", "add", "A-1", "Widget", "--initial", "1"])
        .status
        .success());
    // Fill the disk with a large import of long-noted movements until a write fails.
    let mut csv = String::from("sku,type,quantity,notes\n");
    for i in 0..3_000 {
        csv.push_str(&format!("A-1,Receive,1,{}-{i}\n", "n".repeat(900)));
    }
    let f = s.path("big.csv");
    std::fs::write(&f, &csv).unwrap();
    let out = run(&["stock", "import", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("disk is full"), "{err}");
    crate::util::assert_clean_error(&err);
    let v = run(&["--json", "stock", "show", "A-1"]);
    let v: serde_json::Value =
        serde_json::from_slice(&v.stdout).expect("show works on a full disk");
    assert_eq!(v["product"]["current_quantity"], 1);
    assert!(
        run(&["verify"]).status.success(),
        "the file must still verify"
    );
}
