//! `ora adopt OLD.db [--out NEW.db] [--check]`: brings a database made by the old system (the
//! guide's tables without ora's marker) into ora. Checks the old file (integrity_check, the
//! ledger against the recorded stock, movement types, quantities, dates, orphans), reports
//! what it found, and writes a new ora database with every row: ledger ids kept, values read
//! the way people wrote them ([`normalize`]), and explicit, listed fixes where the old data
//! breaks ora's rules (a balancing movement per sku whose stock disagrees with its ledger,
//! marked in its notes; rows that cannot be movements kept in `adopt_rejected`). The result
//! passes integrity_check and `verify` before it is named. The old file is only read, through
//! a read-only connection; `--check` writes nothing.

mod normalize;
mod tables;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::check::pragma_check;
use crate::file::install;
use crate::fsutil;
use crate::store::{Fixes, Loader, Reconcile};

use crate::store::StoreError;
use crate::store::{check_invariants, VerifyOptions};
use crate::store::{connection, schema};
use tables::{Adoption, Rows};

/// What adopt reads and writes.
#[derive(Debug, Clone)]
pub struct AdoptOptions {
    /// The new ora database (must not exist).
    pub out: PathBuf,
    /// Only report; write nothing.
    pub check_only: bool,
}

/// Rows of one old table and what became of them.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TableCount {
    pub table: String,
    pub old_rows: u64,
    pub adopted: u64,
    /// Rows kept in `adopt_rejected` instead (listed in `problems`).
    pub rejected: u64,
}

/// What adopt found and did.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptReport {
    pub source: PathBuf,
    /// The new database (`None` with `--check`).
    pub output: Option<PathBuf>,
    pub integrity: String,
    pub tables: Vec<TableCount>,
    /// What the old data breaks of ora's rules, one line per kind with examples.
    pub problems: Vec<String>,
    /// What was changed to make it fit, one line per kind.
    pub fixes: Vec<String>,
    /// The ledger and stock fixes (balancing movements, recreated products and orders).
    pub reconciled: Fixes,
    /// Tables of the old file that are not the guide's (not adopted).
    pub not_adopted: Vec<String>,
    pub seconds: f64,
}

/// Notes of a balancing movement adopt records.
const BALANCING_NOTE: &str = "adopt: balances the old ledger to the stock the old system recorded";

fn sql(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| StoreError::sqlite(&format!("adopt: {what}"), e).into()
}

/// Findings of one kind: a count and the first few examples.
#[derive(Default)]
struct Tally {
    kinds: Vec<(String, u64, Vec<String>)>,
}

impl Tally {
    fn add(&mut self, kind: &str, example: impl FnOnce() -> String) {
        match self.kinds.iter_mut().find(|(k, _, _)| k == kind) {
            Some((_, n, ex)) => {
                *n += 1;
                if ex.len() < 3 {
                    ex.push(example());
                }
            }
            None => self.kinds.push((kind.to_string(), 1, vec![example()])),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.kinds
            .iter()
            .map(|(k, n, ex)| format!("{k}: {n} (for example {})", ex.join("; ")))
            .collect()
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        Value::Text(t) => t.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Text(t) => Some(t.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(f) => Some(f.to_string()),
        _ => None,
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        other => format!("{:?}", crate::model::clip(&text(other).unwrap_or_default())),
    }
}

/// An old table's rows as (rowid, column name -> value).
fn rows(old: &Connection, table: &str) -> Result<Rows> {
    let mut st = old
        .prepare(&format!("SELECT rowid, * FROM \"{table}\" ORDER BY rowid"))
        .map_err(sql("read the old file"))?;
    let names: Vec<String> = st
        .column_names()
        .iter()
        .skip(1)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let out = st
        .query_map([], |r| {
            let rowid: i64 = r.get(0)?;
            let mut m = HashMap::new();
            for (i, n) in names.iter().enumerate() {
                m.insert(n.clone(), r.get::<_, Value>(i + 1)?);
            }
            Ok((rowid, m))
        })
        .map_err(sql("read the old file"))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(sql("read the old file"))?;
    Ok(out)
}

fn get<'a>(row: &'a HashMap<String, Value>, names: &[&str]) -> &'a Value {
    names
        .iter()
        .find_map(|n| row.get(*n).filter(|v| !matches!(v, Value::Null)))
        .unwrap_or(&Value::Null)
}

