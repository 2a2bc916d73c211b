//! `ora dump`: a logical SQL dump of one consistent snapshot that the sqlite3 CLI loads into
//! an equal database (`sqlite3 new.db < dump.sql`): tables, rows (generated columns left to
//! be recomputed), then indexes and triggers, the schema version and application id, all in
//! one transaction. Written to stdout or a file (gzip, on all cores, when it ends in `.gz`).
//! Reads only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::file::backup::compress;
use crate::file::check::open_source;
use crate::store::connection::Tuning;
use crate::store::schema::quote_ident;
use crate::store::StoreError;

/// What a dump wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DumpReport {
    pub out: Option<PathBuf>,
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
}

fn sql(e: rusqlite::Error) -> Error {
    StoreError::sqlite("dump: read the database", e).into()
}

/// Appends a SQL literal for `v`.
fn literal(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => out.extend_from_slice(b"NULL"),
        ValueRef::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Real(f) => {
            if f.is_finite() {
                let _ = write!(out, "{f:?}");
            } else if f > 0.0 {
                out.extend_from_slice(b"1e999");
            } else {
                out.extend_from_slice(b"-1e999");
            }
        }
        ValueRef::Text(t) => {
            if t.contains(&0) {
                // A NUL cannot appear in a SQL string literal: write the bytes as a blob cast.
                out.extend_from_slice(b"CAST(");
                hex_blob(out, t);
                out.extend_from_slice(b" AS TEXT)");
            } else {
                out.push(b'\'');
                for &b in t {
                    if b == b'\'' {
                        out.push(b'\'');
                    }
                    out.push(b);
                }
                out.push(b'\'');
            }
        }
        ValueRef::Blob(b) => hex_blob(out, b),
    }
}

fn hex_blob(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"X'");
    for &x in b {
        out.push(HEX[(x >> 4) as usize]);
        out.push(HEX[(x & 15) as usize]);
    }
    out.push(b'\'');
}

/// Produces the dump as chunks of about `chunk` bytes; returns (tables, rows).
///
/// Kept whole: one streaming loop over the schema in dump order (tables, rows, indexes, triggers,
/// the rebuilt search index) that fills one buffer and hands it on at each chunk boundary; the
/// buffer and the counters are the loop's state.
fn produce(
    conn: &Connection,
    chunk: usize,
    emit: &mut dyn FnMut(Vec<u8>) -> Result<()>,
) -> Result<(usize, u64)> {
    let mut buf = Vec::with_capacity(chunk + 64 * 1024);
    buf.extend_from_slice(b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n");
    let objects: Vec<(String, String, String)> = {
        let mut st = conn
            .prepare(
                "SELECT type, name, sql FROM sqlite_schema
                  WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'
                  ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid",
            )
            .map_err(sql)?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql)?
    };
    // The search index (a virtual table) is created empty and rebuilt at the end; its shadow
    // tables belong to it and are not dumped.
    let derived = crate::store::schema::derived_tables(conn)?;
    let is_virtual = |create: &str| {
        create
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("CREATE VIRTUAL")
    };
    let (mut tables, mut rows) = (0usize, 0u64);
    for (kind, name, create) in &objects {
        if derived.contains(name) {
            if kind == "table" && is_virtual(create) {
                buf.extend_from_slice(create.as_bytes());
                buf.extend_from_slice(b";\n");
            }
            continue;
        }
        if kind != "table" {
            continue;
        }
        tables += 1;
        buf.extend_from_slice(create.as_bytes());
        buf.extend_from_slice(b";\n");
        // Generated columns (hidden 2 or 3) are recomputed by the loader, not inserted.
        let cols: Vec<String> = {
            let mut st = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_xinfo({}) WHERE hidden = 0 ORDER BY cid",
                    literal_text(name)
                ))
                .map_err(sql)?;
            let r = st.query_map([], |r| r.get::<_, String>(0)).map_err(sql)?;
            r.collect::<std::result::Result<_, _>>().map_err(sql)?
        };
        let col_list = cols
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(",");
        let all_columns: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM pragma_table_xinfo({})",
                    literal_text(name)
                ),
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        // The column list is needed only to skip generated columns; without it the dump is
        // a third smaller.
        let prefix = if all_columns as usize == cols.len() {
            format!("INSERT INTO {} VALUES(", quote_ident(name))
        } else {
            format!("INSERT INTO {}({col_list}) VALUES(", quote_ident(name))
        };
        let mut st = conn
            .prepare(&format!("SELECT {col_list} FROM {}", quote_ident(name)))
            .map_err(sql)?;
        let mut q = st.query([]).map_err(sql)?;
        while let Some(row) = q.next().map_err(sql)? {
            buf.extend_from_slice(prefix.as_bytes());
            for i in 0..cols.len() {
                if i > 0 {
                    buf.push(b',');
                }
                literal(&mut buf, row.get_ref(i).map_err(sql)?);
            }
            buf.extend_from_slice(b");\n");
            rows += 1;
            if buf.len() >= chunk {
                emit(std::mem::replace(
                    &mut buf,
                    Vec::with_capacity(chunk + 64 * 1024),
                ))?;
            }
        }
    }
    for (kind, name, create) in &objects {
        if kind != "table" && !derived.contains(name) {
            buf.extend_from_slice(create.as_bytes());
            buf.extend_from_slice(b";\n");
        }
    }
    if derived.iter().any(|d| d == "product_search") {
        buf.extend_from_slice(crate::store::schema::REBUILD_DERIVED.as_bytes());
        buf.push(b'\n');
    }
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(sql)?;
    let _ = write!(
        buf,
        "PRAGMA user_version={user_version};\nPRAGMA application_id={app_id};\nCOMMIT;\n"
    );
    emit(buf)?;
    Ok((tables, rows))
}

