//! Many writers at once, in one process through the writer and across processes through
//! SQLite's locks: every movement lands exactly once, no caller ever sees SQLITE_BUSY.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ora::model::TxType;
use ora::store::products::NewProduct;
use ora::store::Outcome;
use ora::store::{Movement, OpenMode, Store, StoreKind, StoreOptions, WriteOp, WriteRequest};

use crate::util::{query_i64, Sandbox};

const SKUS: usize = 50;

fn sku(i: usize) -> String {
    format!("SKU-{i:03}")
}

fn seed(store: &Store, initial: i64) {
    for i in 0..SKUS {
        let p = NewProduct {
            sku: sku(i),
            product_name: format!("Product {i}"),
            reorder_point: 10,
            initial_quantity: initial,
        };
        store
            .write(WriteRequest::new(WriteOp::ProductAdd(p)))
            .expect("seed");
    }
}

/// Closes the store once every thread has let go of it (its writer commits what is queued).
fn close(store: Arc<Store>) {
    match Arc::try_unwrap(store) {
        Ok(st) => st.close(),
        Err(_) => panic!("store still shared"),
    }
}

// 8 threads x 2,000 movements on 50 skus through the writer, with readers running: every
// movement lands exactly once, the ledger invariant holds, no error reaches a caller.
#[test]
fn eight_writers_and_readers_lose_nothing() {
    let s = Sandbox::new();
    let store = Arc::new(Store::open(&StoreOptions::new(&s.db), OpenMode::Existing).expect("open"));
    seed(&store, 1_000);
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (store, done, reads) = (Arc::clone(&store), Arc::clone(&done), Arc::clone(&reads));
            std::thread::spawn(move || {
                let mut i = r;
                while !done.load(Ordering::Relaxed) {
                    let conn = store.read().expect("reader");
                    let p = ora::store::products::get(&conn, &sku(i % SKUS))
                        .expect("read")
                        .expect("exists");
                    assert!(p.current_quantity >= 0);
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for n in 0..2_000usize {
                    // Receives and ships alternate so stock stays positive.
                    let kind = if n % 2 == 0 {
                        TxType::Receive
                    } else {
                        TxType::Ship
                    };
                    let mut m = Movement::new(&sku((t * 7 + n) % SKUS), kind, 1 + (n % 3) as i64);
                    m.notes = Some(format!("t{t}n{n}"));
                    let req = WriteRequest::with_request_id(
                        WriteOp::Movement(m),
                        Some(format!("t{t}-n{n}")),
                    );
                    let applied = store
                        .write(req)
                        .unwrap_or_else(|e| panic!("writer {t} movement {n}: {e}"));
                    assert!(!applied.replayed);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader thread");
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    let stats = store.writer().expect("writer").stats();
    assert_eq!(stats.refused.load(Ordering::Relaxed), 0);
    close(store);
    // Every movement exactly once: 16,000 distinct request ids, plus the 50 opening receipts.
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        16_000 + SKUS as i64
    );
    assert_eq!(query_i64(&s.db, "SELECT count(DISTINCT request_id) FROM inventory_transactions WHERE request_id LIKE 't%-n%'"), 16_000);
    s.ok(&["verify"]);
}

// Requests queued together share a transaction, yet a refused one rolls back only itself.
#[test]
fn one_refused_request_does_not_undo_its_neighbours() {
    let s = Sandbox::new();
    let store = Store::open(&StoreOptions::new(&s.db), OpenMode::Existing).expect("open");
    seed(&store, 5);
    let writer = store.writer().expect("writer");
    let tickets: Vec<_> = (0..200)
        .map(|i| {
            let op = if i % 3 == 0 {
                // Overdraws: refused.
                WriteOp::Movement(Movement::new(&sku(i % SKUS), TxType::Ship, 1_000))
            } else if i % 3 == 1 {
                // An all-or-nothing batch whose second movement is refused.
                WriteOp::Batch {
                    movements: vec![
                        Movement::new(&sku(i % SKUS), TxType::Receive, 1),
                        Movement::new("NO-SUCH-SKU", TxType::Receive, 1),
                    ],
                }
            } else {
                WriteOp::Movement(Movement::new(&sku(i % SKUS), TxType::Receive, 2))
            };
            writer.enqueue(WriteRequest::new(op)).expect("enqueue")
        })
        .collect();
    let mut ok = 0;
    for (i, t) in tickets.into_iter().enumerate() {
        match (i % 3, t.wait()) {
            (2, Ok(_)) => ok += 1,
            (0, Err(e)) if e.kind() == StoreKind::Conflict => {}
            (1, Err(e)) if e.kind() == StoreKind::Rejected => {}
            (k, other) => panic!("request {i} (kind {k}): unexpected {other:?}"),
        }
    }
    store.close();
    assert_eq!(ok, 66);
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        SKUS as i64 + 66
    );
    s.ok(&["verify"]);
}

// A caller alone: its all-or-nothing batch that fails half way leaves nothing behind (the
// transaction is rolled back), and the next request commits normally.
#[test]
fn a_lone_refused_batch_leaves_nothing() {
    let s = Sandbox::new();
    let store = Store::open(&StoreOptions::new(&s.db), OpenMode::Existing).expect("open");
    seed(&store, 5);
    let before = {
        let conn = store.read().expect("reader");
        conn.query_row("SELECT count(*) FROM inventory_transactions", [], |r| {
            r.get::<_, i64>(0)
        })
        .expect("count")
    };
    let batch = WriteOp::Batch {
        movements: vec![
            Movement::new(&sku(1), TxType::Receive, 3),
            Movement::new("NO-SUCH-SKU", TxType::Receive, 1),
        ],
    };
    match store.write(WriteRequest::new(batch)) {
        Err(e) if e.kind() == StoreKind::Rejected => {
            let p = e.problems();
            assert_eq!((p.len(), p[0].line, p[0].field), (1, Some(2), Some("sku")));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    store
        .write(WriteRequest::new(WriteOp::Movement(Movement::new(
            &sku(2),
            TxType::Receive,
            4,
        ))))
        .expect("the next request");
    store.close();
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        before + 1
    );
    assert_eq!(
        query_i64(
            &s.db,
            &format!(
                "SELECT current_quantity FROM inventory_current WHERE sku = '{}'",
                sku(1)
            )
        ),
        5
    );
    s.ok(&["verify"]);
}

// Callers that arrive while a group's transaction is open join it (groups grow inside BEGIN
// ... COMMIT); a refused request among them still rolls back only itself, and what every
// caller was told matches what the file holds.
#[test]
fn refusals_among_concurrent_callers_undo_only_themselves() {
    let s = Sandbox::new();
    let store = Arc::new(Store::open(&StoreOptions::new(&s.db), OpenMode::Existing).expect("open"));
    seed(&store, 0);
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let (mut applied, mut refused) = (0i64, 0i64);
                for n in 0..500usize {
                    // Every third request overdraws an empty sku of this thread's own: refused.
                    let m = if n % 3 == 0 {
                        Movement::new(&sku(40 + t), TxType::Ship, 1)
                    } else {
                        Movement::new(&sku((t * 5 + n) % 40), TxType::Receive, 1)
                    };
                    match store.write(WriteRequest::new(WriteOp::Movement(m))) {
                        Ok(_) => applied += 1,
                        Err(e) if e.kind() == StoreKind::Conflict => refused += 1,
                        Err(e) => panic!("writer {t} request {n}: {e}"),
                    }
                }
                (applied, refused)
            })
        })
        .collect();
    let (mut applied, mut refused) = (0, 0);
    for w in writers {
        let (a, r) = w.join().expect("writer thread");
        applied += a;
        refused += r;
    }
    let stats = store.writer().expect("writer").stats();
    let commits = stats.commits.load(Ordering::Relaxed) as i64;
    assert!(
        commits < applied + refused,
        "{commits} commits for {} requests: no group formed",
        applied + refused
    );
    assert_eq!(refused, 8 * 167);
    close(store);
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT count(*) FROM inventory_transactions WHERE quantity = 1"
        ),
        applied
    );
    assert_eq!(
        query_i64(&s.db, "SELECT sum(current_quantity) FROM inventory_current"),
        applied
    );
    s.ok(&["verify"]);
}

