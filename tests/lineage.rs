//! One replica, one database: copies ora makes are detached at birth and never touch the live
//! replica (read, written, served, backed up, maintained, verified); a copy made with `cp` is
//! refused before it writes a byte of history and both sides' health says so; a new box takes
//! a replica over only by an explicit command, after which the old owner is refused; every
//! `--at` a refusal offers restores; the README's walkthrough leaves one generation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::replica::content;
use crate::util::{call, Sandbox, Server};

/// A sandbox with a product, a replica in `rep`, and one shipment, as in the recipe.
fn live() -> (Sandbox, PathBuf) {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A", "a", "--initial", "10"]);
    let rep = s.path("replica");
    std::fs::create_dir(&rep).unwrap();
    s.ok(&["replica", "init", rep.to_str().unwrap()]);
    s.ok(&["stock", "ship", "A", "1"]);
    (s, rep)
}

/// Every file under `dir` with its bytes' hash (relative path -> sha256), optionally leaving
/// out one subdirectory.
fn files(dir: &Path, except: Option<&str>) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    fn walk(root: &Path, dir: &Path, except: Option<&str>, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if except.is_some_and(|x| rel == x) {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, except, out);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(rel, ora::fsutil::hex(&Sha256::digest(&bytes)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, except, &mut out);
    out
}

/// `ora --db DB ARGS` from the sandbox's directory; returns the output.
fn on(s: &Sandbox, db: &Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(crate::util::ORA);
    c.arg("--db").arg(db).args(args);
    crate::util::clean_env(&mut c);
    c.current_dir(s.dir.path());
    c.output().expect("run ora")
}

fn ok_on(s: &Sandbox, db: &Path, args: &[&str]) -> String {
    let o = on(s, db, args);
    assert!(
        o.status.success(),
        "ora --db {} {args:?}: {}\n{}",
        db.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sandbox_for(db: &Path) -> Sandbox {
    Sandbox {
        dir: tempfile::tempdir().unwrap(),
        db: db.to_path_buf(),
        now: None,
    }
}

// The reproduction, and more: a copy made by `restore --out` is read, written,
// served (and written through the API), backed up, maintained and verified; the replica's
// files stay byte-identical, `--latest` gives back the live ledger, `replica verify` passes.
#[test]
fn a_restored_copy_never_touches_the_live_replica() {
    let (s, rep) = live();
    let copy = s.path("copy.db");
    s.ok(&[
        "restore",
        "--from-replica",
        rep.to_str().unwrap(),
        "--latest",
        "--out",
        copy.to_str().unwrap(),
    ]);
    let before = files(&rep, None);
    // The first command that opens the copy says what it is; the next ones stay quiet.
    let first = on(&s, &copy, &["stock", "list"]);
    let told = String::from_utf8_lossy(&first.stderr);
    assert!(
        told.contains("is a copy made by `ora restore`") && told.contains("no replica"),
        "{told}"
    );
    let again = on(&s, &copy, &["stock", "list"]);
    assert!(!String::from_utf8_lossy(&again.stderr).contains("is a copy"));
    ok_on(&s, &copy, &["stock", "receive", "A", "1000"]);
    let other_backups = s.path("copy-backups");
    std::fs::create_dir(&other_backups).unwrap();
    ok_on(
        &s,
        &copy,
        &["backup", "--dir", other_backups.to_str().unwrap()],
    );
    ok_on(&s, &copy, &["maintain", "daily"]);
    ok_on(&s, &copy, &["verify"]);
    let health = ok_on(&s, &copy, &["health"]);
    assert!(
        health.contains("no replica: this file is a copy"),
        "{health}"
    );
    {
        let srv = Server::start(&sandbox_for(&copy), &[]);
        let (st, _) = call(
            &srv.addr,
            "POST",
            "/api/transactions",
            None,
            Some(&json!({"sku": "A", "type": "Receive", "quantity": 7})),
        );
        assert_eq!(st, 201);
    }
    assert_eq!(files(&rep, None), before, "the copy changed the replica");
    // The replica still gives back this database, and only this one.
    let latest = s.path("latest.db");
    s.ok(&[
        "restore",
        "--from-replica",
        rep.to_str().unwrap(),
        "--latest",
        "--out",
        latest.to_str().unwrap(),
    ]);
    assert_eq!(content(&latest), content(&s.db));
    let v = s.json(&["replica", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(s.json(&["replica", "status"])["replica"]["generations"], 1);
}

// A copy made with `cp` and pointed at the replica by configuration is refused before it
// writes a byte of history; the owner keeps shipping; both health reports say what happened.
#[test]
fn a_copy_made_with_cp_is_refused_and_both_sides_are_told() {
    let (s, rep) = live();
    let copy = s.path("cp.db");
    std::fs::copy(&s.db, &copy).unwrap();
    let cfg = s.path("copy.toml");
    std::fs::write(&cfg, format!("[replica]\ndir = \"{}\"\n", rep.display())).unwrap();
    let history = files(&rep, Some("refused"));
    let cfg_arg = cfg.to_str().unwrap();
    ok_on(
        &s,
        &copy,
        &["--config", cfg_arg, "stock", "receive", "A", "500"],
    );
    {
        let srv = Server::start(&sandbox_for(&copy), &["--config", cfg_arg]);
        let (st, _) = call(
            &srv.addr,
            "POST",
            "/api/transactions",
            None,
            Some(&json!({"sku": "A", "type": "Receive", "quantity": 3})),
        );
        assert_eq!(st, 201);
        let (_, h) = call(&srv.addr, "GET", "/health", None, None);
        assert_eq!(h["replica"]["refused"], true, "{h}");
        let (_, _, metrics) = crate::util::http(&srv.addr, "GET", "/metrics", &[], b"").unwrap();
        let metrics = String::from_utf8_lossy(&metrics);
        assert!(metrics.contains("ora_replica_owned 0"), "{metrics}");
        let (_, _, page) = crate::util::http(&srv.addr, "GET", "/", &[], b"").unwrap();
        assert!(String::from_utf8_lossy(&page).contains("REFUSED: NOT THE OWNER"));
    }
    assert_eq!(
        files(&rep, Some("refused")),
        history,
        "the copy wrote history"
    );
    assert!(rep.join("refused").is_dir(), "no note of the refusal");
    // The copy's health fails and names the owner and what to do.
    let o = on(&s, &copy, &["--config", cfg_arg, "health"]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    let owner = s.db.canonicalize().unwrap().display().to_string();
    assert!(
        text.contains(&format!("the database at {owner}")) && text.contains("not its owner"),
        "{text}"
    );
    // The owner ships on, and hears of the attempt.
    s.ok(&["stock", "ship", "A", "2"]);
    let out = s.run(&["health"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tried to write to this database's replica") && text.contains("cp.db"),
        "{text}"
    );
    let latest = s.path("latest.db");
    s.ok(&[
        "restore",
        "--from-replica",
        rep.to_str().unwrap(),
        "--latest",
        "--out",
        latest.to_str().unwrap(),
    ]);
    assert_eq!(content(&latest), content(&s.db));
}

// Take-over: refused while the owner serves; after it is killed, a new box restores the
// newest point and takes over; its writes continue the replica; the old owner, started again
// on its old file, is refused and told why, and the replica keeps the new owner's history.
#[test]
fn a_new_box_takes_over_and_the_old_owner_is_refused() {
    let (s, rep) = live();
    let rep_arg = rep.to_str().unwrap();
    let mut owner = Server::start(&s, &[]);
    let box2 = s.path("box2");
    std::fs::create_dir(&box2).unwrap();
    let new_db = box2.join("ora.db");
    ok_on(
        &s,
        &new_db,
        &["restore", "--from-replica", rep_arg, "--latest", "--yes"],
    );
    let refused = on(&s, &new_db, &["replica", "init", rep_arg, "--take-over"]);
    assert_eq!(refused.status.code(), Some(3));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("still serves") && why.contains("stop it first"),
        "{why}"
    );
    // SAFETY: killing our own child.
    unsafe { libc::kill(owner.child.id() as i32, libc::SIGKILL) };
    let _ = owner.child.wait();
    let took = ok_on(&s, &new_db, &["replica", "init", rep_arg, "--take-over"]);
    assert!(took.contains("taken over from"), "{took}");
    ok_on(&s, &new_db, &["stock", "receive", "A", "100"]);
    let after_takeover = files(&rep, Some("refused"));
    // The old owner, started again: refused, told why, and it changes no history.
    s.ok(&["stock", "ship", "A", "2"]);
    let o = s.run(&["health"]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("since a take-over"), "{text}");
    assert_eq!(files(&rep, Some("refused")), after_takeover);
    let latest = s.path("latest.db");
    s.ok(&[
        "restore",
        "--from-replica",
        rep_arg,
        "--latest",
        "--out",
        latest.to_str().unwrap(),
    ]);
    assert_eq!(content(&latest), content(&new_db));
    // The new owner hears that the old one came back and was refused.
    let status = on(&s, &new_db, &["--json", "replica", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["replica"]["epoch"], 2, "{v}");
    assert_eq!(v["verdict"], "fail", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("was refused"),
        "{v}"
    );
    let reasons: Vec<String> = v["replica"]["generation_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(
        reasons.last().unwrap().starts_with("taken over by"),
        "{reasons:?}"
    );
}

// The box whose database disk died restores from its replica at its own path: the restored
// database continues that replica without a take-over (this place owns it).
#[test]
fn the_owner_restoring_in_place_continues_its_replica() {
    let (s, rep) = live();
    std::fs::remove_file(&s.db).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", s.db.display()));
    }
    s.ok(&[
        "restore",
        "--from-replica",
        rep.to_str().unwrap(),
        "--latest",
        "--yes",
    ]);
    s.ok(&["stock", "receive", "A", "5"]);
    let v = s.json(&["replica", "status"]);
    assert_eq!(v["verdict"], "ok", "{v}");
    assert_eq!(v["replica"]["generations"], 1, "{v}");
    let latest = s.path("latest.db");
    s.ok(&[
        "restore",
        "--from-replica",
        rep.to_str().unwrap(),
        "--latest",
        "--out",
        latest.to_str().unwrap(),
    ]);
    assert_eq!(content(&latest), content(&s.db));
}

/// The `--at "..."` values a refusal offers.
fn offered(err: &str) -> Vec<String> {
    err.split("--at \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_string))
        .collect()
}

// A moment the replica cannot show exactly is refused with a moment before and one after;
// each of them restores.
#[test]
fn every_moment_a_refusal_offers_restores() {
    let (s, rep) = live();
    s.ok(&["stock", "receive", "A", "3"]);
    // A change behind ora's back, 200 ms after the last captured commit: the next commit
    // takes a new base that does not continue the history.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute(
        "UPDATE inventory_current SET reorder_point = 4 WHERE sku = 'A'",
        [],
    )
    .unwrap();
    drop(conn);
    s.ok(&["stock", "receive", "A", "1"]);
    let v = s.json(&["replica", "status"]);
    let gens = v["replica"]["generation_list"].as_array().unwrap().clone();
    assert_eq!(gens.len(), 2, "{v}");
    assert_eq!(gens[1]["continues"], false);
    // 100 ms before the second base: inside the window the replica cannot show.
    let taken = gens[1]["taken"].as_str().unwrap();
    let stamp = taken.rsplit_once(' ').unwrap().0;
    let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.3f").unwrap()
        - chrono::Duration::milliseconds(100);
    let at = t.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    let out = s.path("window.db");
    let err = s.fails(
        &[
            "restore",
            "--from-replica",
            rep.to_str().unwrap(),
            "--at",
            &at,
            "--out",
            out.to_str().unwrap(),
        ],
        2,
    );
    let moments = offered(&err);
    assert_eq!(moments.len(), 2, "{err}");
    for (i, m) in moments.iter().enumerate() {
        let out = s.path(&format!("offered-{i}.db"));
        s.ok(&[
            "restore",
            "--from-replica",
            rep.to_str().unwrap(),
            "--at",
            m,
            "--out",
            out.to_str().unwrap(),
        ]);
    }
}

// The README's first ten minutes, twice in a row in one directory each: no error, and the
// replica holds one generation (no base beyond `replica init`'s).
#[test]
fn the_walkthrough_runs_twice_and_keeps_one_generation() {
    for _ in 0..2 {
        let s = Sandbox::empty();
        s.ok(&["init"]);
        s.ok(&[
            "product",
            "add",
            "SKU-1",
            "Blue widget",
            "--reorder-point",
            "5",
            "--initial",
            "20",
        ]);
        s.ok(&["stock", "receive", "SKU-1", "12", "--notes", "PO 4411"]);
        s.fails(&["stock", "ship", "SKU-1", "40"], 1);
        s.ok(&["stock", "ship", "SKU-1", "3"]);
        s.ok(&[
            "--actor",
            "anna",
            "product",
            "update",
            "SKU-1",
            "--reorder-point",
            "8",
        ]);
        let rep = s.path("replica");
        std::fs::create_dir_all(&rep).unwrap();
        s.ok(&["replica", "init", "./replica"]);
        let t = s.json(&["replica", "status"])["replica"]["newest_point"]
            .as_str()
            .unwrap()
            .rsplit_once(' ')
            .unwrap()
            .0
            .to_string();
        s.ok(&["stock", "ship", "SKU-1", "25"]);
        s.ok(&[
            "restore",
            "--from-replica",
            "./replica",
            "--at",
            &t,
            "--out",
            "at.db",
        ]);
        let at = ok_on(&s, &s.path("at.db"), &["stock", "show", "SKU-1"]);
        assert!(at.contains("29"), "{at}");
        s.ok(&["backup"]);
        s.run(&["health"]);
        {
            let srv = Server::start(&s, &[]);
            let (st, _) = call(
                &srv.addr,
                "POST",
                "/api/transactions",
                None,
                Some(
                    &json!({"sku": "SKU-1", "type": "Receive", "quantity": 5, "request_id": "scan-1"}),
                ),
            );
            assert_eq!(st, 201);
        }
        let v = s.json(&["replica", "status"]);
        assert_eq!(v["replica"]["generations"], 1, "{v}");
        assert_eq!(v["verdict"], "ok", "{v}");
    }
}

// `ora health` where there is no database yet says to create one; where a backup exists, to
// restore it.
#[test]
fn health_of_a_missing_database_says_what_to_do() {
    let s = Sandbox::empty();
    let out = s.run(&["health"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("`ora init`"), "{text}");
    s.ok(&["init"]);
    s.ok(&["backup"]);
    std::fs::remove_file(&s.db).unwrap();
    let text = String::from_utf8_lossy(&s.run(&["health"]).stdout).into_owned();
    assert!(text.contains("restore the last backup"), "{text}");
}
