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
        v["status"], "warn",
        "a fresh database has no backup yet: {v}"
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
