//! The HTTP server for real: a running `ora serve`, requests over loopback. Every route, bad
//! input of every kind (the database stays unchanged), auth and stalled clients (the page in a
//! real browser: `page.rs`).

use std::io::Write;
use std::net::TcpStream;

use serde_json::json;

use crate::util::{call, http, query_i64, raw, Sandbox, Server};

/// A database with two products: A-1 (stock 10, reorder at 5) and B-2 (stock 3, reorder at 50).
pub(crate) fn seeded() -> Sandbox {
    let s = Sandbox::new();
    s.ok(&[
        "product",
        "add",
        "A-1",
        "Blue widget",
        "--reorder-point",
        "5",
        "--initial",
        "10",
    ]);
    s.ok(&[
        "product",
        "add",
        "B-2",
        "Red gadget",
        "--reorder-point",
        "50",
        "--initial",
        "3",
    ]);
    s
}

fn seeded_server() -> (Sandbox, Server) {
    let s = seeded();
    let server = Server::start(&s, &[]);
    (s, server)
}

/// A refused batch's (item, field) pairs, in order.
fn item_fields(v: &serde_json::Value) -> Vec<(i64, String)> {
    v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["item"].as_i64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// Every route answers with the right status and shape; writes show up in reads and verify.
#[test]
fn every_route_works_and_writes_are_visible() {
    let (s, srv) = seeded_server();
    let a = srv.addr.as_str();
    let (st, v) = call(a, "GET", "/api/inventory", None, None);
    assert_eq!(st, 200);
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (st, v) = call(a, "GET", "/api/inventory?low=1", None, None);
    assert_eq!((st, v[0]["sku"].as_str()), (200, Some("B-2")));
    let (st, v) = call(a, "GET", "/api/inventory/A-1", None, None);
    assert_eq!((st, v["current_quantity"].as_i64()), (200, Some(10)));
    let (st, v) = call(
        a,
        "POST",
        "/api/transactions",
        None,
        Some(&json!({"sku": "A-1", "type": "Ship", "quantity": 4, "notes": "order 7"})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["movement"]["new_quantity"], 6);
    // Idempotency through the header: the second call replays.
    let body = json!({"sku": "A-1", "type": "Receive", "quantity": 2});
    let headers = [
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "scan-77"),
    ];
    let (st1, _, r1) = http(
        a,
        "POST",
        "/api/transactions",
        &headers,
        body.to_string().as_bytes(),
    )
    .unwrap();
    let (st2, h2, r2) = http(
        a,
        "POST",
        "/api/transactions",
        &headers,
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!((st1, st2), (201, 200));
    assert!(h2
        .to_ascii_lowercase()
        .contains("idempotent-replayed: true"));
    let (v1, v2): (serde_json::Value, serde_json::Value) = (
        serde_json::from_slice(&r1).unwrap(),
        serde_json::from_slice(&r2).unwrap(),
    );
    assert_eq!(v1["movement"], v2["movement"]);
    // A batch is all or nothing, and says every problem with its movement and field.
    let (st, v) = call(
        a,
        "POST",
        "/api/transactions",
        None,
        Some(&json!({"movements": [
        {"sku": "A-1", "type": "Ship", "quantity": 1}, {"sku": "B-2", "type": "Ship", "quantity": 99}]})),
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(
        v["errors"],
        json!([{"item": 2, "field": "quantity", "message": v["errors"][0]["message"]}]),
        "{v}"
    );
    let (st, v) = call(
        a,
        "POST",
        "/api/transactions",
        None,
        Some(&json!({"movements": [
            {"sku": "A 1", "type": "Ship", "quantity": 1},
            {"sku": "A-1", "type": "Ship", "quantity": 0, "date": "2026-02-30"},
            {"sku": "A-1", "type": "Receive", "quantity": 1},
            {"sku": "a-1", "type": "Receive", "quantity": 1}]})),
    );
    assert_eq!(st, 422, "{v}");
    let got = item_fields(&v);
    assert_eq!(
        got,
        [
            (1, "sku".to_string()),
            (2, "quantity".into()),
            (2, "date".into())
        ],
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("2 of 4 movements cannot be applied"),
        "{v}"
    );
    // Shape-valid movements refused by the ledger: each named, the good ones not applied.
    let (st, v) = call(
        a,
        "POST",
        "/api/transactions",
        None,
        Some(&json!({"movements": [
            {"sku": "A-1", "type": "Receive", "quantity": 1},
            {"sku": "a-1", "type": "Receive", "quantity": 1},
            {"sku": "B-2", "type": "Ship", "quantity": 99}]})),
    );
    assert_eq!(st, 422, "{v}");
    let got = item_fields(&v);
    assert_eq!(got, [(2, "sku".to_string()), (3, "quantity".into())], "{v}");
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("A-1"),
        "did you mean: {v}"
    );
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT current_quantity FROM inventory_current WHERE sku = 'A-1'"
        ),
        8
    );
    let (st, v) = call(
        a,
        "POST",
        "/api/transactions",
        None,
        Some(&json!({"movements": [
        {"sku": "A-1", "type": "Ship", "quantity": 1}, {"sku": "B-2", "type": "Receive", "quantity": 7}]})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["movements"].as_array().unwrap().len(), 2);
    let (st, v) = call(a, "GET", "/api/transactions?sku=A-1&limit=2", None, None);
    assert_eq!(st, 200);
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (st, v) = call(
        a,
        "POST",
        "/api/products",
        None,
        Some(&json!({"sku": "C-3", "product_name": "Green thing", "initial_quantity": 4})),
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = call(
        a,
        "POST",
        "/api/shipments",
        None,
        Some(
            &json!({"order_number": "SO-1", "items": [{"sku": "C-3", "quantity": 2, "lot": "L1"}]}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    // Workflows with optimistic locking.
    let (st, v) = call(
        a,
        "PUT",
        "/api/workflows/nightly",
        None,
        Some(&json!({"status": "running", "expect_version": 0})),
    );
    assert_eq!((st, v["result"]["version"].as_i64()), (200, Some(1)));
    let (st, _) = call(
        a,
        "PUT",
        "/api/workflows/nightly",
        None,
        Some(&json!({"status": "done", "expect_version": 0})),
    );
    assert_eq!(st, 409);
    let (st, v) = call(a, "GET", "/api/workflows", None, None);
    assert_eq!((st, v[0]["status"].as_str()), (200, Some("running")));
    let (st, v) = call(
        a,
        "PUT",
        "/api/kpis/2026-11-22",
        None,
        Some(&json!({"orders_today": 12, "system_status": "green"})),
    );
    assert_eq!((st, v["result"]["orders_today"].as_i64()), (200, Some(12)));
    // Backups through the API.
    let (st, v) = call(a, "POST", "/api/backups", None, None);
    assert_eq!(st, 201, "{v}");
    let (st, v) = call(a, "GET", "/api/backups", None, None);
    assert_eq!((st, v.as_array().unwrap().len()), (200, 1));
    // Health, metrics and the page.
    let (st, v) = call(a, "GET", "/health", None, None);
    assert_eq!(st, 200);
    assert_eq!(v["healthy"], true);
    let (st, _, body) = http(a, "GET", "/metrics", &[], b"").unwrap();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(st, 200);
    for m in [
        "ora_database_bytes ",
        "ora_movements_total ",
        "ora_writer_commit_seconds_bucket",
        "ora_writer_sync_seconds_bucket",
        "ora_writer_capture_seconds_bucket",
        "ora_http_requests_total{route=\"/api/transactions\",status=\"201\"}",
        "ora_last_backup_age_seconds ",
    ] {
        assert!(text.contains(m), "{m} missing from /metrics");
    }
    let (st, head, page) = http(a, "GET", "/", &[], b"").unwrap();
    assert_eq!(st, 200);
    assert!(head.to_ascii_lowercase().contains("text/html"));
    let page = String::from_utf8_lossy(&page);
    for id in [
        "id=\"verdict\"",
        "id=\"low-stock\"",
        "id=\"workflows\"",
        "id=\"kpis\"",
        "id=\"charts\"",
        "<svg",
    ] {
        assert!(page.contains(id), "{id} missing from the page");
    }
    drop(srv);
    s.ok(&["verify"]);
}

// Malformed, hostile and oversized requests: 4xx with a JSON error, never a 500, and the
// database is unchanged.
#[test]
fn bad_requests_get_clear_4xx_and_change_nothing() {
    let (s, srv) = seeded_server();
    let a = srv.addr.as_str();
    let before = s.snapshot();
    let j = ("Content-Type", "application/json");
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/transactions",
            vec![j],
            b"{\"sku\": \"A-1\", ".to_vec(),
            400,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            b"not json at all".to_vec(),
            400,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            vec![0xff, 0xfe, 0x7b],
            400,
        ),
        ("POST", "/api/transactions", vec![j], b"".to_vec(), 400),
        (
            "POST",
            "/api/transactions",
            vec![("Content-Type", "text/plain")],
            br#"{"sku":"A-1","type":"Receive","quantity":1}"#.to_vec(),
            415,
        ),
        (
            "POST",
            "/api/transactions",
            vec![],
            br#"{"sku":"A-1","type":"Receive","quantity":1}"#.to_vec(),
            415,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1","type":"Receive","quantity":-5}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1","type":"Receive","quantity":0}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1","type":"Receive","quantity":1e30}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1","type":"Receive","quantity":99999999999999999999999}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1","type":"Receive","quantity":"5"}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1","type":"Steal","quantity":5}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1","type":"Receive","quantity":5,"admin":true}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"NOPE","type":"Receive","quantity":5}"#.to_vec(),
            404,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1","type":"Ship","quantity":500}"#.to_vec(),
            409,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1'; DROP TABLE inventory_current; --","type":"Receive","quantity":1}"#
                .to_vec(),
            422,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1","type":"Receive","quantity":1,"date":"2026-01-01' OR 1=1"}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"sku":"A-1","type":"Receive","quantity":1,"request_id":"x y"}"#.to_vec(),
            422,
        ),
        (
            "POST",
            "/api/transactions",
            vec![j],
            br#"{"movements":[]}"#.to_vec(),
            422,
        ),
        (
            "PUT",
            "/api/workflows/x",
            vec![j],
            br#"{"status":""}"#.to_vec(),
            422,
        ),
        (
            "PUT",
            "/api/kpis/2026-13-45",
            vec![j],
            br#"{"orders_today":1}"#.to_vec(),
            422,
        ),
        (
            "PUT",
            "/api/kpis/2026-11-22",
            vec![j],
            br#"{"orders_today":-1}"#.to_vec(),
            422,
        ),
        (
            "GET",
            "/api/inventory/..%2F..%2Fetc%2Fpasswd",
            vec![],
            vec![],
            400,
        ),
        ("GET", "/api/../../etc/passwd", vec![], vec![], 400),
        ("GET", "/api/%2e%2e/ora.db", vec![], vec![], 400),
        ("GET", "/api/inventory/%zz", vec![], vec![], 400),
        ("GET", "/api/inventory/NOPE-9", vec![], vec![], 404),
        ("GET", "/api/transactions?limit=abc", vec![], vec![], 422),
        (
            "GET",
            "/api/transactions?since=yesterday",
            vec![],
            vec![],
            422,
        ),
        ("GET", "/no/such/thing", vec![], vec![], 404),
        ("DELETE", "/api/inventory/A-1", vec![], vec![], 405),
        ("BREW", "/api/inventory", vec![], vec![], 405),
        ("PUT", "/api/transactions", vec![j], b"{}".to_vec(), 405),
    ];
    for (method, path, headers, body, want) in &cases {
        let (st, _, resp) = http(a, method, path, headers, body).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_else(|_| {
            panic!(
                "{method} {path}: not JSON: {}",
                String::from_utf8_lossy(&resp)
            )
        });
        assert_eq!(
            st,
            *want,
            "{method} {path} {}: {v}",
            String::from_utf8_lossy(body)
        );
        assert!(
            v["error"].is_string() && v["code"].is_string(),
            "{method} {path}: {v}"
        );
    }
    // A body over the limit (1 MiB by default): 413 without reading it all.
    let big = vec![b'x'; 2 * 1024 * 1024];
    let (st, _, _) = http(a, "POST", "/api/transactions", &[j], &big).unwrap();
    assert_eq!(st, 413);
    // A header flood: 431.
    let mut req = String::from("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..300 {
        req.push_str(&format!("X-Flood-{i}: {}\r\n", "y".repeat(50)));
    }
    req.push_str("\r\n");
    let (st, text) = raw(a, req.as_bytes()).unwrap();
    assert_eq!(st, 431, "{text}");
    // Garbage instead of HTTP.
    let (st, _) = raw(a, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").unwrap();
    assert!(st == 400 || st == 0, "garbage got {st}");
    // The server is fine and nothing changed.
    let (st, _) = call(a, "GET", "/health", None, None);
    assert_eq!(st, 200);
    drop(srv);
    assert_eq!(s.snapshot(), before);
    s.ok(&["verify"]);
}

// Clients that send half a request and stall tie up nothing: others are still served.
#[test]
fn stalled_clients_do_not_block_others() {
    let (_s, srv) = seeded_server();
    let a = srv.addr.as_str();
    let mut stalled = Vec::new();
    for i in 0..24 {
        let mut c = TcpStream::connect(a).unwrap();
        let partial = if i % 2 == 0 {
            // Headers done, body promised and never sent.
            "POST /api/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{\"sku\":".to_string()
        } else {
            // Half a header line.
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Half: abc".to_string()
        };
        c.write_all(partial.as_bytes()).unwrap();
        stalled.push(c);
    }
    for _ in 0..5 {
        let (st, _) = call(a, "GET", "/health", None, None);
        assert_eq!(st, 200);
        let (st, v) = call(
            a,
            "POST",
            "/api/transactions",
            None,
            Some(&json!({"sku": "A-1", "type": "Receive", "quantity": 1})),
        );
        assert_eq!(st, 201, "{v}");
    }
    drop(stalled);
}

// With a token configured, writes need it (401 otherwise), reads stay open.
#[test]
fn writes_need_the_token_when_one_is_set() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Widget", "--initial", "5"]);
    let cfg = s.path("ora.toml");
    let token = "s3cret-token-for-tests-0123";
    std::fs::write(&cfg, format!("[server]\ntoken = \"{token}\"\n")).unwrap();
    let srv = Server::start(&s, &["--config", cfg.to_str().unwrap()]);
    let a = srv.addr.as_str();
    let body = json!({"sku": "A-1", "type": "Receive", "quantity": 1});
    let (st, v) = call(a, "POST", "/api/transactions", None, Some(&body));
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthorized")));
    let (st, _) = call(
        a,
        "POST",
        "/api/transactions",
        Some("wrong-token-wrong-token"),
        Some(&body),
    );
    assert_eq!(st, 401);
    let (st, _) = call(
        a,
        "POST",
        "/api/transactions",
        Some(&token[..token.len() - 1]),
        Some(&body),
    );
    assert_eq!(st, 401);
    let (st, _) = call(
        a,
        "PUT",
        "/api/workflows/w",
        None,
        Some(&json!({"status": "x"})),
    );
    assert_eq!(st, 401);
    let (st, _) = call(a, "GET", "/api/inventory", None, None);
    assert_eq!(st, 200);
    let (st, v) = call(a, "POST", "/api/transactions", Some(token), Some(&body));
    assert_eq!(st, 201, "{v}");
    drop(srv);
    assert_eq!(
        query_i64(&s.db, "SELECT current_quantity FROM inventory_current"),
        6
    );
    // The token never reaches the log.
    let out = s.run(&["--config", cfg.to_str().unwrap(), "-vv", "stock", "list"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(token));
}

// Regression: a 1-byte chunk, then a chunk size of 2^64-1, overflowed the body limit check and
// panicked the connection thread before any authorization, and its connection slot was never
// given back: 256 such requests answered every later client 503. Each is now refused with a
// 4xx, and /health still answers after 300 of them; signed and over-long sizes are refused too.
#[test]
fn overflowing_chunk_sizes_cannot_wedge_the_server() {
    let s = seeded();
    let srv = Server::start(&s, &[]);
    let a = srv.addr.as_str();
    let attack = |size: &str| {
        let req = format!(
            "POST /api/transactions HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\n{{\r\n{size}\r\n"
        );
        crate::util::raw(a, req.as_bytes()).expect("send")
    };
    for i in 0..300 {
        let (st, text) = attack("ffffffffffffffff");
        assert!((400..500).contains(&st), "attack {i}: {st} {text}");
    }
    for size in ["+5", " 5", "5 ", "0x5", "10000000000000000", "-1"] {
        let (st, text) = attack(size);
        assert!((400..500).contains(&st), "chunk size {size:?}: {st} {text}");
    }
    let (st, _) = call(a, "GET", "/health", None, None);
    assert_eq!(st, 200, "the server is wedged");
}

// DNS rebinding: a web page the operator visits can make the browser send requests to
// 127.0.0.1 under a name of its own (`Host: attacker.example`). Such a request is refused
// (421) before it reaches any route, a write among them; missing or doubled Host headers are
// refused (400); loopback names, IP addresses and the names in `[server] hosts` are served.
#[test]
fn requests_for_foreign_host_names_are_refused() {
    let s = seeded();
    let cfg = s.path("ora.toml");
    std::fs::write(&cfg, "[server]\nhosts = [\"ora.warehouse.lan\"]\n").unwrap();
    let srv = Server::start(&s, &["--config", cfg.to_str().unwrap()]);
    let a = srv.addr.as_str();
    let port = a.rsplit(':').next().unwrap();
    let before = s.snapshot();
    let send = |host_lines: &str, method: &str, path: &str, body: &str| {
        let req = format!(
            "{method} {path} HTTP/1.1\r\n{host_lines}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        raw(a, req.as_bytes()).expect("send").0
    };
    let write = r#"{"sku": "A-1", "type": "Receive", "quantity": 5}"#;
    for host in [
        "attacker.example",
        "attacker.example:80",
        "127.0.0.1.nip.io",
        "ora.warehouse.lan.evil",
    ] {
        assert_eq!(
            send(
                &format!("Host: {host}\r\n"),
                "POST",
                "/api/transactions",
                write
            ),
            421,
            "{host}"
        );
        assert_eq!(
            send(&format!("Host: {host}\r\n"), "GET", "/api/inventory", ""),
            421,
            "{host}"
        );
    }
    assert_eq!(send("", "GET", "/health", ""), 400, "no Host");
    assert_eq!(
        send(
            &format!("Host: {a}\r\nHost: attacker.example\r\n"),
            "GET",
            "/health",
            ""
        ),
        400,
        "two Hosts"
    );
    assert_eq!(
        send("Host: a b\r\n", "GET", "/health", ""),
        400,
        "malformed Host"
    );
    assert_eq!(s.snapshot(), before, "a refused write changed something");
    for host in [
        a.to_string(),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        "ora.warehouse.lan".into(),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            send(&format!("Host: {host}\r\n"), "GET", "/health", ""),
            200,
            "{host}"
        );
    }
    assert_eq!(
        send(
            &format!("Host: {a}\r\n"),
            "POST",
            "/api/transactions",
            write
        ),
        201
    );
    let err = s.fails(
        &[
            "--config",
            s.path("bad.toml").to_str().unwrap(),
            "stock",
            "list",
        ],
        2,
    );
    assert!(err.contains("bad.toml"), "{err}");
    std::fs::write(s.path("bad.toml"), "[server]\nhosts = [\"evil host\"]\n").unwrap();
    let err = s.fails(
        &[
            "--config",
            s.path("bad.toml").to_str().unwrap(),
            "stock",
            "list",
        ],
        2,
    );
    assert!(err.contains("server.hosts"), "{err}");
}

// A query parameter a route does not take, one given twice, or a yes/no that is neither, is
// refused with 400 naming what the route takes: a typo never answers the whole ledger.
#[test]
fn unknown_and_repeated_query_parameters_are_refused_by_name() {
    let (s, srv) = seeded_server();
    let a = srv.addr.as_str();
    let before = s.snapshot();
    // A bad value is the value's fault: 422, as every other bad value of the API.
    for target in ["/api/inventory?low=banana", "/api/products?low=2"] {
        let (code, v) = call(a, "GET", target, None, None);
        assert_eq!(code, 422, "{target}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or_default()
                .contains("low must be"),
            "{v}"
        );
    }
    for (target, says) in [
        ("/api/transactions?skuu=A-1", "\"skuu\""),
        ("/api/transactions?sku=A-1&sku=B-2", "given twice"),
        ("/api/kpis?day=3", "\"day\""),
        ("/api/audit?sku=A-1&user=x", "\"user\""),
        ("/health?verbose=1", "\"verbose\""),
        ("/api/inventory/A-1?x=1", "none"),
        ("/?page=2", "\"page\""),
    ] {
        let (code, v) = call(a, "GET", target, None, None);
        let msg = v["error"].as_str().unwrap_or_default().to_string();
        assert_eq!(code, 400, "{target}: {v}");
        assert!(msg.contains(says), "{target}: {msg}");
        assert!(
            msg.contains("takes these query parameters"),
            "{target}: {msg}"
        );
    }
    let (_, v) = call(a, "GET", "/api/transactions?skuu=A-1", None, None);
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(msg.contains("sku, since, limit"), "{msg}");
    // A POST takes its values in the body, none in the query.
    let (code, v) = call(
        a,
        "POST",
        "/api/transactions?sku=A-1",
        None,
        Some(&serde_json::json!({"sku": "A-1", "type": "Receive", "quantity": 1})),
    );
    assert_eq!(code, 400, "{v}");
    assert_eq!(s.snapshot(), before, "nothing was written");
    // The parameters a route takes still work, and a yes/no reads its words.
    for ok in [
        "/api/transactions?sku=A-1&limit=5",
        "/api/inventory?low=yes",
        "/api/inventory?low=0",
        "/api/products?low=true",
        "/api/kpis?days=3",
    ] {
        assert_eq!(call(a, "GET", ok, None, None).0, 200, "{ok}");
    }
}

// An unknown sku that differs from a product's only in case or by a typo is answered "did
// you mean", never with advice to create a second product; a missing route lists the routes.
#[test]
fn near_skus_get_did_you_mean_and_a_missing_route_lists_the_routes() {
    let (s, srv) = seeded_server();
    let a = srv.addr.as_str();
    let before = s.snapshot();
    for sku in ["a-1", "A-11", "A1"] {
        let (code, v) = call(
            a,
            "POST",
            "/api/transactions",
            None,
            Some(&serde_json::json!({"sku": sku, "type": "Receive", "quantity": 1})),
        );
        let msg = v["error"].as_str().unwrap_or_default();
        assert_eq!(code, 404, "{sku}: {v}");
        assert!(
            msg.contains("did you mean \"A-1\"") && !msg.contains("product add"),
            "{sku}: {msg}"
        );
    }
    let (code, v) = call(a, "GET", "/api/inventory/b-2", None, None);
    assert_eq!(code, 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("did you mean \"B-2\""),
        "{v}"
    );
    let (code, v) = call(
        a,
        "POST",
        "/api/transactions",
        None,
        Some(&serde_json::json!({"sku": "ZZ-900", "type": "Receive", "quantity": 1})),
    );
    assert_eq!(code, 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("product add ZZ-900"),
        "{v}"
    );
    let err = s.fails(&["stock", "receive", "a-1", "1"], 2);
    assert!(err.contains("did you mean \"A-1\""), "{err}");
    assert_eq!(s.snapshot(), before, "nothing was written");
    let (code, v) = call(a, "GET", "/api/inventroy", None, None);
    let msg = v["error"].as_str().unwrap_or_default();
    assert_eq!(code, 404);
    assert!(
        msg.contains("GET /api/inventory;") && msg.contains("GET, POST /api/transactions"),
        "{msg}"
    );
}
