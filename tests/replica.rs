//! The continuous replica with real processes, files and disks: set-up and refusals, restore
//! to the newest point, to a time and to just before a movement, SIGKILL in strict and bounded
//! mode, writers outside the server, a plain sqlite3 write, faults of the replica disk (full
//! tmpfs, lazily unmounted loop image, read-only remount, missing directory), and damage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{call, have, is_root, skip, Rng, Sandbox, Server};

const SKUS: [&str; 4] = ["A-1", "B-2", "C-3", "D-4"];

/// A sandbox with four products and an initialised replica in `rep`.
fn with_replica(mode: &str) -> (Sandbox, PathBuf) {
    let s = Sandbox::new();
    for sku in SKUS {
        s.ok(&["product", "add", sku, "Lamp", "--initial", "100"]);
    }
    let rep = s.path("rep");
    std::fs::create_dir(&rep).unwrap();
    s.ok(&["replica", "init", rep.to_str().unwrap(), "--mode", mode]);
    (s, rep)
}

/// The rows of every table a restore must reproduce, as text.
pub(crate) fn content(db: &Path) -> BTreeMap<String, Vec<String>> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open");
    let mut out = BTreeMap::new();
    for (t, order) in [
        ("inventory_current", "sku"),
        ("inventory_transactions", "id"),
        ("shipped_orders", "order_number"),
        ("shipped_items", "id"),
        ("workflows", "name"),
        ("system_kpis", "snapshot_date"),
        ("request_log", "request_id"),
        ("product_vectors", "sku"),
    ] {
        let mut st = conn
            .prepare(&format!("SELECT * FROM {t} ORDER BY {order}"))
            .unwrap();
        let n = st.column_count();
        let rows: Vec<String> = st
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        out.insert(t.to_string(), rows);
    }
    out
}

fn stocks(db: &Path) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare("SELECT sku, current_quantity FROM inventory_current")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn request_ids(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare("SELECT request_id FROM inventory_transactions WHERE request_id IS NOT NULL")
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// `ora restore --from-replica REP ARGS --out OUT` (exit 0 expected); returns OUT.
fn restore_out(s: &Sandbox, rep: &Path, args: &[&str], name: &str) -> PathBuf {
    let out = s.path(name);
    let _ = std::fs::remove_file(&out);
    let mut all = vec!["restore", "--from-replica", rep.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().unwrap()]);
    s.ok(&all);
    out
}

/// Restores the replica's newest point to `name`, asserts it is the live database (`why` if
/// not), and returns the copy.
fn assert_latest_is_live(s: &Sandbox, rep: &Path, name: &str, why: &str) -> PathBuf {
    let out = restore_out(s, rep, &["--latest"], name);
    assert_eq!(content(&out), content(&s.db), "{why}");
    out
}

fn generations(rep: &Path) -> usize {
    std::fs::read_dir(rep)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("gen-")
                && e.path().join("base.json").exists()
        })
        .count()
}

fn replica_json(addr: &str) -> serde_json::Value {
    let (_, v) = call(addr, "GET", "/health", None, None);
    v["replica"].clone()
}

