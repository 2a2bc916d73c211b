//! The PostgreSQL mirror against a real PostgreSQL: concurrent writers mirrored and checked
//! equal, an outage in the middle of a stream, the server killed between send and
//! acknowledgement, bad configuration. No remote configured means no capture at all.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::pg::PgCluster;
use crate::util::{call, query_i64, Rng, Sandbox, Server};

fn config(s: &Sandbox, url: &str) -> String {
    let cfg = s.path("ora.toml");
    std::fs::write(
        &cfg,
        format!(
            "[remote]\nsite_id = \"wh-test\"\nbatch = 500\n\n[remote.postgres]\nurl = {url:?}\n"
        ),
    )
    .unwrap();
    cfg.to_str().unwrap().to_string()
}

fn products(s: &Sandbox, n: usize) {
    for i in 0..n {
        s.ok(&[
            "product",
            "add",
            &format!("SKU-{i:03}"),
            &format!("Product {i}"),
            "--initial",
            "100",
        ]);
    }
}

/// A `stock apply` child fed `n` movements; returns it (answers on its stdout).
fn writer(s: &Sandbox, cfg: &str, tag: &str, n: usize, skus: usize) -> Child {
    let mut c = s
        .cmd(&["--config", cfg, "stock", "apply"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let tag = tag.to_string();
    std::thread::spawn(move || {
        for i in 0..n {
            let kind = if i % 3 == 2 { "Ship" } else { "Receive" };
            let l = format!("{{\"sku\":\"SKU-{:03}\",\"type\":\"{kind}\",\"quantity\":1,\"request_id\":\"{tag}-{i}\"}}\n", i % skus);
            if stdin.write_all(l.as_bytes()).is_err() {
                break;
            }
        }
    });
    c
}

fn all_ok(c: Child) -> usize {
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = BufReader::new(&out.stdout[..])
        .lines()
        .map(|l| l.unwrap())
        .collect();
    assert!(
        lines.iter().all(|l| l.contains("\"ok\":true")),
        "a movement failed"
    );
    lines.len()
}

/// Waits until the server's forwarder has delivered every change the file holds now (/health
/// caches its facts for a moment, so its lag alone could be from before the last write).
pub fn wait_caught_up(addr: &str, db: &std::path::Path, deadline: Duration) {
    let end = Instant::now() + deadline;
    let written = query_i64(db, "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'");
    loop {
        let (_, v) = call(addr, "GET", "/health", None, None);
        let r = &v["remotes"][0];
        if r["last_seq"].as_i64().is_some_and(|n| n >= written) && r["last_error"].is_null() {
            return;
        }
        assert!(Instant::now() < end, "the forwarder did not catch up: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check_equal(s: &Sandbox, cfg: &str) -> serde_json::Value {
    let v = s.json(&["--config", cfg, "sync", "postgres", "--once", "--check"]);
    assert_eq!(v["equal"], true, "{v}");
    v
}

// 10,000 movements from 4 concurrent writers reach PostgreSQL through the running server's
// forwarder, and --check finds both sides equal.
#[test]
fn concurrent_writers_are_mirrored_exactly() {
    let Some(pg) = PgCluster::start("concurrent_writers_are_mirrored_exactly") else {
        return;
    };
    let s = Sandbox::new();
    products(&s, 40);
    let cfg = config(&s, &pg.url());
    let srv = Server::start(&s, &["--config", &cfg]);
    let writers: Vec<Child> = (0..4)
        .map(|w| writer(&s, &cfg, &format!("w{w}"), 2_500, 40))
        .collect();
    let total: usize = writers.into_iter().map(all_ok).sum();
    assert_eq!(total, 10_000);
    wait_caught_up(&srv.addr, &s.db, Duration::from_secs(120));
    drop(srv);
    let v = check_equal(&s, &cfg);
    let ledger = v["check"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "inventory_transactions")
        .unwrap();
    assert_eq!(ledger["remote_rows"], 10_040);
    assert_eq!(
        pg.psql("SELECT count(DISTINCT site_id) FROM ora.inventory_transactions"),
        "1"
    );
    // The outbox was pruned down to what is not yet delivered (nothing).
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM outbox"), 0);
}

// PostgreSQL stops in the middle of a stream: local writes go on, /health reports the target
// down, and once PostgreSQL is back everything arrives once. Then the server is SIGKILLed ten
// times while it forwards: the two sides still end equal.
#[test]
fn outage_and_kills_lose_and_duplicate_nothing() {
    let Some(pg) = PgCluster::start("outage_and_kills_lose_and_duplicate_nothing") else {
        return;
    };
    let s = Sandbox::new();
    products(&s, 20);
    let cfg = config(&s, &pg.url());
    let srv = Server::start(&s, &["--config", &cfg]);
    let first = writer(&s, &cfg, "before", 1_000, 20);
    assert_eq!(all_ok(first), 1_000);
    pg.down();
    let during = writer(&s, &cfg, "during", 1_000, 20);
    assert_eq!(
        all_ok(during),
        1_000,
        "local writes must not wait for PostgreSQL"
    );
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let (st, v) = call(&srv.addr, "GET", "/health", None, None);
        if v["remotes"][0]["last_error"].is_string() {
            assert_eq!(st, 200, "a remote outage is a warning, not a failure: {v}");
            assert!(v["remotes"][0]["lag_rows"].as_i64().unwrap() > 0);
            break;
        }
        assert!(
            Instant::now() < end,
            "the outage never showed on /health: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pg.up();
    wait_caught_up(&srv.addr, &s.db, Duration::from_secs(120));
    drop(srv);
    check_equal(&s, &cfg);

    // Kill the forwarding server at ten different moments.
    let mut rng = Rng(0xFEED_FACE_CAFE_0001);
    for round in 0..10 {
        let mut srv = Server::start(&s, &["--config", &cfg]);
        let w = writer(&s, &cfg, &format!("kill{round}"), 300, 20);
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        srv.child.kill().unwrap();
        srv.child.wait().unwrap();
        assert_eq!(all_ok(w), 300);
    }
    check_equal(&s, &cfg);
    assert_eq!(
        pg.psql("SELECT count(*) FROM ora.inventory_transactions"),
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions").to_string()
    );
}

// Bad configuration: a clear error and exit 3 from `ora sync`, the outbox keeps every change,
// the local store and the server keep working.
#[test]
fn unreachable_or_refusing_postgres_keeps_the_outbox() {
    let Some(pg) = PgCluster::start("unreachable_or_refusing_postgres_keeps_the_outbox") else {
        return;
    };
    let s = Sandbox::new();
    products(&s, 2);
    let nowhere = config(
        &s,
        &format!(
            "postgresql://postgres:x@127.0.0.1:{}/postgres",
            crate::util::free_port()
        ),
    );
    let err = s.fails(&["--config", &nowhere, "sync", "postgres", "--once"], 3);
    assert!(err.contains("PostgreSQL is unreachable"), "{err}");
    // The cron-mode failure is recorded: health no longer says the target is up.
    let h = s.json(&["--config", &nowhere, "health"]);
    assert_eq!(h["remotes"][0]["up"], false, "{h}");
    assert!(
        h["remotes"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("unreachable"),
        "{h}"
    );
    // health --full asks the target live: a warning naming why, not a failure.
    let out = s.ok(&["--config", &nowhere, "health", "--full"]);
    assert!(out.contains("postgres does not answer now"), "{out}");
    s.ok(&["--config", &nowhere, "stock", "receive", "SKU-000", "5"]);
    assert!(
        query_i64(&s.db, "SELECT count(*) FROM outbox") >= 2,
        "the change must wait in the outbox"
    );
    let wrong = config(&s, &pg.url_with_password("not-the-password"));
    let err = s.fails(&["--config", &wrong, "sync", "postgres", "--once"], 3);
    assert!(err.contains("refused the login"), "{err}");
    // The server starts anyway, serves, and says what is wrong.
    let srv = Server::start(&s, &["--config", &wrong]);
    let (st, v) = call(
        &srv.addr,
        "POST",
        "/api/transactions",
        None,
        Some(&serde_json::json!({"sku": "SKU-001", "type": "Receive", "quantity": 1})),
    );
    assert_eq!(st, 201, "{v}");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, v) = call(&srv.addr, "GET", "/health", None, None);
        if let Some(e) = v["remotes"][0]["last_error"].as_str() {
            assert!(e.contains("refused the login"), "{e}");
            assert_eq!(st, 200);
            break;
        }
        assert!(Instant::now() < end, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // /metrics says the same, in lines a Prometheus scraper parses.
    let (st, _, body) = crate::util::http(&srv.addr, "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(st, 200);
    let text = String::from_utf8(body).unwrap();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        assert!(value.parse::<f64>().is_ok(), "not a number in {line}");
        assert!(name.starts_with("ora_"), "{line}");
    }
    assert!(
        text.contains("ora_remote_up{target=\"postgres\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("ora_remote_lag_rows{target=\"postgres\"} "),
        "{text}"
    );
    assert!(
        text.contains("ora_remote_lag_seconds{target=\"postgres\"} "),
        "{text}"
    );
    let outbox = text
        .lines()
        .find_map(|l| l.strip_prefix("ora_outbox_rows "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("ora_outbox_rows");
    assert!(outbox >= 1.0, "{text}");
    drop(srv);
    // Fixed: everything arrives, and the live probe sees the server.
    let good = config(&s, &pg.url());
    check_equal(&s, &good);
    let out = s.ok(&["--config", &good, "health", "--full"]);
    assert!(out.contains("postgres answers (PostgreSQL 15"), "{out}");
}

// Without a remote configured nothing is captured: the outbox stays empty whatever is written.
#[test]
fn no_remote_means_no_capture() {
    let s = Sandbox::new();
    products(&s, 3);
    s.ok(&["stock", "receive", "SKU-001", "4"]);
    let srv = Server::start(&s, &[]);
    let (st, _) = call(
        &srv.addr,
        "POST",
        "/api/transactions",
        None,
        Some(&serde_json::json!({"sku": "SKU-002", "type": "Ship", "quantity": 1})),
    );
    assert_eq!(st, 201);
    drop(srv);
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM outbox"), 0);
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM sync_control"), 0);
}

// Past the outbox cap the health check raises the alarm (exit 1, /health 503), and still no
// change is dropped and no write refused.
#[test]
fn outbox_over_its_cap_raises_the_alarm() {
    let s = Sandbox::new();
    products(&s, 2);
    let cfg = s.path("cap.toml");
    std::fs::write(
        &cfg,
        format!("[remote]\noutbox_cap = 5\n\n[remote.postgres]\nurl = \"postgresql://postgres:x@127.0.0.1:{}/postgres\"\n", crate::util::free_port()),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    s.fails(&["--config", cfg, "sync", "postgres"], 3);
    for _ in 0..10 {
        s.ok(&["--config", cfg, "stock", "receive", "SKU-000", "1"]);
    }
    let out = s.run(&["--config", cfg, "--json", "health"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let msgs: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["message"].as_str())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("the outbox holds 20 undelivered changes (cap 5)")),
        "{msgs:?}"
    );
    assert_eq!(query_i64(&s.db, "SELECT count(*) FROM outbox"), 20);
}

// Drift in the central copy (rows changed or removed there by hand) is found by --check, which
// names the tables and points at --resync; --resync replaces this site's rows and leaves
// another site's alone.
#[test]
fn drift_is_found_by_check_and_repaired_by_resync() {
    let Some(pg) = PgCluster::start("drift_is_found_by_check_and_repaired_by_resync") else {
        return;
    };
    let s = Sandbox::new();
    products(&s, 5);
    let cfg = config(&s, &pg.url());
    check_equal(&s, &cfg);
    pg.psql(
        "DELETE FROM ora.inventory_current WHERE site_id = 'wh-test' AND sku = 'SKU-001';
         UPDATE ora.inventory_current SET current_quantity = 999 WHERE site_id = 'wh-test' AND sku = 'SKU-002';
         INSERT INTO ora.inventory_current (site_id, sku, product_name, current_quantity, reorder_point, last_updated)
              SELECT 'other-site', sku, product_name, current_quantity, reorder_point, last_updated
                FROM ora.inventory_current WHERE site_id = 'wh-test' AND sku = 'SKU-003';",
    );
    let out = s.run(&["--config", &cfg, "sync", "postgres", "--once", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("differ in inventory_current"), "{err}");
    assert!(err.contains("--resync"), "{err}");
    // Syncing again changes nothing (the positions are current): only --resync repairs.
    let again = s.run(&["--config", &cfg, "sync", "postgres", "--once", "--check"]);
    assert_eq!(again.status.code(), Some(1));
    let v = s.json(&["--config", &cfg, "sync", "postgres", "--resync", "--check"]);
    assert_eq!(v["equal"], true, "{v}");
    assert!(v["copied_rows"].as_u64().unwrap() >= 5, "{v}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM ora.inventory_current WHERE site_id = 'other-site'"),
        "1",
        "another site's rows must stay"
    );
}
