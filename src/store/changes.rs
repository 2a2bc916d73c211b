//! The recorder's journal and the changeset it folds into: every row change of a transaction
//! as the pre-update hook saw it (its table, its kind, its old and new values encoded as the
//! changeset encodes values), then, at the end, one change per row in the session
//! extension's "changeset" format, with the same rules that extension follows:
//! - a row inserted then changed is one INSERT of its last values; inserted then deleted,
//!   nothing;
//! - a row changed many times is one UPDATE from its first old values to its last new ones,
//!   carrying the primary key and the changed columns only, and nothing when it ends as it
//!   began; deleted then inserted again, one UPDATE;
//! - an UPDATE that moves the primary key is a DELETE of the old key and an INSERT of the new;
//! - a change made by a trigger is "indirect" unless the row was also changed directly;
//! - a row whose primary key holds a NULL is left out.
//!
//! Tables come in the order the transaction first changed them, rows likewise. No SQL but
//! reading a table's columns ([`Table::load`]), no SQLite call but reading a value the hook
//! hands over.

use std::collections::HashMap;
use std::ffi::c_int;
use std::rc::Rc;

use rusqlite::{ffi, Connection};

use super::changeset_ids::value_spans;
use super::recorder::Tables;

pub const INSERT: u8 = 18;
pub const UPDATE: u8 = 23;
pub const DELETE: u8 = 9;

const T_INTEGER: u8 = 1;
const T_FLOAT: u8 = 2;
const T_TEXT: u8 = 3;
const T_BLOB: u8 = 4;
const T_NULL: u8 = 5;

/// One table's recorded columns.
pub struct Table {
    pub name: String,
    /// Every column SQLite's hook counts, generated ones included.
    pub total: c_int,
    /// The hook's index of each recorded (visible) column, in table order.
    pub columns: Vec<c_int>,
    /// Per recorded column: its place in the primary key (1, 2, ...) or 0.
    pub pk: Vec<u8>,
    /// Per recorded column: REAL affinity (SQLite stores a whole number there as an integer
    /// and reads it back as a real; the hook hands over the stored integer).
    pub real: Vec<bool>,
}

/// Whether a declared type gives REAL affinity (SQLite's rules, in their order).
fn real_affinity(declared: &str) -> bool {
    let t = declared.to_ascii_uppercase();
    let has = |s: &str| t.contains(s);
    !(has("INT") || has("CHAR") || has("CLOB") || has("TEXT") || has("BLOB") || t.is_empty())
        && (has("REAL") || has("FLOA") || has("DOUB"))
}

impl Table {
    /// The table's columns from `table_xinfo`; None when it has no primary key.
    pub fn load(conn: &Connection, name: &str) -> rusqlite::Result<Option<Table>> {
        let mut st =
            conn.prepare("SELECT cid, pk, hidden, type FROM pragma_table_xinfo(?1, 'main')")?;
        let mut rows = st.query([name])?;
        let (mut total, mut columns, mut pk, mut real) = (0, Vec::new(), Vec::new(), Vec::new());
        while let Some(r) = rows.next()? {
            total += 1;
            let (cid, key, hidden): (c_int, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if hidden == 0 {
                columns.push(cid);
                pk.push(u8::try_from(key).unwrap_or(u8::MAX));
                real.push(real_affinity(&r.get::<_, String>(3)?));
            }
        }
        if pk.iter().all(|&k| k == 0) {
            return Ok(None);
        }
        Ok(Some(Table {
            name: name.to_string(),
            total,
            columns,
            pk,
            real,
        }))
    }
}

/// One change the hook saw: spans of `Journal::bytes` (empty when the kind has none).
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub table: u32,
    pub op: u8,
    pub indirect: bool,
    pub old: (usize, usize),
    pub new: (usize, usize),
}

/// What the hook saw in one transaction.
pub struct Journal {
    pub tables: Rc<Tables>,
    pub bytes: Vec<u8>,
    pub events: Vec<Event>,
    /// Why the record cannot be built (the transaction must not commit with it).
    pub failed: Option<String>,
}

impl Journal {
    pub fn new(tables: Rc<Tables>) -> Journal {
        Journal {
            tables,
            bytes: Vec::with_capacity(16 * 1024),
            events: Vec::with_capacity(256),
            failed: None,
        }
    }
}