/// Waits until /health says the replica holds every local commit, in a report gathered after
/// the call (the server keeps its report for a second, which could be from before the last
/// write).
fn wait_caught_up(addr: &str) -> serde_json::Value {
    let since = chrono::Utc::now().timestamp_millis();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = call(addr, "GET", "/health", None, None);
        let r = v["replica"].clone();
        if v["facts"]["gathered_ms"].as_i64() >= Some(since)
            && r["lag_commits"] == 0
            && r["up"] == true
            && r["shipped_seq"].as_i64() == r["local_seq"].as_i64()
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_problem(addr: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = replica_json(addr);
        if r["problem"].is_string() {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no replica problem was reported: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One receipt through the API; 0 when the server did not answer.
fn receive(addr: &str, sku: &str, id: &str) -> u16 {
    let body = json!({"sku": sku, "type": "Receive", "quantity": 1, "request_id": id});
    crate::util::http(
        addr,
        "POST",
        "/api/transactions",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .map_or(0, |(st, _, _)| st)
}

// Set-up refuses what is not an empty directory of its own; the replica alone rebuilds the
// newest point exactly; a foreign or empty replica directory is refused plainly.
#[test]
fn init_refusals_and_the_newest_point() {
    let (s, rep) = with_replica("bounded");
    for i in 0..5 {
        s.ok(&[
            "stock",
            "ship",
            SKUS[i % 4],
            "3",
            "--request-id",
            &format!("cli-{i}"),
        ]);
    }
    s.ok(&[
        "workflow",
        "set",
        "nightly",
        "done",
        "--details",
        "all good",
    ]);
    s.ok(&["shipment", "record", "SO-1", "--item", "A-1:2"]);
    s.ok(&["kpi", "record", "2026-12-01", "--orders-today", "4"]);
    // Ordinary operations write too (ops_log, request_log pruning, VACUUM): all captured, so
    // none of them makes the replica take a new base.
    std::fs::create_dir(s.path("bk")).unwrap();
    let bk = s.path("bk");
    for args in [
        &["maintain", "daily"][..],
        &["maintain", "weekly"],
        &["health"],
        &["verify"],
        &["backup", "--dir", bk.to_str().unwrap()],
        &["metrics"],
    ] {
        let out = s.run(args);
        assert!(out.status.code().is_some_and(|c| c <= 1), "{args:?}");
    }
    assert_eq!(generations(&rep), 1, "an ordinary command was not captured");
    let out = assert_latest_is_live(
        &s,
        &rep,
        "latest.db",
        "the newest point is the live database",
    );
    let v = Command::new(crate::util::ORA)
        .args(["--db", out.to_str().unwrap(), "verify"])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));

    // Not empty: refused, nothing written.
    let busy = s.path("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("photo.jpg"), b"x").unwrap();
    let err = s.fails(&["replica", "init", busy.to_str().unwrap()], 2);
    assert!(err.contains("not empty"), "{err}");
    assert!(!busy.join("ora-replica.json").exists());
    // Missing: refused.
    let err = s.fails(&["replica", "init", s.path("nope").to_str().unwrap()], 2);
    assert!(err.contains("does not exist"), "{err}");
    // Another database's replica.
    let other = Sandbox::new();
    let err = other.fails(&["replica", "init", rep.to_str().unwrap()], 2);
    assert!(err.contains("another database"), "{err}");
    // A configured directory that is an empty mount point, or another database's replica.
    let empty = s.path("empty");
    std::fs::create_dir(&empty).unwrap();
    for (dir, says) in [
        (&empty, "not this database's replica"),
        (&rep, "another database"),
    ] {
        let cfg = other.path("ora.toml");
        std::fs::write(&cfg, format!("[replica]\ndir = \"{}\"\n", dir.display())).unwrap();
        let h = other.run(&["--config", cfg.to_str().unwrap(), "--json", "health"]);
        let v: serde_json::Value = serde_json::from_slice(&h.stdout).unwrap();
        let msg = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == "replica")
            .map(|f| f["message"].to_string())
            .unwrap_or_default();
        assert!(
            msg.contains(says) || msg.contains("not set up"),
            "{dir:?}: {msg}"
        );
    }
    assert!(
        !empty.join("ora-replica.json").exists(),
        "nothing is written into a foreign dir"
    );
    // Bad arguments.
    s.fails(
        &["restore", "--from-replica", rep.to_str().unwrap(), "--yes"],
        2,
    );
    s.fails(
        &[
            "restore",
            "--from-replica",
            rep.to_str().unwrap(),
            "--at",
            "yesterday-ish",
            "--yes",
        ],
        2,
    );
    s.fails(
        &[
            "restore",
            "--from-replica",
            rep.to_str().unwrap(),
            "--before-movement",
            "-3",
            "--yes",
        ],
        2,
    );
    s.fails(
        &[
            "restore",
            "--from-replica",
            rep.to_str().unwrap(),
            "--at",
            "1999-01-01 00:00",
            "--yes",
        ],
        2,
    );
    s.fails(
        &[
            "replica",
            "init",
            rep.to_str().unwrap(),
            "--mode",
            "eventually",
        ],
        2,
    );
}

// While clients write, the stock of every sku is noted at 20 moments; restoring to each moment
// (by time and by ledger id) gives exactly the contents the live database had then.
#[test]
fn point_in_time_restores_give_each_recorded_state() {
    let (s, rep) = with_replica("bounded");
    let srv = Server::start(&s, &[]);
    let addr = srv.addr.clone();
    let gate = Arc::new(RwLock::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (addr, gate, stop) = (addr.clone(), Arc::clone(&gate), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut rng = Rng(t + 11);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let _g = gate.read().unwrap();
                    let sku = SKUS[rng.below(4) as usize];
                    let kind = if rng.below(3) == 0 { "Ship" } else { "Receive" };
                    let body = json!({"sku": sku, "type": kind, "quantity": 1 + rng.below(2), "request_id": format!("t{t}-{i}")});
                    call(&addr, "POST", "/api/transactions", None, Some(&body));
                    i += 1;
                }
            })
        })
        .collect();
    let mut moments = Vec::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(60));
        let _pause = gate.write().unwrap();
        let snap = content(&s.db);
        let max_id: i64 = crate::util::query_i64(
            &s.db,
            "SELECT coalesce(max(id), 0) FROM inventory_transactions",
        );
        std::thread::sleep(Duration::from_millis(3));
        let at = chrono::Utc::now();
        std::thread::sleep(Duration::from_millis(3));
        moments.push((at, max_id, snap));
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    wait_caught_up(&addr);
    for (i, (at, max_id, snap)) in moments.iter().enumerate() {
        let t = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let out = restore_out(&s, &rep, &["--at", &t], &format!("at-{i}.db"));
        assert_eq!(&content(&out), snap, "moment {i} at {t}");
        let out = restore_out(
            &s,
            &rep,
            &["--before-movement", &(max_id + 1).to_string()],
            &format!("before-{i}.db"),
        );
        let got = content(&out);
        assert_eq!(
            got["inventory_transactions"],
            snap["inventory_transactions"],
            "before movement {}",
            max_id + 1
        );
        assert_eq!(
            got["inventory_current"],
            snap["inventory_current"],
            "before movement {}",
            max_id + 1
        );
    }
    // --before-movement lists what came after, so it can be entered again.
    let (_, max_id, _) = &moments[10];
    let listed = s.json(&[
        "restore",
        "--from-replica",
        rep.to_str().unwrap(),
        "--before-movement",
        &(max_id + 1).to_string(),
        "--out",
        s.path("listed.db").to_str().unwrap(),
    ]);
    let later: Vec<i64> = listed["later_movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    let total: i64 = crate::util::query_i64(&s.db, "SELECT max(id) FROM inventory_transactions");
    assert_eq!(later, ((max_id + 1)..=total).collect::<Vec<_>>());
    assert!(listed["later_movements"][0]["request_id"].is_string());
}

