//! The recorder against the session extension's own recorder, on random transactions: the
//! same changes, byte for byte, and applying them rebuilds the database.

use std::rc::Rc;

use rusqlite::Connection;

use super::super::session::{self, reference};
use super::{Recorder, Savepoint, Tables};

/// splitmix64: the same seed gives the same steps.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

static SKIP: &[&str] = &["skip_", "sqlite_"];
static SKIP_REF: &[&str] = &["skip_", "sqlite_"];

const SCHEMA: &str = "
    CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER NOT NULL DEFAULT 0, r REAL, b BLOB,
                   g TEXT GENERATED ALWAYS AS (upper(v)) VIRTUAL,
                   s INTEGER GENERATED ALWAYS AS (n * 2) STORED);
    CREATE TABLE k(a TEXT NOT NULL, b INTEGER NOT NULL, v TEXT, PRIMARY KEY (b, a));
    CREATE TABLE w(a TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
    CREATE TABLE nopk(x);
    CREATE TABLE skip_me(id INTEGER PRIMARY KEY, v);
    CREATE TABLE log(id INTEGER PRIMARY KEY, what TEXT NOT NULL);
    CREATE TRIGGER t_log AFTER UPDATE OF v ON t BEGIN INSERT INTO log(what) VALUES ('t ' || new.id); END;
    CREATE TRIGGER t_gone AFTER DELETE ON t BEGIN DELETE FROM k WHERE b = old.id; END;
";

fn db() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(SCHEMA).unwrap();
    c
}

/// One random step; the same seed gives the same steps on any connection.
fn step(c: &Connection, r: &mut Rng, depth: u32) {
    let id = r.below(12) as i64;
    let v = ["a", "b", "", "ünï", "a"][r.below(5) as usize];
    let _ = match r.below(14) {
        0 | 1 => c.execute(
            "INSERT OR IGNORE INTO t(id, v, n, r, b) VALUES (?1, ?2, ?3, ?4, ?5)",
            (id, v, id * 3, 0.5 * id as f64, vec![id as u8; 3]),
        ),
        2 => c.execute(
            "INSERT OR REPLACE INTO t(id, v, n) VALUES (?1, ?2, 7)",
            (id, v),
        ),
        3 => c.execute("UPDATE t SET v = ?2 WHERE id = ?1", (id, v)),
        4 => c.execute("UPDATE t SET n = n + 1, r = NULL WHERE id < ?1", [id]),
        5 => c.execute("UPDATE OR IGNORE t SET id = id + 20 WHERE id = ?1", [id]),
        6 => c.execute("DELETE FROM t WHERE id = ?1", [id]),
        7 => c.execute(
            "INSERT INTO k(a, b, v) VALUES (?2, ?1, ?2) ON CONFLICT DO UPDATE SET v = v || 'x'",
            (id, v),
        ),
        8 => c.execute("DELETE FROM k WHERE a = ?1", [v]),
        9 => c.execute(
            "INSERT INTO w(a, v) VALUES (?1, ?2) ON CONFLICT DO UPDATE SET v = excluded.v",
            (v, id),
        ),
        10 => c.execute("INSERT INTO nopk VALUES (?1)", [id]),
        11 => c.execute("INSERT INTO skip_me(v) VALUES (?1)", [id]),
        12 => c.execute("UPDATE t SET v = v WHERE id = ?1", [id]),
        _ if depth < 3 => {
            let sp = Savepoint::take(c, if depth == 0 { "a" } else { "b" }).unwrap();
            for _ in 0..r.below(6) {
                step(c, r, depth + 1);
            }
            if r.below(2) == 0 {
                sp.roll_back(c).unwrap();
            } else {
                sp.release(c).unwrap();
            }
            Ok(0)
        }
        _ => Ok(0),
    };
}

fn run(c: &Connection, seed: u64, steps: u32) {
    let mut r = Rng::new(seed);
    c.execute_batch("BEGIN").unwrap();
    for _ in 0..steps {
        step(c, &mut r, 0);
    }
    c.execute_batch("COMMIT").unwrap();
}