fn literal_text(s: &str) -> String {
    let mut v = Vec::new();
    literal(&mut v, ValueRef::Text(s.as_bytes()));
    String::from_utf8_lossy(&v).into_owned()
}

/// Dumps `db` to `out` (stdout when `None`).
pub fn run(db: &Path, out: Option<&Path>, tuning: &Tuning, level: u32) -> Result<DumpReport> {
    let t0 = Instant::now();
    let conn = open_source(db, tuning, "dump")?;
    conn.execute_batch("BEGIN").map_err(sql)?;
    let (tables, rows, bytes) = match out {
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            let mut bytes = 0u64;
            let (t, r) = produce(&conn, 1 << 20, &mut |chunk| {
                bytes += chunk.len() as u64;
                w.write_all(&chunk)
                    .map_err(|e| Error::io("dump: write to stdout", e))
            })?;
            w.flush()
                .map_err(|e| Error::io("dump: write to stdout", e))?;
            (t, r, bytes)
        }
        Some(path) => {
            let io = |e: std::io::Error| Error::io(format!("dump: write {}", path.display()), e);
            let mut pending = crate::fsutil::PendingFile::create(path).map_err(io)?;
            let gz = path.extension().is_some_and(|e| e == "gz");
            let (mut tables, mut rows) = (0, 0);
            let bytes = if gz {
                let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
                let c = compress::compress(pending.file(), level, threads, |send| {
                    (tables, rows) =
                        produce(&conn, compress::CHUNK_BYTES, &mut |chunk| send(chunk))?;
                    Ok::<(), Error>(())
                })?;
                c.bytes_out
            } else {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, pending.file());
                let mut bytes = 0u64;
                (tables, rows) = produce(&conn, 1 << 20, &mut |chunk| {
                    bytes += chunk.len() as u64;
                    w.write_all(&chunk).map_err(io)
                })?;
                w.flush().map_err(io)?;
                bytes
            };
            pending.commit().map_err(io)?;
            (tables, rows, bytes)
        }
    };
    let _ = conn.execute_batch("COMMIT");
    Ok(DumpReport {
        out: out.map(Path::to_path_buf),
        tables,
        rows,
        bytes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
