//! The operations guide's routine tasks, as real processes: stock as of a past day replayed
//! from the ledger, a bulk product import that names every bad line, and the low-stock list
//! ordered by how short each product is.

use serde_json::json;

use crate::util::{call, query_i64, Sandbox, Server};

// The stock at the end of a past day is the sum of the movements dated on or before it, for
// every product (0 for one without movements yet) or one sku, at the CLI and over the API.
#[test]
fn stock_as_of_a_day_is_replayed_from_the_ledger() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Lamp"]);
    s.ok(&["product", "add", "B-2", "Desk"]);
    s.ok(&["stock", "receive", "A-1", "10", "--date", "2026-11-01"]);
    s.ok(&["stock", "ship", "A-1", "3", "--date", "2026-11-02"]);
    s.ok(&["stock", "receive", "A-1", "5", "--date", "2026-11-03"]);
    s.ok(&["stock", "receive", "B-2", "7", "--date", "2026-11-03"]);
    s.ok(&["stock", "adjust", "A-1", "-1", "--date", "2026-11-04"]);
    let day = |d: &str| {
        let v = s.json(&["stock", "as-of", d]);
        assert_eq!(v["as_of"], d);
        v["stock"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["sku"].as_str().unwrap().to_string(),
                    r["quantity"].as_i64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(day("2026-10-31"), [("A-1".into(), 0), ("B-2".into(), 0)]);
    assert_eq!(day("2026-11-01"), [("A-1".into(), 10), ("B-2".into(), 0)]);
    assert_eq!(day("2026-11-02"), [("A-1".into(), 7), ("B-2".into(), 0)]);
    assert_eq!(day("2026-11-03"), [("A-1".into(), 12), ("B-2".into(), 7)]);
    // Today equals the stored stock.
    let today = day(&ora::model::today());
    let stored = query_i64(
        &s.db,
        "SELECT current_quantity FROM inventory_current WHERE sku = 'A-1'",
    );
    assert_eq!(today[0].1, stored);
    let one = s.json(&["stock", "as-of", "2026-11-02", "--sku", "A-1"]);
    assert_eq!(
        one["stock"],
        json!([{"sku": "A-1", "product_name": "Lamp", "quantity": 7, "movements": 2}])
    );
    s.fails(&["stock", "as-of", "2026-13-01"], 2);
    s.fails(&["stock", "as-of", "2026-11-01", "--sku", "NOPE"], 2);
    let srv = Server::start(&s, &[]);
    let (st, v) = call(
        &srv.addr,
        "GET",
        "/api/inventory?as_of=2026-11-03",
        None,
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(v["stock"][0]["quantity"], 12, "{v}");
    let (st, v) = call(
        &srv.addr,
        "GET",
        "/api/inventory?as_of=2026-11-02&sku=A-1",
        None,
        None,
    );
    assert_eq!(
        (st, v["stock"][0]["quantity"].as_i64()),
        (200, Some(7)),
        "{v}"
    );
    let (st, _) = call(
        &srv.addr,
        "GET",
        "/api/inventory?as_of=yesterday",
        None,
        None,
    );
    assert_eq!(st, 422);
    let (st, _) = call(
        &srv.addr,
        "GET",
        "/api/inventory?as_of=2026-11-02&sku=NOPE",
        None,
        None,
    );
    assert_eq!(st, 404);
}

// A product file is imported all or nothing, every bad line named in one report; a good file
// adds every product with its opening stock through the ledger.
#[test]
fn product_import_is_all_or_nothing_and_names_every_bad_line() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Lamp"]);
    let csv = s.path("products.csv");
    std::fs::write(
        &csv,
        "sku,name,reorder_point,initial\n\
         P-1,Chair,5,10\n\
         P-2,Desk,,\n\
         P-1,Chair again,1,1\n\
         A-1,Lamp again,1,1\n\
         P 5,Bad sku,1,1\n\
         P-6,Stool,x,1\n",
    )
    .unwrap();
    let err = s.fails(&["product", "import", csv.to_str().unwrap()], 2);
    assert!(
        err.contains("4 of 6 rows cannot be added; nothing was imported"),
        "{err}"
    );
    for needle in [
        "line 4: sku \"P-1\" is also on line 2",
        "line 5: product A-1 already exists",
        "line 6: sku \"P 5\"",
        "line 7: reorder_point must be a whole number",
    ] {
        assert!(err.contains(needle), "{needle:?} missing: {err}");
    }
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_current"),
        1
    );
    let mut good = String::from("sku,name,reorder_point,initial\n");
    for i in 0..1500 {
        good.push_str(&format!("N-{i},\"Product {i}, boxed\",5,{}\n", i % 7));
    }
    std::fs::write(&csv, good).unwrap();
    let v = s.json(&["product", "import", csv.to_str().unwrap()]);
    assert_eq!(v["added"], 1500);
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_current"),
        1501
    );
    let with_stock = (0..1500).filter(|i| i % 7 > 0).count() as i64;
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT count(*) FROM inventory_transactions WHERE notes = 'opening stock'"
        ),
        with_stock
    );
    // A bulk import refreshed the planner's statistics.
    assert!(
        query_i64(
            &s.db,
            "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'inventory_current'"
        ) > 0
    );
    s.ok(&["verify"]);
    let err = s.fails(
        &["product", "import", s.path("missing.csv").to_str().unwrap()],
        2,
    );
    assert!(err.contains("cannot read the file"), "{err}");
}