/// Refuses what is not an old database before any SQLite connection opens it.
fn check_source(old: &Path) -> Result<()> {
    let mut head = [0u8; 16];
    let read =
        std::fs::File::open(old).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
    match read {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::usage(format!("adopt: no file at {}", old.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::usage(format!(
            "adopt: {} is not a SQLite database (it is shorter than a SQLite header)",
            old.display()
        ))),
        Err(e) => Err(Error::io(format!("adopt: read {}", old.display()), e)),
        Ok(()) if &head != b"SQLite format 3\0" => Err(Error::usage(format!(
            "adopt: {} is not a SQLite database",
            old.display()
        ))),
        Ok(()) => Ok(()),
    }
}

/// The old file, opened read-only and checked: it is SQLite, not already ora's, undamaged,
/// and has the old system's two main tables.
struct Source {
    conn: Connection,
    tables: Vec<String>,
    integrity: String,
    /// Tables that are not the guide's, with their row counts (reported, not adopted).
    not_adopted: Vec<String>,
}

impl Source {
    fn has(&self, t: &str) -> bool {
        self.tables.iter().any(|x| x.eq_ignore_ascii_case(t))
    }
}

/// The tables of the guide adopt reads.
const KNOWN: [&str; 6] = [
    "inventory_current",
    "inventory_transactions",
    "shipped_orders",
    "shipped_items",
    "workflows",
    "system_kpis",
];

/// Opens and checks the old file (phase 1).
fn open_source(old: &Path) -> Result<Source> {
    check_source(old)?;
    let conn = connection::open_with_flags(
        old,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("open the old file read-only"))?;
    conn.execute_batch("PRAGMA query_only = 1")
        .map_err(sql("open the old file read-only"))?;
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| {
            Error::usage(format!(
                "adopt: {} cannot be read as a SQLite database ({e})",
                old.display()
            ))
        })?;
    if app == schema::APPLICATION_ID {
        return Err(Error::usage(format!(
            "adopt: {} is already an ora database; use it with --db (nothing to adopt)",
            old.display()
        )));
    }
    // A check that cannot even finish (a page it cannot read) is damage too.
    let integrity = pragma_check(&conn, "integrity_check")
        .unwrap_or_else(|e| format!("the check could not finish: {}", e.message()));
    if integrity != "ok" {
        return Err(Error::check_failed(format!(
            "adopt: {} is damaged (integrity_check: {integrity}); nothing was written. Adopt a good copy (the old system's last backup), or salvage it first with `sqlite3 OLD.db .recover | sqlite3 SALVAGED.db` and adopt that",
            old.display()
        )));
    }
    let tables = table_names(&conn)?;
    let source = Source {
        not_adopted: Vec::new(),
        conn,
        tables,
        integrity,
    };
    for t in ["inventory_current", "inventory_transactions"] {
        if !source.has(t) {
            return Err(Error::usage(format!(
                "adopt: {} has no {t} table, so it is not the old system's database (tables: {})",
                old.display(),
                if source.tables.is_empty() {
                    "none".into()
                } else {
                    source.tables.join(", ")
                }
            )));
        }
    }
    let not_adopted = source
        .tables
        .iter()
        .filter(|t| !KNOWN.iter().any(|k| k.eq_ignore_ascii_case(t)))
        .map(|t| {
            let n: i64 = source
                .conn
                .query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))
                .unwrap_or(0);
            format!("{t} ({n} rows)")
        })
        .collect();
    Ok(Source {
        not_adopted,
        ..source
    })
}

fn table_names(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .map_err(sql("read the old schema"))?;
    let r = st
        .query_map([], |r| r.get(0))
        .map_err(sql("read the old schema"))?;
    r.collect::<std::result::Result<_, _>>()
        .map_err(sql("read the old schema"))
}

/// What loading the old rows made (phase 2).
struct Loaded {
    counts: Vec<TableCount>,
    found: Tally,
    fixed: Tally,
    reconciled: Fixes,
}

