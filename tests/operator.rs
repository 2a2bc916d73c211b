//! A warehouse lead's morning at the command line and the API, as real processes: what a new
//! user trips over gets a plain answer (one `ora:` line, the right exit code, the fix), and
//! what can be written can be read back.

use std::process::Stdio;

use serde_json::json;

use crate::util::{call, free_port, query_i64, Sandbox, Server};

fn seeded() -> Sandbox {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Blue widget", "--initial", "10"]);
    s.ok(&["product", "add", "B-2", "Red gadget", "--initial", "3"]);
    s
}

// Before the first backup: list says so (exit 0), verify --all fails clearly (exit 1); neither
// shows an OS error.
#[test]
fn backups_before_the_first_backup_say_so() {
    let s = seeded();
    let out = s.ok(&["backups", "list"]);
    assert!(out.contains("no backups yet in"), "{out}");
    assert!(out.contains("ora backup"), "{out}");
    let err = s.fails(&["backups", "verify", "--all"], 1);
    assert!(
        err.starts_with("ora: backups verify: no backups yet in"),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
    assert_eq!(s.json(&["backups", "list"]), json!([]));
}

// Every error is one line starting with `ora: `, clap's parse errors included, with exit 2.
#[test]
fn errors_are_one_line_starting_with_ora() {
    let s = seeded();
    for args in [
        &["stock", "receive"][..],
        &["stok", "list"],
        &["stock", "receive", "A-1", "5", "--colour", "red"],
        &["stock", "history", "--limit", "0"],
        &["stock", "history", "--limit", "x"],
    ] {
        let err = s.fails(args, 2);
        assert!(err.starts_with("ora: "), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    // --help is still help, exit 0.
    let help = s.ok(&["stock", "receive", "--help"]);
    assert!(help.contains("Global options:"), "{help}");
    assert!(help.contains("./ora.db"), "--db shows its default: {help}");
}

// `stock history` refuses what the API refuses and names an unknown sku like `stock show`.
#[test]
fn history_limits_and_unknown_skus_are_refused_like_the_api() {
    let (s, srv) = {
        let s = seeded();
        let srv = Server::start(&s, &[]);
        (s, srv)
    };
    let err = s.fails(&["stock", "history", "--limit", "0"], 2);
    assert!(
        err.contains("limit must be from 1 to 10000, got 0"),
        "{err}"
    );
    let (st, v) = call(&srv.addr, "GET", "/api/transactions?limit=0", None, None);
    assert_eq!(st, 422);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("from 1 to 10000"),
        "{v}"
    );
    let err = s.fails(&["stock", "history", "NOPE"], 2);
    assert!(err.contains("unknown sku \"NOPE\""), "{err}");
    let show = s.fails(&["stock", "show", "NOPE"], 2);
    assert!(show.contains("unknown sku \"NOPE\""), "{show}");
}

// A workflow set without --details keeps the previous details; "" clears them.
#[test]
fn workflow_details_stay_until_changed() {
    let s = seeded();
    s.ok(&[
        "workflow",
        "set",
        "dock-2",
        "failed",
        "--details",
        "printer jammed",
    ]);
    s.ok(&["workflow", "set", "dock-2", "running"]);
    let v = s.json(&["workflow", "list"]);
    assert_eq!(v[0]["status"], "running");
    assert_eq!(v[0]["details"], "printer jammed", "{v}");
    s.ok(&["workflow", "set", "dock-2", "done", "--details", ""]);
    let v = s.json(&["workflow", "list"]);
    assert_eq!(v[0]["details"], "", "{v}");
}

// One pass names every bad line of an import (malformed, unknown sku, not enough stock, a
// reused request_id), and nothing is imported.
#[test]
fn an_import_names_every_bad_line_at_once() {
    let s = seeded();
    let csv = s.path("morning.csv");
    std::fs::write(
        &csv,
        "sku,type,quantity,request_id\n\
         A-1,receive,5,r1\n\
         ZZ-9,ship,3,\n\
         A-1,ship,500,\n\
         A-1,bogus,1,\n\
         A-1,receive,abc,\n\
         B-2,Ship,1,r1\n\
         B-2,adjust up,2,\n",
    )
    .unwrap();
    let before = query_i64(&s.db, "SELECT count(*) FROM inventory_transactions");
    let err = s.fails(&["stock", "import", csv.to_str().unwrap()], 2);
    assert!(
        err.contains("5 of 7 rows cannot be imported; nothing was imported"),
        "{err}"
    );
    for needle in [
        "line 3: unknown sku \"ZZ-9\"",
        "line 4: not enough stock of A-1",
        "line 5: unknown movement type \"bogus\"",
        "line 6: quantity must be a whole number",
        "line 7: request_id \"r1\" is also on line 2",
    ] {
        assert!(err.contains(needle), "{needle:?} missing: {err}");
    }
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.trim_start().starts_with("line "))
        .collect();
    assert_eq!(lines.len(), 5, "{err}");
    assert!(
        lines.windows(2).all(|w| w[0] < w[1]),
        "in line order: {err}"
    );
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        before,
        "nothing imported"
    );
    // Without the malformed rows, the same kind of fault has the same exit code.
    std::fs::write(&csv, "sku,type,quantity\nZZ-9,ship,3\n").unwrap();
    let err = s.fails(&["stock", "import", csv.to_str().unwrap()], 2);
    assert!(err.contains("1 of 1 row cannot be applied"), "{err}");
    assert!(err.starts_with("ora: stock import: "), "{err}");
}