// The low-stock list shows how short each product is and puts the largest shortage first.
#[test]
fn low_stock_is_ordered_by_shortage() {
    let s = Sandbox::new();
    s.ok(&[
        "product",
        "add",
        "A-1",
        "Lamp",
        "--reorder-point",
        "10",
        "--initial",
        "8",
    ]);
    s.ok(&[
        "product",
        "add",
        "B-2",
        "Desk",
        "--reorder-point",
        "50",
        "--initial",
        "20",
    ]);
    s.ok(&[
        "product",
        "add",
        "C-3",
        "Chair",
        "--reorder-point",
        "5",
        "--initial",
        "1",
    ]);
    s.ok(&["product", "add", "D-4", "Gone", "--reorder-point", "5"]);
    let v = s.json(&["stock", "list", "--low"]);
    let order: Vec<(&str, i64)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["sku"].as_str().unwrap(), p["shortage"].as_i64().unwrap()))
        .collect();
    assert_eq!(order, [("D-4", 5), ("B-2", 30), ("C-3", 4), ("A-1", 2)]);
    let text = s.ok(&["stock", "list", "--low"]);
    assert!(text.contains("SHORT BY"), "{text}");
}

// Before a schema upgrade of a database holding data, a verified backup is taken and named;
// a migration that fails leaves the file exactly as it was (every step is one transaction).
#[test]
fn an_upgrade_takes_a_backup_first_and_a_failed_one_changes_nothing() {
    let latest = ora::store::schema::MIGRATIONS.len();
    let s = Sandbox::empty();
    // Version 8: before the ledger's chain, so the row written here needs no link of its own
    // (migration 9 links it); every later step runs too.
    crate::util::older_database(&s.db, 8);
    let out = s.run(&["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("ora: ") && err.contains("a backup was taken first"),
        "{err}"
    );
    let backups: Vec<_> = std::fs::read_dir(s.path("backups"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        backups
            .iter()
            .any(|e| e.file_name().to_string_lossy().ends_with(".db.gz")),
        "no backup"
    );
    assert_eq!(query_i64(&s.db, "PRAGMA user_version"), latest as i64);
    s.ok(&["backups", "verify"]);
    s.ok(&["verify"]);

    // A migration that fails half way: a version-3 file whose step 5 meets an index of that
    // name already (step 4, which creates replica_state, runs first and must not stay).
    let s = Sandbox::empty();
    crate::util::older_database(&s.db, 3);
    rusqlite::Connection::open(&s.db)
        .unwrap()
        .execute_batch("CREATE INDEX shipped_items_transaction ON shipped_items(id)")
        .unwrap();
    let err = s.fails(&["init"], 3);
    assert!(err.contains("schema version"), "{err}");
    assert_eq!(query_i64(&s.db, "PRAGMA user_version"), 3, "half upgraded");
    // Step 4 (it creates replica_state) ran before the failing step 5 and was rolled back.
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT count(*) FROM sqlite_schema WHERE name = 'replica_state'"
        ),
        0,
        "an earlier step stayed applied"
    );
    assert_eq!(
        query_i64(&s.db, "SELECT current_quantity FROM inventory_current"),
        4
    );
}

