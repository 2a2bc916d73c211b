//! The warehouse as a shift lead meets it, through a real `ora serve`: each broken state (a
//! red KPI status, a workflow stuck since hours, a stock edited with the sqlite3 shell)
//! reaches the page (named, linked, with the fix), `/health`'s `warehouse` object and
//! `/metrics`, and mending it clears them; `[warehouse]` sets the rules and the site's name and
//! refuses what it does not understand; a product's page and API give its history with the
//! running balance; the ledger pages by cursor, each row exactly once while writes go on; the
//! lists come as CSV that a CSV parser reads back to the JSON.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{json, Value};

use crate::monitoring::assert_fires as fires;
use crate::util::{call, gauge, http, settles, Sandbox, Server};

fn page(addr: &str, path: &str) -> (u16, String, String) {
    let (status, head, body) = http(addr, "GET", path, &[], b"").unwrap();
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// The codes of `/health`'s warehouse reasons, once its verdict is `verdict` (the server
/// reuses a verdict for a second; this waits for a fresh one, up to 10 s).
fn codes(addr: &str, verdict: &str) -> (Value, BTreeSet<String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut h = call(addr, "GET", "/health", None, None).1;
    while h["warehouse"]["verdict"] != verdict && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        h = call(addr, "GET", "/health", None, None).1;
    }
    let codes = h["warehouse"]["reasons"]
        .as_array()
        .unwrap_or_else(|| panic!("no warehouse reasons: {h}"))
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect();
    (h, codes)
}