// More bad lines than a report lists: the count is the true count, the list is in line
// order and says how many it leaves out, in a file whose bad lines are found by both passes
// (the reader's and the writer's).
#[test]
fn an_import_with_hundreds_of_bad_lines_counts_them_all() {
    let s = seeded();
    let csv = s.path("big.csv");
    let mut text = String::from("sku,type,quantity\n");
    for i in 0..300 {
        if i % 100 == 0 {
            text.push_str("A-1,receive,abc\n");
        } else {
            text.push_str(&format!("NOPE-{i},receive,1\n"));
        }
    }
    std::fs::write(&csv, text).unwrap();
    let err = s.fails(&["stock", "import", csv.to_str().unwrap()], 2);
    assert!(
        err.contains("300 of 300 rows cannot be imported; nothing was imported"),
        "{}",
        &err[..err.len().min(400)]
    );
    let listed: Vec<u64> = err
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("line "))
        .filter_map(|l| l.split(':').next()?.parse().ok())
        .collect();
    assert_eq!(listed.len(), 200);
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "in line order");
    assert_eq!(listed[0], 2, "the reader's first bad line leads");
    assert!(
        err.trim_end().ends_with("... and 100 more"),
        "{}",
        &err[err.len() - 200..]
    );
}

// The API takes the movement types the CSV import takes, and says what is wrong in words; a
// date more than a day ahead is refused unless asked for, on both paths.
#[test]
fn the_api_takes_every_spelling_and_refuses_in_words() {
    let s = seeded();
    let srv = Server::start(&s, &[]);
    for (typed, stored) in [
        ("ship", "Ship"),
        ("RECEIVE", "Receive"),
        ("Adjust Up", "Adjust Up"),
        ("adjust_down", "Adjust Down"),
    ] {
        let (st, v) = call(
            &srv.addr,
            "POST",
            "/api/transactions",
            None,
            Some(&json!({"sku": "A-1", "type": typed, "quantity": 1})),
        );
        assert_eq!(st, 201, "{typed}: {v}");
        assert_eq!(v["movement"]["type"], stored);
    }
    for (body, words) in [
        (
            json!({"sku": "A-1", "type": "ship", "quantity": "5"}),
            "quantity must be a whole number, got the text \"5\"",
        ),
        (
            json!({"sku": "A-1", "type": "steal", "quantity": 1}),
            "unknown movement type \"steal\"",
        ),
        (json!({"sku": "A-1", "type": "ship"}), "quantity is missing"),
        (
            json!({"sku": "A-1", "type": "ship", "quantity": 1, "colour": "red"}),
            "colour is not a field here",
        ),
        (
            json!({"sku": "A-1", "type": "ship", "quantity": 1, "date": "2099-01-01"}),
            "more than a day in the future",
        ),
    ] {
        let (st, v) = call(&srv.addr, "POST", "/api/transactions", None, Some(&body));
        assert_eq!(st, 422, "{body}: {v}");
        let m = v["error"].as_str().unwrap_or_default();
        assert!(m.contains(words), "{body}: {m}");
        assert!(
            !m.contains("expected") && !m.contains('`'),
            "serde's words: {m}"
        );
    }
    let (st, _) = call(
        &srv.addr,
        "POST",
        "/api/transactions",
        None,
        Some(
            &json!({"sku": "A-1", "type": "receive", "quantity": 1, "date": "2099-01-01", "allow_future": true}),
        ),
    );
    assert_eq!(st, 201);
    let err = s.fails(&["stock", "receive", "A-1", "1", "--date", "2099-01-02"], 2);
    assert!(err.contains("more than a day in the future"), "{err}");
    s.ok(&[
        "stock",
        "receive",
        "A-1",
        "1",
        "--date",
        "2099-01-02",
        "--allow-future",
    ]);
    // Tomorrow is fine (a late shift dating tomorrow's first receipt).
    let tomorrow = (chrono::Local::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    s.ok(&["stock", "receive", "A-1", "1", "--date", &tomorrow]);
    let (st, _, _) = crate::util::http(
        &srv.addr,
        "POST",
        "/api/transactions",
        &[("Content-Type", "application/json")],
        b"{x}",
    )
    .unwrap();
    assert_eq!(st, 400);
}

// --bind takes a host name; a port already in use is reported before the database is made.
#[test]
fn serve_binds_names_and_reports_a_busy_port_first() {
    let s = seeded();
    let port = free_port();
    let child = s
        .cmd(&["serve", "--bind", &format!("localhost:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut srv = Server {
        child,
        addr: format!("127.0.0.1:{port}"),
    };
    srv.wait_ready();
    drop(srv);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let empty = Sandbox::empty();
    let fresh = empty.db.clone();
    let out = empty.cmd(&["serve", "--bind", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(
        !fresh.exists(),
        "the database was created before the port was checked"
    );
    let err = s.fails(&["serve", "--bind", "no-such-host.invalid:8080"], 2);
    assert!(err.contains("cannot resolve"), "{err}");
}

// A ledger that holds movements older than the backup limit and no backup at all is a
// failure: the morning check catches a box that was never backed up.
#[test]
fn never_backed_up_with_old_data_fails_health() {
    let s = seeded();
    let v = s.json(&["health"]);
    assert_eq!(
        v["status"], "warn",
        "new data without a backup is a warning: {v}"
    );
    // Age the ledger: the append-only trigger is lifted for the test and put back as it was.
    let trigger: String = rusqlite::Connection::open(&s.db)
        .unwrap()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'inventory_transactions_no_update'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute_batch(&format!(
        "DROP TRIGGER inventory_transactions_no_update;
         UPDATE inventory_transactions SET created_at = '2020-01-01T00:00:00.000Z';
         {trigger};"
    ))
    .unwrap();
    drop(conn);
    let out = s.run(&["health"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no backup has ever been taken"), "{text}");
    s.ok(&["backup"]);
    let v = s.json(&["health"]);
    assert_ne!(v["status"], "fail", "{v}");
}

// `ora --json health` and GET /health have one shape.
#[test]
fn health_has_one_json_shape() {
    let s = seeded();
    let cli = s.json(&["health"]);
    let srv = Server::start(&s, &[]);
    let (_, web) = call(&srv.addr, "GET", "/health", None, None);
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&cli), keys(&web));
    assert!(cli["writer"].is_null() && web["writer"].is_object());
    assert_eq!(cli["status"], web["status"]);
}

// verify gives advice per kind of violation: a stock changed behind ora's back is set back to
// its ledger with `stock reconcile`; negative stock is counted and adjusted; a damaged ledger
// says how far it could be read and points at restore or recover.
#[test]
fn verify_advises_per_kind_and_reconcile_fixes_a_mismatch() {
    let s = seeded();
    let cfg = s.path("negative.toml");
    std::fs::write(&cfg, "[database]\nallow_negative_stock = true\n").unwrap();
    s.ok(&[
        "--config",
        cfg.to_str().unwrap(),
        "stock",
        "ship",
        "B-2",
        "5",
    ]);
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute(
        "UPDATE inventory_current SET current_quantity = 99 WHERE sku = 'A-1'",
        [],
    )
    .unwrap();
    drop(conn);
    let out = s.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("ledger: sku A-1 holds 99 but its movements add up to 10"),
        "{stdout}"
    );
    assert!(
        stdout.contains("negative stock: sku B-2 holds -2"),
        "{stdout}"
    );
    assert!(stdout.contains("2 violations"), "{stdout}");
    assert!(stderr.contains("ora stock reconcile A-1"), "{stderr}");
    assert!(stderr.contains("1 sku is below zero: count it and record the difference with `ora stock adjust SKU +N`"), "{stderr}");
    assert!(
        !stderr.contains("ora recover"),
        "no damage, no salvage advice: {stderr}"
    );
    let out = s.ok(&["stock", "reconcile", "A-1"]);
    assert!(
        out.contains("A-1: stock was 99, its movements add up to 10: set to 10"),
        "{out}"
    );
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT current_quantity FROM inventory_current WHERE sku = 'A-1'"
        ),
        10
    );
    assert!(s
        .ok(&["stock", "reconcile", "--all"])
        .contains("nothing changed"));
    s.fails(&["stock", "reconcile", "NOPE"], 2);
    s.ok(&["stock", "adjust", "B-2", "+2"]);
    let out = s.ok(&["verify"]);
    assert!(out.contains("all invariants hold"), "{out}");
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT count(*) FROM ops_log WHERE kind = 'reconcile'"
        ),
        2
    );
}

