//! The encrypted replica (`[backup] encrypt_to`) with real processes and files: nothing on the
//! replica disk reads as the data, the box verifies and restores it without the secret key,
//! a new machine restores it only with that key (a missing or wrong key refused clearly,
//! nothing written), turning encryption on or off starts a new generation, and a flipped byte
//! in an encrypted file is caught.

use std::path::{Path, PathBuf};

use crate::encrypted::{config, keygen, Keys};
use crate::util::{call, query_i64, Sandbox, Server};

/// A product name that must never appear on the replica disk in the clear.
const NAME: &str = "Quokkalamp";

/// A sandbox whose configuration encrypts to a new key: one product (`initial` in stock), a
/// replica initialised in `rep` in `mode`.
struct Sealed {
    s: Sandbox,
    keys: Keys,
    cfg: String,
    rep: PathBuf,
}

impl Sealed {
    fn new(initial: &str, mode: &str) -> Sealed {
        let s = Sandbox::new();
        let keys = keygen(&s, "replica.key");
        let cfg = config(&s, &keys.public);
        s.ok(&[
            "--config",
            &cfg,
            "product",
            "add",
            "Q-1",
            NAME,
            "--initial",
            initial,
        ]);
        let rep = s.path("rep");
        std::fs::create_dir(&rep).unwrap();
        s.ok(&[
            "--config",
            &cfg,
            "replica",
            "init",
            rep.to_str().unwrap(),
            "--mode",
            mode,
        ]);
        Sealed { s, keys, cfg, rep }
    }

    /// `ora --config CFG ARGS` (exit 0 expected).
    fn ok(&self, args: &[&str]) -> String {
        let mut all = vec!["--config", self.cfg.as_str()];
        all.extend_from_slice(args);
        self.s.ok(&all)
    }
}

fn files(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Complete generations, oldest first, with whether each is encrypted.
fn generations(rep: &Path) -> Vec<(PathBuf, bool)> {
    let mut gens: Vec<PathBuf> = std::fs::read_dir(rep)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("gen-")
                && p.join("base.json").exists()
        })
        .collect();
    gens.sort();
    gens.into_iter()
        .map(|g| {
            let sealed = g.join("base.db.gz.age").exists();
            (g, sealed)
        })
        .collect()
}