// Four `ora stock apply` processes write to one file at once: SQLite's lock and the busy
// timeout serialise them, and every movement is acknowledged and present.
#[test]
fn four_processes_write_one_file_without_errors() {
    let s = Sandbox::new();
    for i in 0..4 {
        s.ok(&["product", "add", &sku(i), "Widget"]);
    }
    let children: Vec<_> = (0..4)
        .map(|p| {
            let mut child = s
                .cmd(&["stock", "apply"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn apply");
            let mut stdin = child.stdin.take().expect("stdin");
            std::thread::spawn(move || {
                for n in 0..500 {
                    let line = serde_json::json!({"sku": sku(p), "type": "Receive", "quantity": 1, "request_id": format!("p{p}-{n}")});
                    writeln!(stdin, "{line}").expect("write line");
                }
            });
            child
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("apply output");
        assert!(
            out.status.success(),
            "apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answers: Vec<serde_json::Value> = BufReader::new(&out.stdout[..])
            .lines()
            .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
            .collect();
        assert_eq!(answers.len(), 500);
        assert!(
            answers.iter().all(|a| a["ok"] == true),
            "an apply line failed"
        );
    }
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        2_000
    );
    s.ok(&["verify"]);
}

// Two callers at once, the common case of a small warehouse: the waiting one watches for its
// answer instead of sleeping, and is sometimes handed the lead while it watches. Each caller
// writes its own skus, so it knows what every answer must say: its own sku and quantity, and
// the stock after exactly its own movements; the file holds exactly what was answered.
#[test]
fn two_callers_each_get_their_own_answer() {
    let s = Sandbox::new();
    let store = Arc::new(Store::open(&StoreOptions::new(&s.db), OpenMode::Existing).expect("open"));
    seed(&store, 0);
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut stock = [0i64; 20];
                let mut last_id = 0;
                for n in 0..1_500usize {
                    let (k, q) = (n % 20, 1 + (n % 4) as i64);
                    let mut m = Movement::new(&sku(t * 20 + k), TxType::Receive, q);
                    m.notes = Some(format!("t{t}n{n}"));
                    let applied = store
                        .write(WriteRequest::new(WriteOp::Movement(m)))
                        .unwrap_or_else(|e| panic!("caller {t} request {n}: {e}"));
                    stock[k] += q;
                    let Outcome::Movement(r) = applied.outcome else {
                        panic!("caller {t} request {n}: not a movement's answer");
                    };
                    assert_eq!((r.sku.as_str(), r.quantity), (sku(t * 20 + k).as_str(), q));
                    assert_eq!(r.new_quantity, stock[k], "caller {t} request {n}");
                    assert!(r.id > last_id, "caller {t} request {n}: ids go forward");
                    last_id = r.id;
                }
                stock.iter().sum::<i64>()
            })
        })
        .collect();
    let answered: i64 = writers.into_iter().map(|w| w.join().expect("caller")).sum();
    close(store);
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT count(DISTINCT notes) FROM inventory_transactions WHERE notes LIKE 't_n%'"
        ),
        3_000
    );
    assert_eq!(
        query_i64(&s.db, "SELECT sum(current_quantity) FROM inventory_current"),
        answered
    );
    s.ok(&["verify"]);
}