// Health warns about a backup an hour old that was never drilled, and fails after a verify
// that found violations, until a verify passes again.
#[test]
fn health_follows_drills_and_verify() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Lamp", "--initial", "3"]);
    s.ok(&["maintain", "daily"]);
    s.ok(&["backup"]);
    // Name the backup two hours older (its name carries the time it was taken).
    let dir = s.path("backups");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stamp) = name.strip_prefix("ora-").and_then(|n| n.get(..16)) else {
            continue;
        };
        let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").unwrap()
            - chrono::Duration::hours(2);
        let older = name.replacen(stamp, &t.format("%Y%m%dT%H%M%SZ").to_string(), 1);
        std::fs::rename(e.path(), dir.join(older)).unwrap();
    }
    let v = s.json(&["health"]);
    assert_eq!(v["status"], "warn", "{v}");
    assert!(
        v["reasons"]
            .to_string()
            .contains("never been through a restore drill"),
        "{v}"
    );
    s.ok(&["backups", "verify"]);
    let v = s.json(&["health"]);
    assert_eq!(v["status"], "ok", "{v}");

    rusqlite::Connection::open(&s.db)
        .unwrap()
        .execute("UPDATE inventory_current SET current_quantity = 9", [])
        .unwrap();
    s.fails(&["verify"], 1);
    let out = s.run(&["health"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify: the last `ora verify`"));
    s.ok(&["stock", "reconcile", "--all"]);
    s.ok(&["verify"]);
    assert_eq!(s.json(&["health"])["status"], "ok");
}

// Old shipments move to an archive file that sqlite3 can read; the live database forgets them
// but knows where they went; the ledger keeps their Ship movements and verify still passes;
// an archived order is read back, and cannot be recorded again.
#[test]
fn old_shipments_move_to_an_archive_and_read_back() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Lamp", "--initial", "100"]);
    s.ok(&[
        "shipment",
        "record",
        "SO-1",
        "--item",
        "A-1:2:LOT-7",
        "--item",
        "A-1:1",
        "--date",
        "2026-10-01",
    ]);
    s.ok(&[
        "shipment",
        "record",
        "SO-2",
        "--item",
        "A-1:3",
        "--date",
        "2026-10-15",
    ]);
    s.ok(&[
        "shipment",
        "record",
        "SO-3",
        "--item",
        "A-1:4",
        "--date",
        "2026-11-20",
    ]);
    let ledger = query_i64(&s.db, "SELECT count(*) FROM inventory_transactions");
    let out = s.ok(&["shipment", "archive", "--before", "2026-11-01"]);
    assert!(
        out.contains("2 orders and 3 items shipped before 2026-11-01 moved to"),
        "{out}"
    );
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM shipped_orders"), 1);
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM shipped_items"), 1);
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        ledger
    );
    s.ok(&["verify"]);
    let list = s.json(&["shipment", "archive", "--list"]);
    let file = list[0]["file"].as_str().unwrap().to_string();
    assert_eq!(
        (list[0]["orders"].as_i64(), list[0]["items"].as_i64()),
        (Some(2), Some(3))
    );
    assert!(std::path::Path::new(&format!("{file}.sha256")).exists());
    // Readable without ora: gunzip and sqlite3.
    let plain = s.path("archive.db");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc '{file}' > '{}'", plain.display()))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        query_i64(
            &plain,
            "SELECT count(*) FROM shipped_items WHERE sku_lot = 'LOT-7'"
        ),
        1
    );
    // Read back through ora; the live database points at the file.
    let err = s.fails(&["shipment", "show", "SO-1"], 2);
    assert!(
        err.contains("was archived to") && err.contains("--archive"),
        "{err}"
    );
    let v = s.json(&["shipment", "show", "SO-1", "--archive", &file]);
    assert_eq!(v["items"][0]["lot"], "LOT-7", "{v}");
    s.fails(&["shipment", "show", "SO-3", "--archive", &file], 2);
    let err = s.fails(&["shipment", "record", "SO-1", "--item", "A-1:1"], 1);
    assert!(err.contains("already shipped"), "{err}");
    // Nothing left to archive; a damaged archive is refused by its checksum.
    let out = s.ok(&["shipment", "archive", "--before", "2026-11-01"]);
    assert!(out.contains("nothing to archive"), "{out}");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let err = s.fails(&["shipment", "show", "SO-1", "--archive", &file], 1);
    assert!(err.contains("does not match its checksum"), "{err}");
    s.fails(&["shipment", "archive", "--before", "2026-11-31"], 2);
}

