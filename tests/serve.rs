//! `ora serve`: the README's first command works in an empty directory, one server per
//! database, a non-loopback bind needs a token, SIGTERM stops it cleanly.

use crate::util::{free_port, http, Sandbox, Server};

// In an empty directory `ora serve` creates the database and answers /health; SIGTERM exits 0.
#[test]
fn serve_in_an_empty_directory_creates_the_database_and_stops_on_sigterm() {
    let s = Sandbox::empty();
    let mut server = Server::start(&s, &[]);
    assert!(s.db.exists());
    let (status, head, body) = http(&server.addr, "GET", "/health", &[], b"").unwrap();
    assert_eq!(status, 200);
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(
        v["status"], "ok",
        "a brand-new database has nothing to back up yet: {v}"
    );
    let (status, _, body) = http(&server.addr, "GET", "/no/such/route", &[], b"").unwrap();
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"].is_string() && v["code"].is_string());
    let exit = server.sigterm();
    assert_eq!(exit.code(), Some(0));
    s.ok(&["verify"]);
}

// A second server on the same database is refused and names the first one's pid.
#[test]
fn one_server_per_database() {
    let s = Sandbox::new();
    let server = Server::start(&s, &[]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let err = s.fails(&["serve", "--bind", &addr], 3);
    assert!(err.contains(&format!("pid {}", server.child.id())), "{err}");
}

// Listening beyond loopback without a token is refused before anything is opened.
#[test]
fn non_loopback_bind_without_token_is_refused() {
    let s = Sandbox::empty();
    let err = s.fails(&["serve", "--bind", "0.0.0.0:0"], 2);
    assert!(err.contains("without a token"), "{err}");
    assert!(!s.db.exists());
}

// SIGTERM under write load: requests in flight are answered and every answered movement is in
// the file; nothing committed goes unanswered and nothing answered is missing.
#[test]
fn sigterm_answers_the_requests_in_flight_and_loses_nothing() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Widget"]);
    let count = || {
        crate::util::query_i64(&s.db, "SELECT count(*) FROM inventory_transactions WHERE transaction_type = 'Receive' AND sku = 'A-1'")
    };
    let before = count();
    let mut server = Server::start(&s, &[]);
    let acked = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (addr, acked) = (server.addr.clone(), Arc::clone(&acked));
            std::thread::spawn(move || {
                let body = br#"{"sku":"A-1","type":"Receive","quantity":1}"#;
                let json = [("Content-Type", "application/json")];
                // Until the server stops taking connections.
                while let Ok((status, _, text)) =
                    http(&addr, "POST", "/api/transactions", &json, body)
                {
                    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&text));
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    while acked.load(Ordering::SeqCst) < 200 {
        std::thread::yield_now();
    }
    let exit = server.sigterm();
    assert_eq!(exit.code(), Some(0));
    for c in clients {
        c.join().expect("client");
    }
    assert_eq!((count() - before) as u64, acked.load(Ordering::SeqCst));
    s.ok(&["verify"]);
}