fn dump(c: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    for (t, order) in [("t", "id"), ("k", "b, a"), ("w", "a"), ("log", "id")] {
        let mut st = c
            .prepare(&format!("SELECT * FROM {t} ORDER BY {order}"))
            .unwrap();
        let n = st.column_count();
        let rows = st
            .query_map([], |row| {
                let mut s = format!("{t}:");
                for i in 0..n {
                    s.push_str(&format!("{:?};", row.get_ref(i).unwrap()));
                }
                Ok(s)
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

/// The changes of a changeset as (table, op, indirect, values) byte strings, sorted.
fn changes_of(cs: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let (mut at, mut n, mut name) = (0usize, 0usize, Vec::new());
    while at < cs.len() {
        if cs[at] == b'T' {
            n = usize::from(cs[at + 1]);
            let end = cs[at + 2 + n..].iter().position(|&b| b == 0).unwrap();
            name = cs[at + 1..at + 2 + n + end].to_vec();
            at += 2 + n + end + 1;
            continue;
        }
        let records = if cs[at] == super::super::changes::UPDATE {
            2
        } else {
            1
        };
        let start = at;
        at += 2;
        let f = super::super::changeset_ids::value_spans(&cs[at..], n * records).unwrap();
        at += f.last().map_or(0, |l| l.1);
        let mut c = name.clone();
        c.extend_from_slice(&cs[start..at]);
        out.push(c);
    }
    out.sort();
    out
}

#[test]
fn the_same_changes_as_the_session_extension_and_they_rebuild_the_database() {
    for seed in 0..300u64 {
        let steps = 1 + (seed % 40) as u32;
        let (mine, theirs) = (db(), db());
        let tables = Rc::new(Tables::load(&mine, SKIP).unwrap());
        let rec = Recorder::start(&mine, tables).unwrap();
        run(&mine, seed, steps);
        let cs = rec.changeset().unwrap();
        drop(rec);
        let reference = reference::Recorder::start(&theirs, &SKIP_REF).unwrap();
        run(&theirs, seed, steps);
        let cs_ref = reference.changeset().unwrap();
        drop(reference);
        assert_eq!(dump(&mine), dump(&theirs), "seed {seed}: the runs differ");
        assert_eq!(changes_of(&cs), changes_of(&cs_ref), "seed {seed}");
        let copy = db();
        copy.execute_batch("BEGIN").unwrap();
        session::apply(&copy, &cs).unwrap();
        copy.execute_batch("COMMIT").unwrap();
        assert_eq!(dump(&copy), dump(&mine), "seed {seed}: applied");
    }
}

#[test]
fn transactions_in_a_row_merge_with_the_session_extensions_changesets() {
    let (a, copy) = (db(), db());
    let mut group = session::Group::new().unwrap();
    for seed in 0..20u64 {
        let cs = if seed % 2 == 0 {
            let rec = Recorder::start(&a, Rc::new(Tables::load(&a, SKIP).unwrap())).unwrap();
            run(&a, 1000 + seed, 25);
            rec.changeset().unwrap()
        } else {
            let rec = reference::Recorder::start(&a, &SKIP_REF).unwrap();
            run(&a, 1000 + seed, 25);
            rec.changeset().unwrap()
        };
        group.add(&cs).unwrap();
    }
    let merged = group.output().unwrap();
    copy.execute_batch("BEGIN").unwrap();
    session::apply(&copy, &merged).unwrap();
    copy.execute_batch("COMMIT").unwrap();
    assert_eq!(dump(&copy), dump(&a));
}

#[test]
fn a_table_it_has_no_columns_for_fails_the_record() {
    let c = db();
    let rec = Recorder::start(&c, Rc::new(Tables::load(&c, SKIP).unwrap())).unwrap();
    c.execute_batch(
        "BEGIN; CREATE TABLE later(id INTEGER PRIMARY KEY); INSERT INTO later VALUES (1);",
    )
    .unwrap();
    let err = rec.changeset().unwrap_err().to_string();
    assert!(err.contains("later"), "{err}");
    // A table the schema skips is never a failure, even a new one.
    drop(rec);
    c.execute_batch("ROLLBACK").unwrap();
    let rec = Recorder::start(&c, Rc::new(Tables::load(&c, SKIP).unwrap())).unwrap();
    c.execute_batch("BEGIN; CREATE TABLE skip_later(id INTEGER PRIMARY KEY); INSERT INTO skip_later VALUES (1); COMMIT;")
        .unwrap();
    assert!(rec.changeset().unwrap().is_empty());
}

#[test]
fn one_capture_per_thread_and_the_hook_leaves_with_the_recorder() {
    let (a, b) = (db(), db());
    let rec = Recorder::start(&a, Rc::new(Tables::load(&a, SKIP).unwrap())).unwrap();
    assert!(Recorder::start(&b, Rc::new(Tables::load(&b, SKIP).unwrap())).is_err());
    drop(rec);
    let rec = Recorder::start(&b, Rc::new(Tables::load(&b, SKIP).unwrap())).unwrap();
    a.execute("INSERT INTO t(id, v) VALUES (1, 'x')", [])
        .unwrap();
    assert!(
        rec.changeset().unwrap().is_empty(),
        "a's changes are not b's"
    );
}

#[test]
fn a_savepoint_on_another_connection_leaves_the_record_alone() {
    let (a, b) = (db(), db());
    let rec = Recorder::start(&a, Rc::new(Tables::load(&a, SKIP).unwrap())).unwrap();
    b.execute_batch("BEGIN").unwrap();
    let sp = Savepoint::take(&b, "elsewhere").unwrap();
    a.execute("INSERT INTO t(id, v) VALUES (1, 'kept')", [])
        .unwrap();
    b.execute("INSERT INTO t(id, v) VALUES (9, 'undone')", [])
        .unwrap();
    sp.roll_back(&b).unwrap();
    let rows = session::inserted_rows(&rec.changeset().unwrap(), "t").unwrap();
    assert_eq!(rows.len(), 1, "a's insert is still recorded");
}