// A full disk while writing the archive leaves the live database as it was.
#[test]
fn a_full_disk_during_an_archive_changes_nothing() {
    if !crate::util::is_root() {
        crate::util::skip("archive on a full disk", "needs root for a tmpfs");
        return;
    }
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Lamp", "--initial", "100000"]);
    for i in 0..300 {
        let order = format!("SO-{i}");
        s.ok(&[
            "shipment",
            "record",
            &order,
            "--item",
            "A-1:1",
            "--date",
            "2026-10-01",
        ]);
    }
    let tiny = s.path("tiny");
    let _disk = crate::util::Tmpfs::mount(&tiny, "16k");
    let before = crate::util::snapshot(&s.db);
    let out = s.run(&[
        "shipment",
        "archive",
        "--before",
        "2026-11-01",
        "--dir",
        tiny.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        crate::util::snapshot(&s.db),
        before,
        "the live database changed"
    );
    let left: Vec<_> = std::fs::read_dir(&tiny)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

// The monthly review takes the table sizes the weekly maintenance measured (it reads every
// page anyway; measuring again would read the whole file for the report): said with their
// date, measured again when the record is older than a week or cannot be read.
#[test]
fn the_monthly_review_takes_the_sizes_the_weekly_maintenance_measured() {
    let today = "2027-03-15T12:00:00Z";
    let s = Sandbox::at(today);
    s.ok(&["product", "add", "A-1", "Lamp", "--initial", "50"]);
    let v = s.json(&["report", "monthly"]);
    assert!(
        v["largest_as_of"].is_null(),
        "no weekly run yet: measured now"
    );
    assert!(!v["largest"].as_array().unwrap().is_empty(), "{v}");
    s.ok(&["maintain", "weekly"]);
    // The record is what the report shows: mark it so that a fresh measurement cannot match.
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    let marked = r#"[{"name":"from-the-weekly-run","kind":"table","bytes":4096}]"#;
    let set = |list: &str| {
        conn.execute(
            "UPDATE ops_log SET details = json_set(details, '$.largest', json(?1))
              WHERE kind = 'maintain_weekly'",
            [list],
        )
        .unwrap()
    };
    assert_eq!(set(marked), 1);
    let v = s.json(&["report", "monthly"]);
    assert_eq!(v["largest"][0]["name"], "from-the-weekly-run", "{v}");
    assert!(
        v["largest_as_of"]
            .as_str()
            .unwrap()
            .starts_with("2027-03-15"),
        "{v}"
    );
    let text = s.ok(&["report", "monthly"]);
    assert!(
        text.contains("as the weekly maintenance of 2027-03-15"),
        "{text}"
    );
    // Nine days on, the record is too old.
    let (code, later) = s.json_at(&["report", "monthly"], Some("2027-03-24T12:00:00Z"));
    assert_eq!(code, Some(0));
    assert!(later["largest_as_of"].is_null(), "{later}");
    assert_ne!(later["largest"][0]["name"], "from-the-weekly-run");
    // A record that is a list of something else is measured again, not trusted.
    assert_eq!(set(r#"[{"name": 7}, "x"]"#), 1);
    let v = s.json(&["report", "monthly"]);
    assert!(v["largest_as_of"].is_null(), "{v}");
    assert!(
        v["largest"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "inventory_transactions"),
        "{v}"
    );
}

// The monthly review: sizes of tables and indexes, backups and drills, maintenance, integrity,
// movements per day and the busiest skus, for this month or a named one; `metrics` shows the
// sizes too; the page has a "This month" section.
#[test]
fn the_monthly_review_and_metrics_sizes() {
    // Mid-month on a pinned day, so that the month and its days are known whatever the date.
    let today = "2027-03-15T12:00:00Z";
    let local = chrono::DateTime::parse_from_rfc3339(today)
        .unwrap()
        .with_timezone(&chrono::Local);
    let s = Sandbox::at(today);
    s.ok(&["product", "add", "A-1", "Lamp", "--initial", "50"]);
    s.ok(&["product", "add", "B-2", "Desk", "--initial", "50"]);
    for _ in 0..3 {
        s.ok(&["stock", "ship", "A-1", "1"]);
    }
    s.ok(&["stock", "ship", "B-2", "1"]);
    s.ok(&["stock", "receive", "B-2", "4", "--date", "2026-10-15"]);
    s.ok(&["backup"]);
    s.ok(&["backups", "verify"]);
    s.ok(&["maintain", "daily"]);
    s.ok(&["backup"]);
    let v = s.json(&["report", "monthly"]);
    assert_eq!(v["month"], local.format("%Y-%m").to_string());
    assert_eq!(v["backups"]["ok"], 2, "{v}");
    assert_eq!(v["drills"]["ok"], 1);
    assert_eq!(v["daily_maintenance"]["ok"], 1);
    assert!(v["integrity_checks"]["ok"].as_i64().unwrap() >= 1, "{v}");
    assert_eq!(v["busiest_skus"][0]["sku"], "A-1", "{v}");
    assert_eq!(
        v["busiest_skus"][0]["movements"], 4,
        "opening stock and three ships: {v}"
    );
    let days = v["movements_per_day"].as_array().unwrap();
    assert_eq!(
        days.len() as u32,
        chrono::Datelike::day(&local.date_naive())
    );
    let names: Vec<&str> = v["largest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"inventory_transactions") && names.contains(&"inventory_transactions_sku"),
        "{names:?}"
    );
    let oct = s.json(&["report", "monthly", "--month", "2026-10"]);
    assert_eq!(oct["movements"], 1);
    assert_eq!(oct["backups"]["ok"], 0);
    assert_eq!(oct["movements_per_day"].as_array().unwrap().len(), 31);
    s.fails(&["report", "monthly", "--month", "2026-13"], 2);
    s.fails(&["report", "monthly", "--month", "last month"], 2);
    let text = s.ok(&["report", "monthly"]);
    assert!(
        text.contains("BUSIEST SKU") && text.contains("LARGEST"),
        "{text}"
    );
    let m = s.json(&["metrics"]);
    assert!(
        m["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "index"),
        "{m}"
    );
    assert!(m["index_count"].as_i64().unwrap() > 3);
    let srv = crate::util::Server::start(&s, &[]);
    let (_, _, page) = crate::util::http(&srv.addr, "GET", "/", &[], b"").unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains(r#"<section id="month"><h2>This month"#),
        "no This month section"
    );
    assert!(page.contains("ora report monthly"));
}

// Statements slower than `[database] slow_ms` are logged by their text (with a plan in the
// report), never with their parameters; slow_ms = 0 turns the log off.
#[test]
fn slow_statements_are_logged_with_their_plans() {
    let s = Sandbox::empty();
    ora::sample::generate(&s.db, 20_000, 100, 9).unwrap();
    let cfg = s.path("slow.toml");
    std::fs::write(&cfg, "[database]\nslow_ms = 1\n").unwrap();
    let c = cfg.to_str().unwrap();
    s.ok(&["--config", c, "backup"]);
    s.ok(&["--config", c, "verify"]);
    s.ok(&[
        "--config",
        c,
        "stock",
        "history",
        "SKU-00001",
        "--since",
        "2025-01-01",
    ]);
    let v = s.json(&["--config", c, "report", "slow"]);
    let list = v.as_array().unwrap();
    assert!(!list.is_empty(), "nothing logged");
    let ledger_scan = list
        .iter()
        .find(|x| {
            x["sql"]
                .as_str()
                .unwrap()
                .contains("FROM inventory_transactions")
        })
        .unwrap_or_else(|| panic!("the ledger scan is not in {v}"));
    assert!(ledger_scan["max_ms"].as_f64().unwrap() >= 1.0);
    assert!(
        !ledger_scan["plan"].as_array().unwrap().is_empty(),
        "{ledger_scan}"
    );
    assert!(
        !v.to_string().contains("SKU-00001"),
        "a parameter was logged: {v}"
    );
    let month = s.json(&["--config", c, "report", "monthly"]);
    assert!(!month["slow_statements"].as_array().unwrap().is_empty());
    s.ok(&["--config", c, "maintain", "daily"]);
    assert!(
        query_i64(&s.db, "SELECT count(*) FROM slow_statements") > 0,
        "pruned too early"
    );
    // Off: nothing is recorded.
    let quiet = Sandbox::empty();
    ora::sample::generate(&quiet.db, 20_000, 100, 9).unwrap();
    let off = quiet.path("off.toml");
    std::fs::write(&off, "[database]\nslow_ms = 0\n").unwrap();
    quiet.ok(&["--config", off.to_str().unwrap(), "verify"]);
    assert_eq!(
        query_i64(&quiet.db, "SELECT count(*) FROM slow_statements"),
        0
    );
    let bad = s.path("bad.toml");
    std::fs::write(&bad, "[database]\nslow_ms = -5\n").unwrap();
    let err = s.fails(&["--config", bad.to_str().unwrap(), "verify"], 2);
    assert!(err.contains("slow_ms"), "{err}");
}