#[test]
fn verify_on_a_damaged_ledger_says_what_it_could_not_read() {
    let s = Sandbox::empty();
    ora::sample::generate(&s.db, 20_000, 100, 3).unwrap();
    // Three pages of the ledger itself, wherever the layout put them.
    let leaves: Vec<usize> = {
        let c = rusqlite::Connection::open(&s.db).unwrap();
        let mut st = c
            .prepare("SELECT pageno - 1 FROM dbstat WHERE name = 'inventory_transactions' AND pagetype = 'leaf' ORDER BY pageno")
            .unwrap();
        let rows = st.query_map([], |r| r.get::<_, i64>(0)).unwrap();
        rows.map(|r| r.unwrap() as usize).collect()
    };
    assert!(leaves.len() > 10);
    let mut bytes = std::fs::read(&s.db).unwrap();
    let page = 4096;
    for p in [leaves[3], leaves[4], leaves[leaves.len() / 2]] {
        for b in &mut bytes[p * page + 8..(p + 1) * page] {
            *b = 0xA5;
        }
    }
    std::fs::write(&s.db, &bytes).unwrap();
    let out = s.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("20000 ledger rows read"), "{stdout}");
    assert!(
        stderr.contains("the file is damaged: restore the last good backup"),
        "{stderr}"
    );
}