// Strict mode: 8 clients write through `ora serve`, which is SIGKILLed at 20 random moments;
// the database rebuilt from the replica alone (the live file deleted) has every acknowledged
// movement, once.
#[test]
fn strict_mode_keeps_every_acknowledged_movement_across_kills() {
    let (s, rep) = with_replica("strict");
    let addr = Arc::new(RwLock::new(String::new()));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let (addr, acked, stop) = (Arc::clone(&addr), Arc::clone(&acked), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let a = addr.read().unwrap().clone();
                    if a.is_empty() {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    let id = format!("s{t}-{i}");
                    i += 1;
                    let body = json!({"sku": SKUS[t % 4], "type": "Receive", "quantity": 1, "request_id": id});
                    let ok = crate::util::http(&a, "POST", "/api/transactions", &[("Content-Type", "application/json")], body.to_string().as_bytes())
                        .is_ok_and(|(st, _, _)| st == 201);
                    if ok {
                        acked.lock().unwrap().insert(id);
                    }
                }
            })
        })
        .collect();
    let mut rng = Rng(97);
    for _ in 0..20 {
        let srv = Server::start(&s, &[]);
        *addr.write().unwrap() = srv.addr.clone();
        std::thread::sleep(Duration::from_millis(50 + rng.below(250)));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(srv.child.id() as i32, libc::SIGKILL) };
        *addr.write().unwrap() = String::new();
        drop(srv);
        // At this instant the live disk could die: the replica alone must hold everything
        // acknowledged so far.
        let acked_now = acked.lock().unwrap().clone();
        let out = restore_out(&s, &rep, &["--latest"], "at-kill.db");
        let present: BTreeSet<String> = request_ids(&out).into_iter().collect();
        let lost: Vec<&String> = acked_now.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "acknowledged but not on the replica at a kill: {lost:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "only {} writes were acknowledged",
        acked.len()
    );
    // The live disk is gone.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", s.db.display()));
    }
    s.ok(&[
        "restore",
        "--from-replica",
        rep.to_str().unwrap(),
        "--latest",
        "--yes",
    ]);
    let ids = request_ids(&s.db);
    let present: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), present.len(), "a movement is duplicated");
    let lost: Vec<&String> = acked.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not in the replica: {lost:?}"
    );
    s.ok(&["verify"]);
}