/// Loads every table of `src` into the new database on `conn` and reconciles the ledger.
fn load(src: &Source, conn: &Connection) -> Result<Loaded> {
    conn.execute_batch(
        "CREATE TABLE adopt_rejected (
            id INTEGER PRIMARY KEY, source_table TEXT NOT NULL, source_rowid INTEGER,
            reason TEXT NOT NULL, fields TEXT NOT NULL)",
    )
    .map_err(sql("create adopt_rejected"))?;
    let mut a = Adoption {
        conn,
        loader: Loader::begin(conn, "(adopted)")?,
        found: Tally::default(),
        fixed: Tally::default(),
        counts: Vec::new(),
        now: crate::model::now_utc(),
    };
    a.products(rows(&src.conn, "inventory_current")?)?;
    a.ledger(rows(&src.conn, "inventory_transactions")?)?;
    if src.has("shipped_orders") {
        a.orders(rows(&src.conn, "shipped_orders")?)?;
    }
    if src.has("shipped_items") {
        a.items(rows(&src.conn, "shipped_items")?)?;
    }
    if src.has("workflows") {
        a.workflows(rows(&src.conn, "workflows")?)?;
    }
    if src.has("system_kpis") {
        a.kpis(rows(&src.conn, "system_kpis")?)?;
    }
    let Adoption {
        loader,
        mut found,
        mut fixed,
        counts,
        ..
    } = a;
    let reconciled = loader.finish(Reconcile::BalanceToStock {
        note: BALANCING_NOTE,
    })?;
    tally_reconciled(&reconciled, &mut found, &mut fixed);
    Ok(Loaded {
        counts,
        found,
        fixed,
        reconciled,
    })
}

/// The ledger fixes reconciliation made, in the report's words.
fn tally_reconciled(r: &Fixes, found: &mut Tally, fixed: &mut Tally) {
    found.add_all("skus whose recorded stock disagrees with their ledger (one balancing movement each, noted)", &r.balancing);
    found.add_all(
        "movements or shipped items of skus the product table lacks (products recreated)",
        &r.recreated_products,
    );
    found.add_all(
        "negative stock levels (balanced to 0: count these products)",
        &r.negative_stock_zeroed,
    );
    if r.recreated_orders > 0 {
        fixed.add(
            "orders recreated from their shipped items (the old system kept none)",
            || format!("{} orders", r.recreated_orders),
        );
    }
}

/// The new database must pass integrity_check and every invariant (phase 3).
fn check_built(tmp: &Path) -> Result<()> {
    let conn = connection::open_plain(tmp).map_err(sql("reopen the new database"))?;
    let checked = pragma_check(&conn, "integrity_check")?;
    let violations = check_invariants(
        &conn,
        &VerifyOptions {
            allow_negative_stock: false,
            skip_integrity: true,
            skip_chain: false,
            after: None,
        },
    )?
    .violations();
    if checked != "ok" || !violations.is_empty() {
        return Err(Error::check_failed(format!(
            "adopt: the new database does not pass its checks ({checked}; {}); nothing was written. Please report this",
            violations.join("; ")
        )));
    }
    Ok(())
}

/// Checks `old` and, unless `check_only`, writes the adopted database to `o.out`: the old file
/// is opened and checked, its rows loaded into a new database built beside `o.out` (even with
/// `--check`, so the report says exactly what adopting would do), the result checked, and
/// only then named.
pub fn run(old: &Path, o: &AdoptOptions) -> Result<AdoptReport> {
    let t0 = Instant::now();
    let started = crate::model::now_utc();
    if !o.check_only && o.out.exists() {
        return Err(Error::usage(format!(
            "adopt: {} already exists; pass another --out (the old file is never changed)",
            o.out.display()
        )));
    }
    let src = open_source(old)?;
    let out_dir = fsutil::parent_dir(&o.out);
    if !out_dir.is_dir() {
        return Err(Error::usage(format!(
            "adopt: the directory {} does not exist",
            out_dir.display()
        )));
    }
    let building = install::Building::beside(&o.out, "adopt");
    let loaded = {
        let conn = building.create("adopt")?;
        load(&src, &conn)?
    };
    let Source {
        conn: src_conn,
        integrity,
        not_adopted,
        ..
    } = src;
    drop(src_conn);
    check_built(building.path())?;
    let output = if o.check_only {
        None
    } else {
        install::seal_built(building.path(), "adopt")?;
        building.name_as(
            &o.out,
            "adopt",
            &crate::store::lineage::Origin::new_database("adopt", &old.display().to_string()),
        )?;
        crate::file::oplog::record(
            &o.out,
            "adopt",
            &started,
            true,
            &serde_json::json!({
                "from": old.display().to_string(),
                "rows": loaded.counts.iter().map(|t| t.adopted).sum::<u64>(),
                "fixes": loaded.fixed.lines(),
                "balancing": loaded.reconciled.balancing.len(),
            }),
        );
        Some(o.out.clone())
    };
    Ok(AdoptReport {
        source: old.to_path_buf(),
        output,
        integrity,
        tables: loaded.counts,
        problems: loaded.found.lines(),
        fixes: loaded.fixed.lines(),
        reconciled: loaded.reconciled,
        not_adopted,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

impl Tally {
    fn add_all(&mut self, kind: &str, items: &[String]) {
        for i in items {
            self.add(kind, || i.clone());
        }
    }
}