// The nightly pass checks only the rows written since the last pass, but every page of the
// file: a damaged page of an index no row check reads is found (quick_check runs beside the
// row checks, on the same state of the file).
#[test]
fn the_nightly_verify_finds_a_damaged_page_no_row_check_reads() {
    let s = Sandbox::empty();
    ora::sample::generate(&s.db, 20_000, 100, 3).unwrap();
    s.ok(&["verify"]);
    let out = s.run(&["verify", "--nightly"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("quick pass"), "the nightly pass ran: {text}");
    let leaf: i64 = {
        let c = rusqlite::Connection::open(&s.db).unwrap();
        c.query_row(
            "SELECT pageno - 1 FROM dbstat WHERE name = 'inventory_transactions_date'
                AND pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET 2",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&s.db).unwrap();
        f.write_all_at(&[0xA5; 4096 - 8], leaf as u64 * 4096 + 8)
            .unwrap();
    }
    let out = s.run(&["verify", "--nightly"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}{stderr}");
    assert!(
        text.contains("quick pass"),
        "still the nightly pass: {text}"
    );
    assert!(
        stderr.contains("the file is damaged: restore the last good backup"),
        "{stderr}"
    );
}

// What can be written can be read: products, shipments (with items and lots) and KPIs over the
// API, and `shipment list|show` and `stock history` with the lot at the command line.
#[test]
fn what_can_be_written_can_be_read() {
    let s = seeded();
    s.ok(&[
        "shipment",
        "record",
        "SO-1",
        "--item",
        "A-1:2:LOT-7",
        "--item",
        "B-2:1",
        "--date",
        "2026-11-30",
    ]);
    s.ok(&["shipment", "record", "SO-2", "--item", "A-1:1"]);
    s.ok(&[
        "kpi",
        "record",
        "2026-11-30",
        "--orders-today",
        "12",
        "--status",
        "green",
    ]);
    let srv = Server::start(&s, &[]);
    let a = &srv.addr;
    let (st, v) = call(a, "GET", "/api/products", None, None);
    assert_eq!(st, 200);
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let (st, v) = call(a, "GET", "/api/shipments", None, None);
    assert_eq!(st, 200);
    assert_eq!(v[0]["order_number"], "SO-2", "newest first: {v}");
    assert_eq!(v[1]["total_units"], 3);
    let (_, v) = call(a, "GET", "/api/shipments?since=2026-12-01", None, None);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|o| o["order_number"] != "SO-1"),
        "{v}"
    );
    let (_, v) = call(a, "GET", "/api/shipments?order=SO-1", None, None);
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (st, v) = call(a, "GET", "/api/shipments/SO-1", None, None);
    assert_eq!(st, 200);
    assert_eq!(v["items"][0]["lot"], "LOT-7", "{v}");
    assert!(v["items"][1].get("lot").is_none(), "{v}");
    assert!(v["items"][0]["ledger_id"].as_i64().unwrap() > 0);
    let (st, _) = call(a, "GET", "/api/shipments/NOPE", None, None);
    assert_eq!(st, 404);
    let (st, _) = call(a, "GET", "/api/shipments?limit=0", None, None);
    assert_eq!(st, 422);
    let (st, v) = call(a, "GET", "/api/kpis?days=5", None, None);
    assert_eq!(st, 200);
    assert_eq!(v[0]["orders_today"], 12, "{v}");
    let (st, v) = call(a, "GET", "/api/kpis/2026-11-30", None, None);
    assert_eq!((st, v["system_status"].as_str()), (200, Some("green")));
    let (st, _) = call(a, "GET", "/api/kpis/2026-11-29", None, None);
    assert_eq!(st, 404);
    let (st, _) = call(a, "GET", "/api/kpis?days=0", None, None);
    assert_eq!(st, 422);
    let (st, v) = call(a, "GET", "/api/transactions?sku=A-1", None, None);
    assert_eq!(st, 200);
    let lots: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["lot"].as_str())
        .collect();
    assert_eq!(lots, ["LOT-7"], "{v}");
    drop(srv);

    let list = s.ok(&["shipment", "list"]);
    assert!(list.contains("SO-1") && list.contains("SO-2"), "{list}");
    let show = s.ok(&["shipment", "show", "SO-1"]);
    assert!(
        show.contains("order SO-1 shipped 2026-11-30: 2 items, 3 units"),
        "{show}"
    );
    assert!(show.contains("LOT-7"), "{show}");
    let err = s.fails(&["shipment", "show", "SO-9"], 2);
    assert!(err.contains("no order \"SO-9\" was recorded"), "{err}");
    let history = s.ok(&["stock", "history", "A-1"]);
    assert!(history.contains("LOT-7"), "{history}");
    let shown = s.ok(&["stock", "show", "A-1"]);
    assert!(shown.contains("LOT-7"), "{shown}");
}