// Bounded mode: after SIGKILL the replica restores to a prefix of the live history; after a
// restart it catches up to the live database exactly, without a new base.
#[test]
fn bounded_mode_restores_a_prefix_after_a_kill_and_catches_up() {
    let (s, rep) = with_replica("bounded");
    let srv = Server::start(&s, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (a, stop) = (srv.addr.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    receive(&a, SKUS[t % 4], &format!("b{t}-{i}"));
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGKILL) };
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    drop(srv);
    let gens = generations(&rep);
    let out = restore_out(&s, &rep, &["--latest"], "prefix.db");
    let (live, got) = (content(&s.db), content(&out));
    let (lt, gt) = (
        &live["inventory_transactions"],
        &got["inventory_transactions"],
    );
    assert!(
        gt.len() <= lt.len() && gt[..] == lt[..gt.len()],
        "the replica is not a prefix of the ledger"
    );
    assert!(
        gt.len() > 10,
        "the replica followed ({} of {} movements)",
        gt.len(),
        lt.len()
    );
    let srv = Server::start(&s, &[]);
    wait_caught_up(&srv.addr);
    assert_latest_is_live(&s, &rep, "caught-up.db", "caught up after the outage");
    assert_eq!(generations(&rep), gens, "catching up needed no new base");
    // The replica's share of the writer's time is on /metrics: each captured group is timed.
    let captured = |addr: &str| {
        let (st, _, body) = crate::util::http(addr, "GET", "/metrics", &[], b"").unwrap();
        let text = String::from_utf8_lossy(&body).into_owned();
        let n = text
            .lines()
            .find_map(|l| l.strip_prefix("ora_writer_capture_seconds_count "))
            .and_then(|n| n.trim().parse::<f64>().ok());
        assert_eq!(st, 200);
        n.unwrap_or_else(|| panic!("no capture count on /metrics: {text}"))
    };
    let before = captured(&srv.addr);
    receive(&srv.addr, SKUS[0], "after-catch-up");
    assert!(
        captured(&srv.addr) > before,
        "the movement's group was not timed"
    );
}

// Writers outside the server are in the replica: CLI writes while serve is down, a weekly
// maintenance with a forced VACUUM, `ora restore` of a backup; a write by the plain sqlite3
// shell followed by its checkpoint is detected and answered with a new base.
/// The server and CLI commands take turns appending to one segment (each process has its own
/// append end, and the space allotted ahead of the records does not change the file's size):
/// each notices the other's records and continues after them, with no new base.
#[test]
fn a_server_and_cli_writers_take_turns_in_one_segment() {
    for mode in ["bounded", "strict"] {
        let (s, rep) = with_replica(mode);
        let srv = Server::start(&s, &[]);
        for round in 0..3 {
            assert_eq!(receive(&srv.addr, "A-1", &format!("{mode}-{round}")), 201);
            wait_caught_up(&srv.addr);
            s.ok(&["stock", "receive", "B-2", "1"]);
            s.ok(&["stock", "ship", "C-3", "1"]);
        }
        assert_eq!(receive(&srv.addr, "A-1", &format!("{mode}-last")), 201);
        wait_caught_up(&srv.addr);
        assert_eq!(generations(&rep), 1, "{mode}: a new base was taken");
        assert_latest_is_live(&s, &rep, &format!("{mode}.db"), mode);
    }
}

/// A power cut in the middle of an append leaves some of its sectors unwritten: zeros inside
/// the record, in the space allotted ahead of it. That is an append never acknowledged: a
/// restore gives the point before it, and the next write carries the replica on. The same
/// record with one flipped byte instead is damage, and a restore refuses it.
#[test]
fn a_torn_append_is_cut_and_a_flipped_byte_in_the_same_place_is_damage() {
    for torn in [true, false] {
        let (s, rep) = with_replica("bounded");
        s.ok(&["stock", "receive", "A-1", "1"]);
        let before = content(&s.db);
        let seg = walk(&rep)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".seg"))
            .max()
            .expect("a segment");
        let start = crate::util::written_len(&std::fs::read(&seg).unwrap());
        // One transaction of 300 movements: one record over many sectors.
        let csv = s.path("moves.csv");
        let rows: String = (0..300)
            .map(|i| format!("B-2,Receive,{}\n", i + 1))
            .collect();
        std::fs::write(&csv, format!("sku,type,quantity\n{rows}")).unwrap();
        s.ok(&["stock", "import", csv.to_str().unwrap()]);
        let mut b = std::fs::read(&seg).unwrap();
        let end = crate::util::written_len(&b);
        assert!(end - start > 8 * 512, "{start}..{end}");
        let mid = (start + end) / 2;
        if torn {
            let sector = mid - mid % 512;
            b[sector..sector + 512].fill(0);
        } else {
            b[mid] ^= 0x20;
        }
        std::fs::write(&seg, &b).unwrap();
        let out = s.path("out.db");
        let res = s.run(&[
            "restore",
            "--from-replica",
            rep.to_str().unwrap(),
            "--latest",
            "--out",
            out.to_str().unwrap(),
        ]);
        if !torn {
            assert_ne!(res.status.code(), Some(0), "restore used a damaged record");
            crate::util::assert_clean_error(&String::from_utf8_lossy(&res.stderr));
            assert!(!out.exists());
            continue;
        }
        assert_eq!(res.status.code(), Some(0), "{res:?}");
        assert_eq!(content(&out), before, "the point before the torn append");
        s.ok(&["stock", "receive", "C-3", "1"]);
        assert_latest_is_live(&s, &rep, "again.db", "the replica carried on");
    }
}