/// Every movement, in order, as text.
fn ledger(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare(
            "SELECT id, sku, quantity, transaction_type FROM inventory_transactions ORDER BY id",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok(format!(
            "{}|{}|{}|{}",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?
        ))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

fn restore_args<'a>(rep: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["restore", "--from-replica", rep, "--latest", "--out", out]
}

#[test]
fn an_encrypted_replica_shows_nothing_and_restores_on_a_new_box_only_with_its_key() {
    let x = Sealed::new("10", "bounded");
    let (s, cfg, rep) = (&x.s, x.cfg.as_str(), &x.rep);
    let (identity, public) = (x.keys.identity.as_str(), x.keys.public.as_str());
    let other_identity = keygen(s, "other.key").identity;
    let r = rep.to_str().unwrap();
    // Writes by short commands and by a server both land encrypted.
    for i in 0..5 {
        x.ok(&["stock", "receive", "Q-1", &format!("{}", i + 1)]);
    }
    {
        let srv = Server::start(s, &["--config", cfg]);
        for i in 0..5 {
            let body = serde_json::json!({"sku": "Q-1", "type": "Receive", "quantity": 2, "request_id": format!("srv-{i}")});
            let (st, _) = call(&srv.addr, "POST", "/api/transactions", None, Some(&body));
            assert_eq!(st, 201);
        }
        let p = serde_json::json!({"sku": "Q-2", "product_name": format!("{NAME} two"), "reorder_point": 1});
        let (st, v) = call(&srv.addr, "POST", "/api/products", None, Some(&p));
        assert_eq!(st, 201, "{v}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, h) = call(&srv.addr, "GET", "/health", None, None);
            let rr = &h["replica"];
            if rr["lag_commits"] == 0 && rr["up"] == true {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not caught up: {rr}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let gens = generations(rep);
    assert!(
        !gens.is_empty() && gens.iter().all(|(_, sealed)| *sealed),
        "{gens:?}"
    );
    for (g, _) in &gens {
        assert!(g.join("key.age").exists(), "{g:?} has no key file");
        assert!(!g.join("base.db.gz").exists());
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(g.join("base.json")).unwrap()).unwrap();
        assert_eq!(meta["encrypted_to"], public);
    }
    for f in files(rep) {
        let b = std::fs::read(&f).unwrap();
        assert!(
            !b.windows(NAME.len()).any(|w| w == NAME.as_bytes()),
            "{f:?} holds a product name in the clear"
        );
        assert!(
            !b.windows(15).any(|w| w == b"SQLite format 3"),
            "{f:?} holds a database in the clear"
        );
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".age") {
            assert!(b.starts_with(b"age-encryption.org/v1\n"), "{f:?}");
        }
    }

    let st = s.json(&["--config", cfg, "replica", "status"]);
    assert_eq!(st["replica"]["encrypted_to"], public, "{st}");
    // The box holds the secret: verify and restore work without the secret key.
    let v = s.json(&["--config", cfg, "replica", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["locked_generations"], serde_json::json!([]), "{v}");
    let here = s.path("here.db");
    x.ok(&restore_args(r, here.to_str().unwrap()));
    assert_eq!(ledger(&here), ledger(&s.db));

    // The box is gone: a new machine has only the replica disk (and, kept elsewhere, the key).
    let fresh = Sandbox::empty();
    let out = fresh.path("restored.db");
    let o = out.to_str().unwrap();
    let err = fresh.fails(&restore_args(r, o), 2);
    assert!(err.contains("is encrypted to"), "{err}");
    assert!(err.contains("--identity"), "{err}");
    assert!(!out.exists(), "something was restored without the key");
    let mut wrong = vec!["--identity", other_identity.as_str()];
    wrong.extend(restore_args(r, o));
    let err = fresh.fails(&wrong, 2);
    assert!(err.contains("does not open"), "{err}");
    assert!(!out.exists());
    let mut right = vec!["--identity", identity];
    right.extend(restore_args(r, o));
    fresh.ok(&right);
    assert_eq!(ledger(&out), ledger(&s.db));
    assert_eq!(
        query_i64(
            &out,
            "SELECT current_quantity FROM inventory_current WHERE sku = 'Q-1'"
        ),
        10 + 15 + 10
    );
    // A new box restoring over a database of its own (another secret) needs the key too.
    let other = Sandbox::new();
    let err = other.fails(&restore_args(r, other.path("x.db").to_str().unwrap()), 2);
    assert!(err.contains("--identity"), "{err}");
}

#[test]
fn turning_encryption_on_and_off_starts_a_new_generation_and_older_ones_stay_restorable() {
    let s = Sandbox::new();
    let Keys { identity, public } = keygen(&s, "replica.key");
    let cfg = config(&s, &public);
    s.ok(&["product", "add", "Q-1", NAME, "--initial", "1"]);
    let rep = s.path("rep");
    std::fs::create_dir(&rep).unwrap();
    let r = rep.to_str().unwrap();
    s.ok(&["replica", "init", r]);
    s.ok(&["stock", "receive", "Q-1", "1"]);
    assert_eq!(generations(&rep).len(), 1);
    assert!(!generations(&rep)[0].1);

    // On: the next write starts an encrypted generation.
    s.ok(&["--config", &cfg, "stock", "receive", "Q-1", "2"]);
    let gens = generations(&rep);
    assert_eq!(gens.iter().map(|g| g.1).collect::<Vec<_>>(), [false, true]);
    assert_eq!(
        query_i64(&s.db, "SELECT length(seal_secret) FROM replica_state"),
        32
    );
    s.ok(&["--config", &cfg, "stock", "receive", "Q-1", "3"]);

    // Off again: a plain generation, and the secret is forgotten, so no plain base carries it.
    s.ok(&["stock", "receive", "Q-1", "4"]);
    let gens = generations(&rep);
    assert_eq!(
        gens.iter().map(|g| g.1).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(
        query_i64(&s.db, "SELECT seal_secret IS NULL FROM replica_state"),
        1
    );
    // Each switch continued the history: the old generation was given every commit up to
    // the new base, so every moment stays restorable exactly.
    for (g, _) in &gens[1..] {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(g.join("base.json")).unwrap()).unwrap();
        assert_eq!(meta["continues"], true, "{g:?}: {meta}");
    }
    // The encrypted generation's content can no longer be checked from the box alone; verify
    // says so, and checks it in full with the key.
    let v = s.json(&["replica", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["locked_generations"], serde_json::json!([2]), "{v}");
    let v = s.json(&["--identity", &identity, "replica", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["locked_generations"], serde_json::json!([]), "{v}");

    // The last point of the encrypted generation (just before the plain base): the key is
    // needed, and it gives that point, which holds every movement (the hand-over shipped the
    // last one into it).
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gens[2].0.join("base.json")).unwrap()).unwrap();
    let before_third = meta["taken_ms"].as_i64().unwrap() - 1;
    let at = chrono::DateTime::from_timestamp_millis(before_third)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let out = s.path("point.db");
    let args = [
        "restore",
        "--from-replica",
        r,
        "--at",
        &at,
        "--out",
        out.to_str().unwrap(),
    ];
    let err = s.fails(&args, 2);
    assert!(err.contains("generation 2"), "{err}");
    let mut with_key = vec!["--identity", identity.as_str()];
    with_key.extend_from_slice(&args);
    s.ok(&with_key);
    assert_eq!(ledger(&out), ledger(&s.db));
    assert_eq!(ledger(&out).len(), 5);
}

#[test]
fn a_flipped_byte_in_an_encrypted_replica_file_is_caught() {
    for kind in [".seg", "base.db.gz.age", "key.age", "base.json"] {
        let x = Sealed::new("1", "bounded");
        let (s, r) = (&x.s, x.rep.to_str().unwrap());
        for i in 0..8 {
            x.ok(&["stock", "receive", "Q-1", &format!("{}", i + 1)]);
        }
        let f = files(&x.rep)
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with(kind))
            .unwrap_or_else(|| panic!("no {kind} file"));
        let mut b = std::fs::read(&f).unwrap();
        // In the middle of what was written (a segment ends with zeros allotted ahead).
        let at = crate::util::written_len(&b) / 2;
        b[at] ^= 0x20;
        std::fs::write(&f, &b).unwrap();
        let out = s.path("out.db");
        let mut args = vec!["--identity", x.keys.identity.as_str()];
        args.extend(restore_args(r, out.to_str().unwrap()));
        let res = s.run(&args);
        assert_ne!(res.status.code(), Some(0), "restore used a damaged {f:?}");
        crate::util::assert_clean_error(&String::from_utf8_lossy(&res.stderr));
        assert!(!out.exists());
        // The nightly verify on the box (no secret key) catches it too.
        let v = s.run(&["--config", &x.cfg, "replica", "verify"]);
        assert_eq!(v.status.code(), Some(1), "verify missed byte {at} of {f:?}");
    }
}

#[test]
fn strict_mode_keeps_every_acknowledged_movement_encrypted_across_a_kill() {
    let x = Sealed::new("1", "strict");
    let r = x.rep.to_str().unwrap();
    let mut srv = Server::start(&x.s, &["--config", &x.cfg]);
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let id = format!("strict-{i}");
        let body =
            serde_json::json!({"sku": "Q-1", "type": "Receive", "quantity": 1, "request_id": id});
        let (st, v) = call(&srv.addr, "POST", "/api/transactions", None, Some(&body));
        assert_eq!(st, 201, "{v}");
        acknowledged.push(id);
    }
    // SAFETY: killing our own child.
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGKILL) };
    let _ = srv.child.wait();
    let fresh = Sandbox::empty();
    let out = fresh.path("restored.db");
    let mut args = vec!["--identity", x.keys.identity.as_str()];
    args.extend(restore_args(r, out.to_str().unwrap()));
    fresh.ok(&args);
    let conn = rusqlite::Connection::open(&out).unwrap();
    for id in &acknowledged {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM inventory_transactions WHERE request_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            n, 1,
            "acknowledged movement {id} is not in the encrypted replica"
        );
    }
}