/// Appends one value in the changeset's encoding; an integer in a column of REAL affinity
/// (`real`) as the real SQLite reads back.
///
/// # Safety
/// `v` is null or a value SQLite owns for the duration of the call.
pub unsafe fn put_value(out: &mut Vec<u8>, v: *mut ffi::sqlite3_value, real: bool) {
    if v.is_null() {
        out.push(T_NULL);
        return;
    }
    // SAFETY: v is a live value (the caller's promise); text before bytes, as SQLite asks.
    unsafe {
        match ffi::sqlite3_value_type(v) {
            ffi::SQLITE_INTEGER if real => {
                out.push(T_FLOAT);
                let f = ffi::sqlite3_value_int64(v) as f64;
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            ffi::SQLITE_INTEGER => {
                out.push(T_INTEGER);
                out.extend_from_slice(&ffi::sqlite3_value_int64(v).to_be_bytes());
            }
            ffi::SQLITE_FLOAT => {
                out.push(T_FLOAT);
                out.extend_from_slice(&ffi::sqlite3_value_double(v).to_bits().to_be_bytes());
            }
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_value_text(v);
                put_bytes(out, T_TEXT, p, ffi::sqlite3_value_bytes(v));
            }
            ffi::SQLITE_BLOB => {
                let p = ffi::sqlite3_value_blob(v) as *const u8;
                put_bytes(out, T_BLOB, p, ffi::sqlite3_value_bytes(v));
            }
            _ => out.push(T_NULL),
        }
    }
}

/// # Safety
/// `p` is null or points at `n` readable bytes.
unsafe fn put_bytes(out: &mut Vec<u8>, kind: u8, p: *const u8, n: c_int) {
    let n = usize::try_from(n).unwrap_or(0);
    out.push(kind);
    put_varint(out, n as u64);
    if !p.is_null() && n > 0 {
        // SAFETY: the caller's promise.
        out.extend_from_slice(unsafe { std::slice::from_raw_parts(p, n) });
    }
}

/// SQLite's varint: big-endian groups of seven bits, the high bit on all but the last byte
/// (lengths here stay far below the nine-byte form).
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    let mut groups = [0u8; 10];
    let mut n = 0;
    loop {
        groups[n] = (v & 0x7f) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(if i == 0 { groups[i] } else { groups[i] | 0x80 });
    }
}

/// Whether two encoded values are the same value (a real compares as a number, as the session
/// extension compares it).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.first() == Some(&T_FLOAT) && b.first() == Some(&T_FLOAT) && a.len() == 9 && b.len() == 9 {
        let f = |x: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&x[1..9]);
            f64::from_bits(u64::from_be_bytes(w))
        };
        return f(a) == f(b);
    }
    a == b
}

/// One row's net change: its first old image (None: it did not exist) and its last new one
/// (None: it is gone).
struct Row {
    table: u32,
    first: Option<(usize, usize)>,
    last: Option<(usize, usize)>,
    indirect: bool,
}

fn corrupt(why: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        ffi::Error::new(ffi::SQLITE_INTERNAL),
        Some(format!("record the commit: {why}")),
    )
}

/// The key of an image: its primary-key fields' bytes (None when one of them is NULL).
fn key(bytes: &[u8], span: (usize, usize), table: &Table) -> rusqlite::Result<Option<Vec<u8>>> {
    let img = bytes.get(span.0..span.1).ok_or_else(|| corrupt("span"))?;
    let f = value_spans(img, table.columns.len())?;
    let mut k = Vec::with_capacity(16);
    for (i, &(s, e)) in f.iter().enumerate() {
        if table.pk.get(i).copied().unwrap_or(0) != 0 {
            if img[s] == T_NULL {
                return Ok(None);
            }
            k.extend_from_slice(&img[s..e]);
        }
    }
    Ok(Some(k))
}

