//! Regression for "one GET /health drops SQLite's locks inside `ora serve`": a request that
//! made the server open the database file itself (to read its header) closed that descriptor
//! and so dropped every POSIX lock the server's connections held; the next `sqlite3` read then
//! deleted the WAL the server kept writing into, and acknowledged movements were lost. Here
//! every endpoint and the operations run beside a server are exercised under writes, each
//! followed by a `sqlite3` read, and the server must keep its locks, its WAL and every
//! acknowledged movement.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::util::{call, have, http, skip, Sandbox, Server};

/// Whether process `pid` holds a POSIX lock on the file with inode `ino` (`/proc/locks` lines
/// read `N: POSIX ADVISORY READ PID MAJ:MIN:INODE START END`).
fn holds_lock(pid: u32, ino: u64) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
    let pid = pid.to_string();
    let ino = format!(":{ino}");
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().filter(|w| *w != "->").collect();
        f.get(1) == Some(&"POSIX") && f.get(4) == Some(&pid.as_str()) && {
            f.get(5).is_some_and(|id| id.ends_with(&ino))
        }
    })
}

/// `holds_lock`, read a few times: a read of `/proc/locks` can miss an entry while other
/// processes change theirs (other tests run in parallel), but a lock that was really dropped
/// stays dropped (SQLite believes it still holds it and never takes it again).
fn keeps_lock(pid: u32, ino: u64) -> bool {
    (0..10).any(|i| {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        holds_lock(pid, ino)
    })
}

/// Descriptors of `pid` that point at deleted files.
fn deleted_fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the server's descriptors")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .filter(|t| t.ends_with("(deleted)"))
        .collect()
}

struct Watch<'a> {
    s: &'a Sandbox,
    pid: u32,
    ino: u64,
}

impl Watch<'_> {
    /// After `what`: a neighbour's `sqlite3` read, then the server must still hold its lock
    /// on the database file and have no deleted file open, and the WAL must be on disk.
    fn after(&self, what: &str) {
        let out = std::process::Command::new("sqlite3")
            .arg(&self.s.db)
            .arg("SELECT count(*) FROM inventory_transactions")
            .output()
            .expect("run sqlite3");
        assert!(
            out.status.success(),
            "sqlite3 read after {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            keeps_lock(self.pid, self.ino),
            "after {what}: ora serve (pid {}) no longer holds its lock on the database file",
            self.pid
        );
        let deleted = deleted_fds(self.pid);
        assert!(
            deleted.is_empty(),
            "after {what}: ora serve writes into deleted files {deleted:?}"
        );
        let mut wal = self.s.db.as_os_str().to_os_string();
        wal.push("-wal");
        assert!(
            Path::new(&wal).exists(),
            "after {what}: the WAL was deleted"
        );
    }
}

// Every page, API call and neighbouring operation leaves serve's locks alone, and nothing
// acknowledged is lost.
#[test]
fn neighbour_reads_and_operations_keep_serve_locks_and_every_movement() {
    if !have("sqlite3") {
        skip(
            "neighbour_reads_and_operations_keep_serve_locks_and_every_movement",
            "no sqlite3 CLI (scripts/test.sh installs it)",
        );
        return;
    }
    let s = Sandbox::new();
    for sku in ["L-1", "L-2"] {
        s.ok(&["product", "add", sku, "Lamp", "--initial", "5"]);
    }
    let srv = Server::start(&s, &[]);
    let a = srv.addr.clone();
    let w = Watch {
        s: &s,
        pid: srv.child.id(),
        ino: std::fs::metadata(&s.db).unwrap().ino(),
    };
    w.after("start");

    // Two clients write receipts the whole time; every acknowledged request id is kept.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (a, acked, stop) = (a.clone(), Arc::clone(&acked), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("w{t}-{i}");
                    let body =
                        json!({"sku": "L-1", "type": "Receive", "quantity": 1, "request_id": id});
                    let (st, _) = call(&a, "POST", "/api/transactions", None, Some(&body));
                    if st == 201 {
                        acked.lock().unwrap().insert(id);
                    }
                    i += 1;
                }
            })
        })
        .collect();

    let get = |path: &str| {
        let (st, _, _) = http(&a, "GET", path, &[], b"").expect("GET");
        assert!(st < 500, "GET {path}: {st}");
        w.after(&format!("GET {path}"));
    };
    for path in [
        "/",
        "/health",
        "/metrics",
        "/api/inventory",
        "/api/inventory?low=1",
        "/api/inventory/L-1",
        "/api/transactions?sku=L-1&limit=5",
        "/api/workflows",
        "/api/backups",
        "/api/search?q=lamp",
    ] {
        get(path);
    }
    let send = |method: &str, path: &str, body: serde_json::Value| {
        let (st, v) = call(&a, method, path, None, Some(&body));
        assert!(st < 300, "{method} {path}: {st} {v}");
        if let Some(id) = body["request_id"].as_str() {
            acked.lock().unwrap().insert(id.to_string());
        }
        w.after(&format!("{method} {path}"));
    };
    send("POST", "/api/backups", json!({}));
    send(
        "POST",
        "/api/transactions",
        json!({"sku": "L-2", "type": "Ship", "quantity": 1, "request_id": "api-ship"}),
    );
    send(
        "POST",
        "/api/products",
        json!({"sku": "L-3", "product_name": "Desk lamp", "initial_quantity": 2}),
    );
    send(
        "POST",
        "/api/shipments",
        json!({"order_number": "SO-9", "items": [{"sku": "L-3", "quantity": 1}]}),
    );
    send(
        "PUT",
        "/api/workflows/nightly",
        json!({"status": "running"}),
    );
    send(
        "PUT",
        "/api/kpis/2026-12-01",
        json!({"orders_today": 3, "system_status": "green"}),
    );
    get("/health");

    // Operations as other processes, beside the running server.
    let cli: &[&[&str]] = &[
        &["health"],
        &["health", "--full"],
        &["backup"],
        &["backups", "list"],
        &["backups", "verify", "--all"],
        &["maintain", "daily"],
        &["metrics"],
        &["verify"],
        &["dump", "--out", "dump.sql"],
        &["stock", "receive", "L-2", "1", "--request-id", "cli-1"],
    ];
    for args in cli {
        let out = s.run(args);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "ora {args:?}: {:?} {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "stock" {
            assert!(out.status.success());
            acked.lock().unwrap().insert("cli-1".into());
        }
        w.after(&format!("ora {}", args.join(" ")));
    }
    get("/");
    get("/health");

    stop.store(true, Ordering::Relaxed);
    for t in writers {
        t.join().unwrap();
    }
    w.after("the last write");
    // A kill at the worst moment: what was acknowledged must be in the file anyway.
    let pid = srv.child.id();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    drop(srv);

    let conn = rusqlite::Connection::open(&s.db).unwrap();
    let present: BTreeSet<String> = conn
        .prepare("SELECT request_id FROM inventory_transactions WHERE request_id IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let acked = acked.lock().unwrap();
    let missing: Vec<&String> = acked.difference(&present).collect();
    assert!(
        acked.len() > 20,
        "the writers were acknowledged {} times",
        acked.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    drop(conn);
    s.ok(&["verify"]);
}