// metrics lists what an operator recognises: no full-text index internals, kB below 1 MB.
#[test]
fn metrics_hides_index_internals_and_shows_small_sizes_in_kb() {
    let s = seeded();
    let out = s.ok(&["metrics"]);
    assert!(out.contains("inventory_transactions"), "{out}");
    assert!(
        !out.contains("product_search_data") && !out.contains("product_search_idx"),
        "{out}"
    );
    assert!(out.contains(" kB"), "{out}");
    assert!(!out.contains("0.0 MB"), "{out}");
}

// A long check tells a waiting operator how long it has run and how long its last run took
// (on a terminal: `script` gives ora one), and draws nothing into a pipe or a log.
#[test]
fn a_long_check_says_how_long_it_took_last_time() {
    if !crate::util::have("script") {
        crate::util::skip(
            "a_long_check_says_how_long_it_took_last_time",
            "no script(1) (scripts/test.sh installs bsdutils)",
        );
        return;
    }
    let s = seeded();
    let piped = s.run(&["verify"]);
    assert!(piped.status.success());
    assert!(
        !String::from_utf8_lossy(&piped.stderr).contains("took"),
        "drawn into a pipe: {}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let line = format!(
        "{} --db {} verify",
        env!("CARGO_BIN_EXE_ora"),
        s.db.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("verify 00:00:0") && shown.contains("(its last full pass took "),
        "{shown}"
    );
}