/// Folds the journal into one change per row and encodes the changeset.
pub fn build(j: &Journal) -> rusqlite::Result<Vec<u8>> {
    if let Some(why) = &j.failed {
        return Err(corrupt(why));
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut index: HashMap<(u32, Vec<u8>), usize> = HashMap::new();
    let mut order: Vec<u32> = Vec::new();
    for e in &j.events {
        let table = j.tables.get(e.table).ok_or_else(|| corrupt("table"))?;
        let mut touch = |span: (usize, usize), before: bool, after: Option<(usize, usize)>| {
            let Some(k) = key(&j.bytes, span, table)? else {
                return Ok::<(), rusqlite::Error>(());
            };
            let at = *index.entry((e.table, k)).or_insert_with(|| {
                if !order.contains(&e.table) {
                    order.push(e.table);
                }
                rows.push(Row {
                    table: e.table,
                    first: before.then_some(span),
                    last: None,
                    indirect: e.indirect,
                });
                rows.len() - 1
            });
            rows[at].last = after;
            rows[at].indirect &= e.indirect;
            Ok(())
        };
        match e.op {
            INSERT => touch(e.new, false, Some(e.new))?,
            DELETE => touch(e.old, true, None)?,
            _ => {
                let same_key = key(&j.bytes, e.old, table)? == key(&j.bytes, e.new, table)?;
                if same_key {
                    touch(e.old, true, Some(e.new))?;
                } else {
                    touch(e.old, true, None)?;
                    touch(e.new, false, Some(e.new))?;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(j.bytes.len() + 256);
    for t in order {
        let table = j.tables.get(t).ok_or_else(|| corrupt("table"))?;
        let header = out.len();
        put_header(&mut out, table);
        let body = out.len();
        for row in rows.iter().filter(|r| r.table == t) {
            put_row(&mut out, &j.bytes, row, table)?;
        }
        if out.len() == body {
            out.truncate(header);
        }
    }
    Ok(out)
}

fn put_header(out: &mut Vec<u8>, table: &Table) {
    out.push(b'T');
    put_varint(out, table.columns.len() as u64);
    out.extend_from_slice(&table.pk);
    out.extend_from_slice(table.name.as_bytes());
    out.push(0);
}

fn span(bytes: &[u8], s: (usize, usize)) -> rusqlite::Result<&[u8]> {
    bytes.get(s.0..s.1).ok_or_else(|| corrupt("span"))
}

/// Appends one row's net change (nothing when it has none).
fn put_row(out: &mut Vec<u8>, bytes: &[u8], row: &Row, table: &Table) -> rusqlite::Result<()> {
    let indirect = u8::from(row.indirect);
    match (row.first, row.last) {
        (None, None) => {}
        (None, Some(new)) => {
            out.extend_from_slice(&[INSERT, indirect]);
            out.extend_from_slice(span(bytes, new)?);
        }
        (Some(old), None) => {
            out.extend_from_slice(&[DELETE, indirect]);
            out.extend_from_slice(span(bytes, old)?);
        }
        (Some(old), Some(new)) => {
            put_update(out, span(bytes, old)?, span(bytes, new)?, table, indirect)?
        }
    }
    Ok(())
}

/// An UPDATE from `old` to `new`: the old record carries the key and the changed columns, the
/// new record the changed columns; the others are "undefined" (0). Nothing when no column
/// changed.
fn put_update(
    out: &mut Vec<u8>,
    old: &[u8],
    new: &[u8],
    table: &Table,
    indirect: u8,
) -> rusqlite::Result<()> {
    let n = table.columns.len();
    let fo = value_spans(old, n)?;
    let fnew = value_spans(new, n)?;
    let changed: Vec<bool> = fo
        .iter()
        .zip(&fnew)
        .map(|(&(a, b), &(c, d))| !same(&old[a..b], &new[c..d]))
        .collect();
    if !changed.iter().any(|&c| c) {
        return Ok(());
    }
    out.extend_from_slice(&[UPDATE, indirect]);
    for (i, &(a, b)) in fo.iter().enumerate() {
        if changed[i] || table.pk.get(i).copied().unwrap_or(0) != 0 {
            out.extend_from_slice(&old[a..b]);
        } else {
            out.push(0);
        }
    }
    for (i, &(c, d)) in fnew.iter().enumerate() {
        if changed[i] {
            out.extend_from_slice(&new[c..d]);
        } else {
            out.push(0);
        }
    }
    Ok(())
}