fn sqlite3(db: &std::path::Path, sql: &str) {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn healthy_house() -> Sandbox {
    let s = Sandbox::new();
    s.ok(&[
        "product",
        "add",
        "W-1",
        "Lamp",
        "--reorder-point",
        "2",
        "--initial",
        "20",
    ]);
    s.ok(&["stock", "ship", "W-1", "4"]);
    s.ok(&[
        "kpi",
        "record",
        &ora::model::today(),
        "--orders-today",
        "3",
        "--status",
        "green",
    ]);
    s
}

// A brand-new database opens all good on both sides (nothing a newcomer could have done yet
// is held against it), says there is nothing to do, and no shipped alert fires.
#[test]
fn a_brand_new_database_opens_all_good() {
    let s = Sandbox::new();
    let srv = Server::start(&s, &[]);
    let a = srv.addr.as_str();
    let (st, _, p) = page(a, "/");
    assert_eq!(st, 200);
    assert!(p.contains("<title>ora — ALL GOOD</title>"), "{p}");
    assert!(
        p.contains(r#"id="warehouse-verdict" class="verdict ok""#),
        "{p}"
    );
    assert!(p.contains(r#"id="verdict" class="verdict ok""#), "{p}");
    assert!(p.contains("Nothing: stock above reorder points"), "{p}");
    let (code, h) = call(a, "GET", "/health", None, None);
    assert_eq!((code, h["status"].as_str()), (200, Some("ok")), "{h}");
    assert_eq!(h["warehouse"]["verdict"], "ok", "{h}");
    fires(a, &s.path("."), &[]);
}

// Each broken state changes the page, /health's warehouse and /metrics, and each fix clears
// it. The site's name from [warehouse] heads the page instead of the file's path.
#[test]
fn each_broken_warehouse_state_reaches_the_page_health_and_metrics() {
    let s = healthy_house();
    let cfg = s.path("ora.toml");
    std::fs::write(
        &cfg,
        "[warehouse]\nsite_name = \"Dock North\"\nstuck_after_hours = 2\n",
    )
    .unwrap();
    let srv = Server::start(&s, &["--config", cfg.to_str().unwrap()]);
    let a = srv.addr.as_str();
    assert_eq!(gauge(a, "ora_warehouse_verdict"), 0.0);
    let (_, _, p) = page(a, "/");
    assert!(p.contains("Dock North"), "site name");
    assert!(
        !p.contains(&s.db.display().to_string()),
        "the path heads the page"
    );
    assert!(p.contains("Nothing: stock above reorder points"));
    let alerts = s.path("alerts");
    std::fs::create_dir_all(&alerts).unwrap();
    fires(a, &alerts, &[]);

    // A red system status in today's KPIs.
    s.ok(&["kpi", "record", &ora::model::today(), "--status", "red"]);
    let (h, c) = codes(a, "fail");
    assert!(c.contains("kpi_status"), "{h}");
    assert_eq!(h["warehouse"]["verdict"], "fail");
    assert_eq!(gauge(a, "ora_kpi_status"), 2.0);
    let (_, _, p) = page(a, "/");
    assert!(p.contains("System status red"), "{p}");
    fires(a, &alerts, &["OraKpiStatusRed", "OraWarehouseActNow"]);
    s.ok(&["kpi", "record", &ora::model::today(), "--status", "green"]);
    settles(a, "ora_kpi_status", 0.0);

    // A workflow set running three hours ago and never since (its command run on a clock
    // three hours back), beside one set just now.
    let earlier = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339();
    let out = s
        .cmd(&["workflow", "set", "nightly-sync", "running"])
        .env(ora::clock::VAR, &earlier)
        .output()
        .unwrap();
    assert!(out.status.success());
    s.ok(&["workflow", "set", "label-printing", "running"]);
    let (h, c) = codes(a, "warn");
    assert!(c.contains("workflow_stuck"), "{h}");
    assert_eq!(gauge(a, "ora_workflows_stuck"), 1.0);
    let (_, _, p) = page(a, "/");
    assert!(
        p.contains("1 workflow unchanged for more than 2 hours"),
        "{p}"
    );
    assert!(p.contains(r##"<a href="#wf-nightly-sync">nightly-sync</a>"##));
    assert!(!p.contains(r##"<a href="#wf-label-printing">"##));
    fires(a, &alerts, &["OraWorkflowStuck"]);
    s.ok(&["workflow", "set", "nightly-sync", "done"]);
    settles(a, "ora_workflows_stuck", 0.0);

    // The stock edited behind ora's back with the sqlite3 shell: noticed at once, named with
    // the command that mends it; the reconcile clears it.
    sqlite3(
        &s.db,
        "UPDATE inventory_current SET current_quantity = 99 WHERE sku = 'W-1'",
    );
    let (h, c) = codes(a, "fail");
    assert!(c.contains("stock_mismatch"), "{h}");
    assert_eq!(gauge(a, "ora_stock_mismatches"), 1.0);
    assert_eq!(gauge(a, "ora_warehouse_verdict"), 2.0);
    let (_, _, p) = page(a, "/");
    assert!(p.contains("1 stock was changed outside ora"), "{p}");
    assert!(p.contains("stock 99 but its movements add up to 16"));
    assert!(p.contains("<code>ora stock reconcile W-1</code>"));
    fires(
        a,
        &alerts,
        &["OraStockChangedOutsideOra", "OraWarehouseActNow"],
    );
    // The nightly `ora verify` finds it too; the page shows its finding with the sku and the
    // command that mends it.
    s.fails(&["verify"], 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let p = loop {
        let (_, _, p) = page(a, "/");
        if p.contains("the last <code>ora verify</code>") || std::time::Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        p.contains("ledger: sku W-1 holds 99 but its movements add up to 16"),
        "{p}"
    );
    assert!(
        p.contains("<code>ora stock reconcile W-1</code>, then count"),
        "{p}"
    );
    s.ok(&["stock", "reconcile", "W-1"]);
    s.ok(&["verify"]);
    settles(a, "ora_stock_mismatches", 0.0);
    settles(a, "ora_warehouse_verdict", 0.0);
    fires(a, &alerts, &[]);
    // The database's own verdict was never the warehouse's.
    let (code, _) = call(a, "GET", "/health", None, None);
    assert_ne!(code, 503);
}

// A rule set to off is off; a level or limit ora does not understand stops it with the key
// named, before it serves anything.
#[test]
fn warehouse_rules_are_configured_in_one_place_and_checked() {
    let s = healthy_house();
    s.ok(&["workflow", "set", "dock-2", "failed"]);
    let cfg = s.path("ora.toml");
    std::fs::write(&cfg, "[warehouse]\nworkflow_failed = \"off\"\n").unwrap();
    let c = cfg.to_str().unwrap();
    let h = s.json(&["--config", c, "health"]);
    assert_eq!(h["warehouse"]["verdict"], "ok", "{h}");
    std::fs::write(&cfg, "[warehouse]\nworkflow_failed = \"warn\"\n").unwrap();
    let h = s.json(&["--config", c, "health"]);
    assert_eq!(h["warehouse"]["verdict"], "warn", "{h}");
    for (bad, key) in [
        ("low_stock = \"loud\"", "warehouse.low_stock"),
        ("stuck_after_hours = 0", "warehouse.stuck_after_hours"),
        ("kpis_due_hour = 24", "warehouse.kpis_due_hour"),
        ("site_name = \"a\\u0007b\"", "warehouse.site_name"),
        ("color = \"red\"", "color"),
        ("stuck_after_hours = -1", "stuck_after_hours"),
    ] {
        std::fs::write(&cfg, format!("[warehouse]\n{bad}\n")).unwrap();
        let err = s.fails(&["--config", c, "health"], 2);
        assert!(err.contains(key), "{bad}: {err}");
    }
}

// A product's page and its API: movements newest first with the balance each left, who
// recorded it and the order; paged by cursor; an unknown sku near a known one is named.
#[test]
fn a_products_page_and_api_give_its_history_with_the_running_balance() {
    let s = healthy_house();
    s.ok(&["stock", "receive", "W-1", "5"]);
    s.ok(&["stock", "adjust", "W-1", "-2"]);
    let srv = Server::start(&s, &[]);
    let a = srv.addr.as_str();
    let (st, v) = call(a, "GET", "/api/products/W-1?limit=2", None, None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["product"]["current_quantity"], 19);
    let m = v["movements"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[0]["type"].clone(), m[0]["balance"].clone()),
        (json!("Adjust Down"), json!(19))
    );
    assert_eq!(
        (m[1]["type"].clone(), m[1]["balance"].clone()),
        (json!("Receive"), json!(21))
    );
    assert!(m[0]["actor"].is_string(), "{v}");
    let next = v["next_before"].as_i64().unwrap();
    let (_, head, _) = page(a, "/api/products/W-1?limit=2");
    assert!(
        head.contains(&format!("</api/products/W-1?before={next}>; rel=\"next\"")),
        "{head}"
    );
    let (_, older) = call(
        a,
        "GET",
        &format!("/api/products/W-1?limit=2&before={next}"),
        None,
        None,
    );
    let m = older["movements"].as_array().unwrap();
    assert_eq!(
        (m[0]["type"].clone(), m[0]["balance"].clone()),
        (json!("Ship"), json!(16))
    );
    assert_eq!(
        (m[1]["type"].clone(), m[1]["balance"].clone()),
        (json!("Receive"), json!(20))
    );
    assert!(older["next_before"].is_null(), "{older}");
    assert!(v["days_of_cover"].as_f64().unwrap() > 100.0, "{v}");

    let (st, _, p) = page(a, "/products/W-1");
    assert_eq!(st, 200);
    // A fresh box has no backup yet: the database warns, and the tab says so.
    assert!(p.contains("<title>ora — ATTENTION — W-1</title>"), "{p}");
    assert!(p.contains("Days of cover") && p.contains("Stock at the end of each day"));
    assert!(p.contains(r#"data-label="Balance">19<"#), "{p}");

    // The search box: an exact sku in any case goes to its page; a name finds it.
    let (st, head, _) = page(a, "/search?q=w-1");
    assert_eq!(st, 303);
    assert!(
        head.to_ascii_lowercase()
            .contains("location: /products/w-1"),
        "{head}"
    );
    let (st, _, p) = page(a, "/search?q=lamb");
    assert_eq!(st, 200);
    assert!(
        p.contains(r#"<a class="sku" href="/products/W-1">W-1</a>"#),
        "{p}"
    );
    // An unknown sku that differs by case: named, never an invitation to a duplicate.
    let (st, e) = call(a, "GET", "/api/products/w-1", None, None);
    assert_eq!(st, 404);
    assert!(e["error"].as_str().unwrap().contains("W-1"), "{e}");
    for bad in [
        "/api/products/W-1?before=x",
        "/api/products/W-1?limit=0",
        "/products/W-1?sku=W-1",
    ] {
        let (st, e) = call(a, "GET", bad, None, None);
        assert!(st == 400 || st == 422, "{bad}: {st} {e}");
    }
}

/// GETs a page of a list; returns its rows and its `next` link, if any.
fn list_page(addr: &str, path: &str) -> (Vec<Value>, Option<String>) {
    let (st, head, body) = http(addr, "GET", path, &[], b"").unwrap();
    assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
    let rows: Vec<Value> = serde_json::from_slice(&body).unwrap();
    let next = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("link: <"))
        .and_then(|l| l["link: <".len()..].split_once(">; rel=\"next\""))
        .map(|(u, _)| u.to_string());
    (rows, next)
}

// 25,000 movements paged forwards by `after` while a writer keeps adding more: every row
// exactly once, in id order, and the last pages pick up the new ones; backwards by `before`
// from the top, the same rows newest first.
#[test]
fn the_ledger_pages_by_cursor_each_row_once_while_writes_go_on() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "P-1", "Pallet"]);
    let csv = s.path("m.csv");
    let mut text = String::from("sku,type,quantity\n");
    for _ in 0..25_000 {
        text.push_str("P-1,Receive,1\n");
    }
    std::fs::write(&csv, text).unwrap();
    s.ok(&["stock", "import", csv.to_str().unwrap()]);
    let srv = Server::start(&s, &[]);
    let a = srv.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (a, stop) = (a.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (st, _) = call(
                    &a,
                    "POST",
                    "/api/transactions",
                    None,
                    Some(&json!({"sku": "P-1", "type": "Receive", "quantity": 1})),
                );
                assert_eq!(st, 201);
                n += 1;
            }
            n
        })
    };
    let mut seen = Vec::new();
    let mut path = Some("/api/transactions?after=0&limit=1000&sku=P-1".to_string());
    while let Some(p) = path {
        let (rows, next) = list_page(&a, &p);
        seen.extend(rows.iter().map(|r| r["id"].as_i64().unwrap()));
        path = next;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "not in order, or a row twice"
    );
    assert!(seen.len() >= 25_000, "{} rows", seen.len());
    // Every id the ledger holds up to the last one seen, none skipped.
    let all: Vec<i64> = {
        let conn = rusqlite::Connection::open(&s.db).unwrap();
        let mut st = conn
            .prepare("SELECT id FROM inventory_transactions WHERE id <= ?1 ORDER BY id")
            .unwrap();
        st.query_map([seen[seen.len() - 1]], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(seen, all, "rows skipped (writer added {written})");
    // Backwards from the newest: the same rows, newest first.
    let mut back = Vec::new();
    let mut path = Some(format!(
        "/api/transactions?before={}&limit=5000",
        seen[seen.len() - 1] + 1
    ));
    while let Some(p) = path {
        let (rows, next) = list_page(&a, &p);
        back.extend(rows.iter().map(|r| r["id"].as_i64().unwrap()));
        path = next;
    }
    back.reverse();
    assert_eq!(back, seen);
}

// The audit trail (product changes, workflow states and movements, two sources merged by
// time) paged by its cursor while a writer keeps adding to both: every entry exactly once,
// newest first, and none written after the first page turns up in a later, older one.
#[test]
fn the_audit_trail_pages_by_cursor_each_entry_once_while_writes_go_on() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "P-1", "Pallet"]);
    let srv = Server::start(&s, &[]);
    let a = srv.addr.clone();
    let write = |i: usize| {
        let (st, v) = if i.is_multiple_of(3) {
            let body = json!({"status": format!("step {i}")});
            call(
                &a,
                "PUT",
                &format!("/api/workflows/wf-{}", i % 7),
                None,
                Some(&body),
            )
        } else {
            let body = json!({"sku": "P-1", "type": "Receive", "quantity": 1});
            call(&a, "POST", "/api/transactions", None, Some(&body))
        };
        assert!(st == 200 || st == 201, "{v}");
    };
    for i in 0..600 {
        write(i);
    }
    let key = |r: &Value| match r["id"].as_i64() {
        Some(id) => format!("c{id}"),
        None => format!("m{}", r["key"].as_str().unwrap()),
    };
    let mut seen: Vec<Value> = Vec::new();
    let mut path = Some("/api/audit?limit=37".to_string());
    let mut pages = 0;
    while let Some(p) = path {
        let (rows, next) = list_page(&a, &p);
        if pages == 0 {
            // Writes go on between the pages, into both sources.
            for i in 0..60 {
                write(i);
            }
        }
        pages += 1;
        seen.extend(rows);
        path = next;
    }
    assert!(pages > 15, "{pages} pages");
    let keys: Vec<String> = seen.iter().map(key).collect();
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "an entry twice");
    assert!(
        seen.windows(2)
            .all(|w| w[0]["at"].as_str() >= w[1]["at"].as_str()),
        "not newest first"
    );
    // Exactly what the trail held when the first page was read: one at a time from the top,
    // without a cursor, the newest 60 writes come first and then the same entries.
    let (all, _) = list_page(&a, "/api/audit?limit=10000");
    let then: Vec<String> = all.iter().skip(60).map(key).collect();
    assert_eq!(keys, then);
    for bad in ["x", "c1m", "c-1m2", "c99999999999999999999m1", "m1c1"] {
        let (st, v) = call(&a, "GET", &format!("/api/audit?before={bad}"), None, None);
        assert_eq!(st, 422, "{bad}: {v}");
        assert!(v["error"].as_str().unwrap().contains("cursor"), "{v}");
    }
}

// The product list pages in its own order (most urgent first): walking /api/products and
// /api/inventory by `after` gives the whole list, each product once, low ones alone with
// `low=1`; a cursor naming no product, and paging mixed with `as_of`, are refused.
#[test]
fn products_page_by_cursor_in_their_urgency_order() {
    let s = Sandbox::new();
    let csv = s.path("p.csv");
    let mut text = String::from("sku,name,reorder_point,initial\n");
    for i in 0..250 {
        // Some critical, some low, most fine; shortfalls and stocks repeat, so the order
        // falls back on the sku often.
        text.push_str(&format!("P-{i:03},Part {i},{},{}\n", i % 7, (i * 13) % 11));
    }
    std::fs::write(&csv, text).unwrap();
    s.ok(&["product", "import", csv.to_str().unwrap()]);
    let srv = Server::start(&s, &[]);
    let a = srv.addr.as_str();
    for (route, low) in [
        ("/api/products", ""),
        ("/api/inventory", ""),
        ("/api/products", "&low=1"),
    ] {
        let (whole, none) = list_page(a, &format!("{route}?{}", low.trim_start_matches('&')));
        assert!(none.is_none());
        assert!(whole.len() > 40, "{route}{low}: {}", whole.len());
        let mut paged = Vec::new();
        let mut path = Some(format!("{route}?limit=17{low}"));
        while let Some(p) = path {
            let (rows, next) = list_page(a, &p);
            assert!(rows.len() <= 17);
            paged.extend(rows);
            path = next;
        }
        assert_eq!(paged, whole, "{route}{low}");
    }
    for bad in [
        "/api/products?after=NOPE-1&limit=5",
        "/api/products?after=%00&limit=5",
        "/api/products?limit=0",
        "/api/products?limit=10001",
        "/api/inventory?as_of=2026-01-01&limit=5",
        "/api/inventory?sku=P-001",
    ] {
        let (st, v) = call(a, "GET", bad, None, None);
        assert_eq!(st, 422, "{bad}: {v}");
    }
}

// The lists as CSV (by `?format=csv` or `Accept: text/csv`): a CSV parser reads back exactly
// the JSON's rows, notes with commas, quotes and a formula-like start included.
#[test]
fn lists_come_as_csv_that_parses_back_to_the_json() {
    let s = healthy_house();
    let srv = Server::start(&s, &[]);
    let a = srv.addr.as_str();
    for notes in ["count, \"recount\"", "=SUM(A1)", "line\nbreak"] {
        let (st, v) = call(
            a,
            "POST",
            "/api/transactions",
            None,
            Some(&json!({"sku": "W-1", "type": "Receive", "quantity": 1, "notes": notes})),
        );
        assert_eq!(st, 201, "{v}");
    }
    // The ledger column's name for a movement's kind is read as `type`.
    let (st, v) = call(
        a,
        "POST",
        "/api/transactions",
        None,
        Some(&json!({"sku": "W-1", "transaction_type": "Receive", "quantity": 1})),
    );
    assert_eq!(
        (st, &v["movement"]["type"]),
        (201, &json!("Receive")),
        "{v}"
    );
    let (_, trail) = call(
        a,
        "GET",
        "/api/audit?sku=W-1&table=inventory_transactions&limit=1",
        None,
        None,
    );
    assert_eq!(trail[0]["new"]["type"], "Receive", "{trail}");
    let (_, json_rows) = call(a, "GET", "/api/transactions?sku=W-1", None, None);
    let (st, head, body) =
        http(a, "GET", "/api/transactions?sku=W-1&format=csv", &[], b"").unwrap();
    assert_eq!(st, 200);
    assert!(head.contains("text/csv"), "{head}");
    let mut r = csv::Reader::from_reader(body.as_slice());
    let columns: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let json_rows = json_rows.as_array().unwrap();
    assert_eq!(rows.len(), json_rows.len());
    for (c, j) in rows.iter().zip(json_rows) {
        for (name, cell) in columns.iter().zip(c.iter()) {
            let want = match &j[name] {
                Value::Null => String::new(),
                Value::String(t) if t.starts_with('=') => format!("'{t}"),
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            assert_eq!(cell, want, "{name}");
        }
    }
    // The Accept header asks the same; the stock list too; a bad format is refused by name.
    let (_, head, body) = http(a, "GET", "/api/inventory", &[("Accept", "text/csv")], b"").unwrap();
    assert!(head.contains("text/csv"));
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.starts_with("sku,product_name,current_quantity,reorder_point"),
        "{text}"
    );
    assert!(text.contains("W-1,Lamp,20,2,ok"), "{text}");
    let (st, e) = call(a, "GET", "/api/inventory?format=xml", None, None);
    assert_eq!(st, 422, "{e}");
    assert!(e["error"].as_str().unwrap().contains("csv or json"));
}

// The OpenAPI document names exactly the routes the router lists, and every route in it
// answers: each GET with something other than "no route", and each other method is one the
// route's 405 `Allow` names (asked with PATCH, which no route takes, so nothing is written).
#[test]
fn the_openapi_document_names_every_route_and_each_answers() {
    let s = healthy_house();
    s.ok(&["workflow", "set", "wf", "done"]);
    let srv = Server::start(&s, &[]);
    let a = srv.addr.as_str();
    let (st, doc) = call(a, "GET", "/api/openapi.json", None, None);
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let (st, missing) = call(a, "GET", "/no/such/route", None, None);
    assert_eq!(st, 404);
    let listed: BTreeSet<String> = missing["error"]
        .as_str()
        .unwrap()
        .split_once("the routes are: ")
        .unwrap()
        .1
        .split("; ")
        .map(|r| r.rsplit(' ').next().unwrap().to_string())
        .collect();
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    assert_eq!(listed, documented);
    let today = ora::model::today();
    for (path, item) in paths {
        let real = path
            .replace("{sku}", "W-1")
            .replace("{order}", "ORD-1")
            .replace("{name}", "wf")
            .replace("{date}", &today)
            .replace("{id}", "0");
        for method in item.as_object().unwrap().keys() {
            let (st, head, body) = if method == "get" {
                http(a, "GET", &real, &[], b"").unwrap()
            } else {
                http(a, "PATCH", &real, &[], b"").unwrap()
            };
            let text = String::from_utf8_lossy(&body);
            assert!(
                !text.contains("no route for"),
                "{method} {path}: {st} {text}"
            );
            if method == "get" {
                assert_ne!(st, 405, "GET {path}: {text}");
            } else {
                assert_eq!(st, 405, "{path}");
                let allow = head
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("allow:"))
                    .unwrap_or_else(|| panic!("{path}: no Allow in {head}"));
                assert!(
                    allow
                        .to_ascii_uppercase()
                        .contains(&method.to_ascii_uppercase()),
                    "{path}: {allow} lacks {method}"
                );
            }
        }
    }
}

/// Follows `Link: rel="next"` from `first` to the end; every page's items by `key`.
fn all_pages(addr: &str, first: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = Some(first.to_string());
    while let Some(p) = path {
        let (rows, next) = list_page(addr, &p);
        out.extend(rows.iter().map(|r| r[key].as_str().unwrap().to_string()));
        path = next;
    }
    out
}

// The KPI days and the shipped orders page by cursor too: every item once, in the list's
// order, however the pages fall (orders of one day included).
#[test]
fn kpis_and_shipments_page_by_cursor() {
    let s = healthy_house();
    s.ok(&["stock", "receive", "W-1", "100"]);
    let today = chrono::NaiveDate::parse_from_str(&ora::model::today(), "%Y-%m-%d").unwrap();
    for n in 1..=6 {
        let day = (today - chrono::Days::new(n))
            .format("%Y-%m-%d")
            .to_string();
        s.ok(&["kpi", "record", &day, "--orders-today", "1"]);
    }
    for n in 1..=7 {
        s.ok(&["shipment", "record", &format!("ORD-{n}"), "--item", "W-1:1"]);
    }
    let srv = Server::start(&s, &[]);
    let a = srv.addr.as_str();
    let whole: Vec<String> = call(a, "GET", "/api/kpis?days=100", None, None)
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["snapshot_date"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(whole.len(), 7);
    assert_eq!(all_pages(a, "/api/kpis?days=2", "snapshot_date"), whole);
    let orders: Vec<String> = call(a, "GET", "/api/shipments?limit=100", None, None)
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_number"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(orders.len(), 7);
    assert_eq!(
        all_pages(a, "/api/shipments?limit=3", "order_number"),
        orders
    );
    let (st, e) = call(a, "GET", "/api/shipments?after=NO-SUCH", None, None);
    assert_eq!(st, 422, "{e}");
}