#[test]
fn writers_outside_the_server_and_a_foreign_write_are_in_the_replica() {
    if !have("sqlite3") {
        skip(
            "writers_outside_the_server_and_a_foreign_write_are_in_the_replica",
            "no sqlite3 CLI (scripts/test.sh installs it)",
        );
        return;
    }
    let (s, rep) = with_replica("bounded");
    let cfg = s.path("ora.toml");
    std::fs::write(&cfg, "[maintenance]\nvacuum_free_percent = 0\n").unwrap();
    s.ok(&["stock", "receive", "A-1", "5"]);
    std::fs::create_dir(s.path("bk")).unwrap();
    s.ok(&["backup", "--dir", s.path("bk").to_str().unwrap()]);
    s.ok(&["stock", "ship", "B-2", "7"]);
    s.ok(&[
        "--config",
        cfg.to_str().unwrap(),
        "maintain",
        "weekly",
        "--vacuum",
    ]);
    s.ok(&["stock", "receive", "C-3", "9"]);
    assert_latest_is_live(&s, &rep, "after-cli.db", "CLI writes and VACUUM");
    let backup = std::fs::read_dir(s.path("bk"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".db.gz"))
        .unwrap();
    s.ok(&["restore", backup.to_str().unwrap(), "--yes"]);
    assert_latest_is_live(&s, &rep, "after-restore.db", "ora restore");
    // The plain sqlite3 shell changes a name and checkpoints, while a server runs.
    let srv = Server::start(&s, &[]);
    wait_caught_up(&srv.addr);
    let gens = generations(&rep);
    let st = Command::new("sqlite3")
        .arg(&s.db)
        .arg("UPDATE inventory_current SET product_name = 'Renamed by hand' WHERE sku = 'D-4'; PRAGMA wal_checkpoint(TRUNCATE);")
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while generations(&rep) == gens {
        assert!(
            Instant::now() < deadline,
            "the foreign write was not answered with a new base"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    receive(&srv.addr, "D-4", "after-foreign");
    wait_caught_up(&srv.addr);
    assert_latest_is_live(
        &s,
        &rep,
        "after-foreign.db",
        "the foreign write is in the replica",
    );
    let (_, v) = call(&srv.addr, "GET", "/health", None, None);
    assert_eq!(v["replica"]["problem"], serde_json::Value::Null, "{v}");
    let logged = crate::util::query_i64(&s.db, "SELECT count(*) FROM ops_log WHERE kind = 'replica_base' AND details LIKE '%another program%'");
    assert!(logged >= 1, "the gap is in ops_log");
    s.ok(&["replica", "verify"]);
}

// Refused work leaves nothing in the replica: movements, batches and import rows refused in
// the middle of a group are rolled back to their savepoints, and the replica (which records
// each commit from SQLite's pre-update hook, blind to rollbacks but through ora's savepoints)
// must hold exactly what committed. Concurrent clients make groups that mix both.
#[test]
fn refused_work_inside_a_group_leaves_nothing_in_the_replica() {
    let (s, rep) = with_replica("bounded");
    let srv = Server::start(&s, &[]);
    let tally = Arc::new(Mutex::new((0u32, 0u32)));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (addr, tally) = (srv.addr.clone(), Arc::clone(&tally));
            std::thread::spawn(move || {
                let mut rng = Rng(t + 101);
                for i in 0..60 {
                    let sku = SKUS[rng.below(4) as usize];
                    let good = json!({"sku": sku, "type": "Receive", "quantity": 1 + rng.below(3)});
                    let (path, body) = if rng.below(4) == 0 {
                        // A shipment whose second item is more than the stock: all or
                        // nothing, so its order, first item and movement roll back too; or
                        // one that fits.
                        let qty = if rng.below(2) == 0 { 100_000 } else { 1 };
                        let order = json!({"order_number": format!("SO-{t}-{i}"),
                            "items": [{"sku": sku, "quantity": 1}, {"sku": SKUS[(t as usize + i) % 4], "quantity": qty}]});
                        ("/api/shipments", order)
                    } else {
                        let body = match rng.below(5) {
                            0 => json!({"sku": sku, "type": "Ship", "quantity": 100_000, "request_id": format!("r{t}-{i}")}),
                            1 => json!({"sku": "NO-SUCH", "type": "Receive", "quantity": 1}),
                            2 => json!({"movements": [good, {"sku": sku, "type": "Ship", "quantity": 100_000}], "request_id": format!("b{t}-{i}")}),
                            3 => json!({"movements": [good, good], "request_id": format!("g{t}-{i}")}),
                            _ => json!({"sku": sku, "type": "Receive", "quantity": 1, "request_id": format!("k{t}-{i}")}),
                        };
                        ("/api/transactions", body)
                    };
                    let (st, _) = call(&addr, "POST", path, None, Some(&body));
                    let mut n = tally.lock().unwrap();
                    if st == 201 {
                        n.0 += 1;
                    } else {
                        n.1 += 1;
                    }
                }
            })
        })
        .collect();
    // Beside the server: an import that skips its bad rows, one refused whole, and a product
    // import refused whole.
    let csv = s.path("moves.csv");
    std::fs::write(
        &csv,
        "sku,type,quantity\nA-1,Receive,2\nNO-SUCH,Receive,1\nB-2,Ship,100000\nC-3,Receive,4\n",
    )
    .unwrap();
    let skipped = s.run(&["stock", "import", "--skip-bad", csv.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&skipped.stdout);
    assert!(
        said.contains("2 movements applied") && said.contains("2 rows skipped"),
        "{said}"
    );
    assert!(!s
        .run(&["stock", "import", csv.to_str().unwrap()])
        .status
        .success());
    let products = s.path("products.csv");
    std::fs::write(&products, "sku,name\nE-5,Desk\nA-1,Already here\n").unwrap();
    assert!(!s
        .run(&["product", "import", products.to_str().unwrap()])
        .status
        .success());
    for w in writers {
        w.join().unwrap();
    }
    let (accepted, refused) = *tally.lock().unwrap();
    assert!(
        accepted > 20 && refused > 20,
        "{accepted} accepted, {refused} refused"
    );
    wait_caught_up(&srv.addr);
    let out = assert_latest_is_live(
        &s,
        &rep,
        "latest.db",
        "the replica holds what committed, no more",
    );
    assert_eq!(
        crate::util::query_i64(
            &out,
            "SELECT count(*) FROM inventory_current WHERE sku = 'E-5'"
        ),
        0
    );
    let orders = crate::util::query_i64(&out, "SELECT count(*) FROM shipped_orders");
    let refused_orders = crate::util::query_i64(
        &s.db,
        "SELECT count(*) FROM shipped_items WHERE quantity_shipped = 100000",
    );
    assert!(
        orders > 0 && refused_orders == 0,
        "{orders} orders; {refused_orders} oversized items"
    );
}

/// A mounted file system for a test, unmounted (lazily) on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts the image again at `at` once the detached file system is released.
fn plug_in(img: &Path, at: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sh(&[
        "mount",
        "-o",
        "loop",
        img.to_str().unwrap(),
        at.to_str().unwrap(),
    ]) {
        assert!(
            Instant::now() < deadline,
            "the image could not be mounted again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Unplugs (lazily) and plugs in the image again: the fix for a disk gone read-only.
fn remount(img: &Path, at: &Path) {
    assert!(sh(&["umount", "-l", at.to_str().unwrap()]));
    plug_in(img, at);
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success())
}

// Faults of the replica disk never stop bounded writes; /health says what is wrong; shipping
// resumes without a gap when the disk is back: a full tmpfs, a read-only remount, a missing
// directory, and a loop-mounted ext4 image lazily unmounted mid-run.
#[test]
fn replica_disk_faults_do_not_stop_bounded_writes_and_heal() {
    if !is_root() {
        skip(
            "replica_disk_faults_do_not_stop_bounded_writes_and_heal",
            "needs root for tmpfs and loop mounts",
        );
        return;
    }
    let s = Sandbox::new();
    for sku in SKUS {
        s.ok(&["product", "add", sku, "Lamp", "--initial", "100"]);
    }
    let rep = s.path("rep");
    std::fs::create_dir(&rep).unwrap();
    assert!(
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            rep.to_str().unwrap()
        ]),
        "mount a tmpfs"
    );
    let _m = Mount(rep.clone());
    s.ok(&["replica", "init", rep.to_str().unwrap()]);
    let srv = Server::start(&s, &[]);
    let a = srv.addr.clone();
    let gens = generations(&rep);
    // Full: long notes fill 1 MB quickly; every write is still accepted.
    let mut n = 0;
    let note = "n".repeat(900);
    loop {
        let (st, _) = call(
            &a,
            "POST",
            "/api/transactions",
            None,
            Some(
                &json!({"sku": "A-1", "type": "Receive", "quantity": 1, "notes": note, "request_id": format!("full-{n}")}),
            ),
        );
        assert_eq!(
            st, 201,
            "a bounded write was refused while the replica filled up"
        );
        n += 1;
        if replica_json(&a)["problem"].is_string() {
            break;
        }
        assert!(n < 5000, "the replica never filled up");
    }
    let r = wait_problem(&a);
    assert!(
        r["problem"]
            .as_str()
            .unwrap()
            .contains("write to the replica"),
        "{r}"
    );
    for i in 0..20 {
        assert_eq!(receive(&a, "B-2", &format!("while-full-{i}")), 201);
    }
    assert!(sh(&[
        "mount",
        "-o",
        "remount,size=64m",
        rep.to_str().unwrap()
    ]));
    wait_caught_up(&a);
    assert_eq!(generations(&rep), gens, "resumed without a new base");
    assert_latest_is_live(&s, &rep, "healed-full.db", "healed after the full disk");
    // Missing: the disk is unmounted and its mount point removed.
    assert!(sh(&["umount", "-l", rep.to_str().unwrap()]));
    std::fs::remove_dir(&rep).unwrap();
    for i in 0..5 {
        assert_eq!(receive(&a, "D-4", &format!("missing-{i}")), 201);
    }
    let r = wait_problem(&a);
    let p = r["problem"].as_str().unwrap().to_string();
    assert!(
        p.contains("does not exist") || p.contains("went away"),
        "{p}"
    );
    // An empty directory where the disk should be is refused, with a plain message.
    std::fs::create_dir(&rep).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = replica_json(&a);
        if r["problem"]
            .as_str()
            .is_some_and(|p| p.contains("not this database's replica"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "an empty mount point was not refused: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !rep.join("ora-replica.json").exists(),
        "ora wrote into a directory that is not its replica"
    );
    drop(srv);

    // A loop-mounted ext4 image pulled away lazily mid-run, then mounted again.
    let img = s.path("disk.img");
    assert!(sh(&["truncate", "-s", "16M", img.to_str().unwrap()]));
    assert!(sh(&["mkfs.ext4", "-q", "-F", img.to_str().unwrap()]));
    let usb = s.path("usb");
    std::fs::create_dir(&usb).unwrap();
    assert!(sh(&[
        "mount",
        "-o",
        "loop",
        img.to_str().unwrap(),
        usb.to_str().unwrap()
    ]));
    let _u = Mount(usb.clone());
    let rdir = usb.join("ora");
    std::fs::create_dir(&rdir).unwrap();
    s.ok(&["replica", "init", rdir.to_str().unwrap()]);
    let srv = Server::start(&s, &[]);
    let a = srv.addr.clone();
    for i in 0..10 {
        assert_eq!(receive(&a, "A-1", &format!("usb-{i}")), 201);
    }
    wait_caught_up(&a);
    let gens = generations(&rdir);
    // The disk turns read-only under us (as ext4 does after an I/O error).
    assert!(sh(&["mount", "-o", "remount,abort", usb.to_str().unwrap()]));
    for i in 0..10 {
        assert_eq!(receive(&a, "B-2", &format!("ro-{i}")), 201);
    }
    let r = wait_problem(&a);
    let p = r["problem"].as_str().unwrap().to_string();
    assert!(p.contains("Read-only") || p.contains("read-only"), "{p}");
    remount(&img, &usb);
    wait_caught_up(&a);
    let out = restore_out(&s, &rdir, &["--latest"], "healed-ro.db");
    assert_eq!(content(&out), content(&s.db));
    let gens = generations(&rdir).max(gens);
    // Pulled out mid-run.
    assert!(sh(&["umount", "-l", usb.to_str().unwrap()]));
    for i in 0..10 {
        assert_eq!(receive(&a, "A-1", &format!("pulled-{i}")), 201);
    }
    let r = wait_problem(&a);
    let p = r["problem"].as_str().unwrap().to_string();
    assert!(
        p.contains("went away") || p.contains("does not exist") || p.contains("not this database"),
        "{p}"
    );
    plug_in(&img, &usb);
    wait_caught_up(&a);
    assert_eq!(generations(&rdir), gens, "resumed without a new base");
    let out = restore_out(&s, &rdir, &["--latest"], "healed-usb.db");
    assert_eq!(content(&out), content(&s.db));
}

// Strict mode refuses a write the replica cannot take (clearly, nothing applied) and accepts
// writes again once it can.
#[test]
fn strict_mode_refuses_writes_while_the_replica_cannot_take_them() {
    let (s, rep) = with_replica("strict");
    let cfg = s.path("ora.toml");
    std::fs::write(&cfg, "[replica]\nstrict_timeout_ms = 2000\n").unwrap();
    let srv = Server::start(&s, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(receive(&srv.addr, "A-1", "ok-1"), 201);
    let before = stocks(&s.db);
    let away = s.path("rep-away");
    std::fs::rename(&rep, &away).unwrap();
    let (st, v) = call(
        &srv.addr,
        "POST",
        "/api/transactions",
        None,
        Some(&json!({"sku": "A-1", "type": "Receive", "quantity": 5, "request_id": "refused-1"})),
    );
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["code"], "replica_unavailable", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("nothing was applied"),
        "{v}"
    );
    let err = s.fails(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "stock",
            "receive",
            "A-1",
            "5",
        ],
        3,
    );
    assert!(err.contains("replica"), "{err}");
    assert_eq!(stocks(&s.db), before, "nothing was half-applied");
    std::fs::rename(&away, &rep).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if receive(&srv.addr, "A-1", "ok-2") == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "strict writes were not accepted again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(srv);
    let out = restore_out(&s, &rep, &["--latest"], "strict.db");
    assert!(request_ids(&out).contains(&"ok-2".to_string()));
    assert!(!request_ids(&out).contains(&"refused-1".to_string()));
}

// A flipped byte in any replica file is caught by restore, which refuses and leaves the live
// database as it was, and by verify.
#[test]
fn a_flipped_byte_in_any_replica_file_is_caught() {
    let kinds = ["seg", "base.db.gz", "base.json", "ora-replica.json"];
    for kind in kinds {
        for at_end in [false, true] {
            let (s, rep) = with_replica("bounded");
            for i in 0..12 {
                s.ok(&["stock", "receive", SKUS[i % 4], "1"]);
            }
            let f = walk(&rep)
                .into_iter()
                .find(|p| p.to_string_lossy().ends_with(kind))
                .unwrap_or_else(|| panic!("no {kind} file"));
            let mut b = std::fs::read(&f).unwrap();
            let at = if at_end { b.len() - 40 } else { b.len() / 2 };
            b[at] ^= 0x20;
            std::fs::write(&f, &b).unwrap();
            let live = content(&s.db);
            let r = s.run(&[
                "restore",
                "--from-replica",
                rep.to_str().unwrap(),
                "--latest",
                "--yes",
            ]);
            let err = String::from_utf8_lossy(&r.stderr);
            assert_ne!(
                r.status.code(),
                Some(0),
                "restore used a damaged {f:?} (byte {at})"
            );
            crate::util::assert_clean_error(&err);
            assert_eq!(content(&s.db), live, "the live database was touched");
            let v = s.run(&["replica", "verify"]);
            assert_eq!(
                v.status.code(),
                Some(1),
                "verify missed a flipped byte at {at} of {f:?}"
            );
        }
    }
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// `ora replica verify --nightly` (at `at` on ora's clock, when given): exit code and report.
fn nightly_verify(s: &Sandbox, at: Option<&str>) -> (Option<i32>, serde_json::Value) {
    s.json_at(&["replica", "verify", "--nightly"], at)
}

// The nightly replica verify: the first night (and a week on) makes the full pass, with an
// older point; between, the newest point alone, checked with quick_check and compared with
// the database table by table, and every record's checksum still read: a flipped byte in a
// segment still fails it.
#[test]
fn the_nightly_replica_verify_rebuilds_the_newest_point_and_the_full_pass_weekly() {
    let (s, rep) = with_replica("bounded");
    for i in 0..12 {
        s.ok(&["stock", "receive", SKUS[i % 4], "1"]);
    }
    let (code, v) = nightly_verify(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(0), Some("full")), "{v}");
    assert!(v["older"].is_object(), "{v}");
    let (code, v) = nightly_verify(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(0), Some("quick")), "{v}");
    assert!(v["older"].is_null(), "{v}");
    assert_eq!(
        v["newest"]["differing_tables"],
        serde_json::json!([]),
        "{v}"
    );
    let week = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let (code, v) = nightly_verify(&s, Some(&week));
    assert_eq!((code, v["pass"].as_str()), (Some(0), Some("full")), "{v}");

    let seg = walk(&rep)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("seg"))
        .expect("a segment");
    let mut b = std::fs::read(&seg).unwrap();
    // In the middle of the records (a segment ends with zeros allotted ahead).
    let at = crate::util::written_len(&b) / 2;
    b[at] ^= 0x20;
    std::fs::write(&seg, &b).unwrap();
    let (code, v) = nightly_verify(&s, None);
    assert_eq!((code, v["ok"].as_bool()), (Some(1), Some(false)), "{v}");
}
