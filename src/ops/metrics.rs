//! `ora metrics` (the daily metrics report: file and WAL size, free pages, cache, journal
//! mode, foreign keys, row counts per table) and `ora explain SQL` (query plan and timing of
//! a read-only statement). Reads only, on a query_only connection.

use std::path::Path;
use std::time::Instant;

use rusqlite::Connection;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::check::open_source;
use crate::file::install::companion;
use crate::store::connection::Tuning;
use crate::store::StoreError;

/// The sizes and page counts of a database file: what the metrics report and health both
/// show (flattened into their JSON).
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct FileStats {
    pub size_bytes: u64,
    pub wal_bytes: u64,
    pub page_size: i64,
    pub page_count: i64,
    pub freelist_count: i64,
    pub free_percent: f64,
    /// The file gives free pages back in slices (`auto_vacuum = INCREMENTAL`, every file ora
    /// made since) instead of keeping them until a VACUUM.
    pub incremental_vacuum: bool,
}

impl FileStats {
    /// The sizes of `db` and its WAL (0 for a missing file); page counts stay 0.
    pub fn sizes(db: &Path) -> FileStats {
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        FileStats {
            size_bytes: len(db),
            wal_bytes: len(&companion(db, "-wal")),
            ..FileStats::default()
        }
    }

    /// Adds the page counts read through `conn`.
    pub fn read_pages(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let int = |q: &str| conn.query_row(q, [], |r| r.get::<_, i64>(0));
        self.page_size = int("PRAGMA page_size")?;
        self.page_count = int("PRAGMA page_count")?;
        self.freelist_count = int("PRAGMA freelist_count")?;
        self.incremental_vacuum = int("PRAGMA auto_vacuum")? == 2;
        self.free_percent = if self.page_count > 0 {
            100.0 * self.freelist_count as f64 / self.page_count as f64
        } else {
            0.0
        };
        Ok(())
    }
}

/// The metrics report.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub database: String,
    #[serde(flatten)]
    pub file: FileStats,
    pub cache_size_kib: i64,
    pub journal_mode: String,
    pub foreign_keys: bool,
    pub schema_version: i64,
    pub sqlite_version: String,
    /// (table, rows)
    pub tables: Vec<(String, i64)>,
    /// Bytes on disk of every table and index, largest first.
    pub objects: Vec<ObjectSize>,
    /// How many tables and indexes the schema has (internal FTS tables included).
    pub table_count: i64,
    pub index_count: i64,
}

/// A table or index and the bytes its pages take.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ObjectSize {
    pub name: String,
    /// "table" or "index".
    pub kind: String,
    pub bytes: i64,
}

/// Every table's and index's bytes on disk (the dbstat table reads every page once). The
/// internal tables of a full-text index are counted under the index's own name.
pub fn object_sizes(conn: &rusqlite::Connection) -> Result<Vec<ObjectSize>> {
    let virtuals: Vec<String> = {
        let mut st = conn
            .prepare(
                "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'virtual'",
            )
            .map_err(sql)?;
        let r = st.query_map([], |r| r.get(0)).map_err(sql)?;
        r.collect::<std::result::Result<_, _>>().map_err(sql)?
    };
    let mut st = conn
        .prepare(
            "SELECT s.name, coalesce(m.type, 'table'), s.pgsize,
                    (SELECT type FROM pragma_table_list WHERE schema = 'main' AND name = s.name)
               FROM dbstat AS s LEFT JOIN sqlite_schema AS m ON m.name = s.name
              WHERE s.aggregate = 1",
        )
        .map_err(sql)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .map_err(sql)?;
    let mut sizes: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for row in rows {
        let (name, kind, bytes, list_type) = row.map_err(sql)?;
        let owner = if list_type.as_deref() == Some("shadow") {
            virtuals.iter().find(|v| name.starts_with(&format!("{v}_")))
        } else {
            None
        };
        let key = match owner {
            Some(v) => (v.clone(), "full-text index".to_string()),
            None => (name, kind),
        };
        *sizes.entry(key).or_default() += bytes;
    }
    let mut out: Vec<ObjectSize> = sizes
        .into_iter()
        .map(|((name, kind), bytes)| ObjectSize { name, kind, bytes })
        .collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
    Ok(out)
}

fn sql(e: rusqlite::Error) -> Error {
    StoreError::sqlite("metrics", e).into()
}

/// Gathers the metrics report of `db`.
pub fn collect(db: &Path, tuning: &Tuning) -> Result<Metrics> {
    let conn = open_source(db, tuning, "metrics")?;
    let int = |q: &str| conn.query_row(q, [], |r| r.get::<_, i64>(0)).map_err(sql);
    let text = |q: &str| {
        conn.query_row(q, [], |r| r.get::<_, String>(0))
            .map_err(sql)
    };
    let mut file = FileStats::sizes(db);
    file.read_pages(&conn).map_err(sql)?;
    let names: Vec<String> = {
        let mut st = conn
            .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'virtual') AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .map_err(sql)?;
        let r = st.query_map([], |r| r.get(0)).map_err(sql)?;
        r.collect::<std::result::Result<_, _>>().map_err(sql)?
    };
    let mut tables = Vec::with_capacity(names.len());
    for n in names {
        let count = int(&format!(
            "SELECT count(*) FROM {}",
            crate::store::schema::quote_ident(&n)
        ))?;
        tables.push((n, count));
    }
    let cache = int("PRAGMA cache_size")?;
    let objects = object_sizes(&conn)?;
    let table_count = int("SELECT count(*) FROM sqlite_schema WHERE type = 'table'")?;
    let index_count = int("SELECT count(*) FROM sqlite_schema WHERE type = 'index'")?;
    Ok(Metrics {
        objects,
        table_count,
        index_count,
        database: db.display().to_string(),
        file,
        cache_size_kib: if cache < 0 {
            -cache
        } else {
            cache * file.page_size / 1024
        },
        journal_mode: text("PRAGMA journal_mode")?,
        foreign_keys: int("PRAGMA foreign_keys")? == 1,
        schema_version: int("PRAGMA user_version")?,
        sqlite_version: text("SELECT sqlite_version()")?,
        tables,
    })
}

/// The plan and timing of one statement.
#[derive(Debug, Clone, Serialize)]
pub struct Explain {
    pub plan: Vec<String>,
    pub rows: u64,
    pub seconds: f64,
}

/// Explains and runs (read-only) one SQL statement.
pub fn explain(db: &Path, tuning: &Tuning, statement: &str) -> Result<Explain> {
    let statement = statement.trim().trim_end_matches(';');
    if statement.is_empty() {
        return Err(Error::usage("explain: give one SQL statement"));
    }
    if statement.len() > 100_000 {
        return Err(Error::usage(
            "explain: the statement is longer than 100,000 bytes",
        ));
    }
    let conn = open_source(db, tuning, "explain")?;
    let bad = |e: rusqlite::Error| {
        Error::usage(format!(
            "explain: {e}; only one read-only statement can be explained"
        ))
    };
    let mut plan = Vec::new();
    {
        let mut st = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
            .map_err(bad)?;
        let mut rows = st.query([]).map_err(bad)?;
        while let Some(r) = rows.next().map_err(bad)? {
            let parent: i64 = r.get(1).map_err(bad)?;
            let detail: String = r.get(3).map_err(bad)?;
            plan.push(if parent == 0 {
                detail
            } else {
                format!("  {detail}")
            });
        }
    }
    let t = Instant::now();
    let mut st = conn.prepare(statement).map_err(bad)?;
    if !st.readonly() {
        return Err(Error::usage(
            "explain: the statement would write; only read-only statements are run",
        ));
    }
    let mut rows = st.query([]).map_err(bad)?;
    let mut n = 0u64;
    while rows.next().map_err(bad)?.is_some() {
        n += 1;
    }
    Ok(Explain {
        plan,
        rows: n,
        seconds: t.elapsed().as_secs_f64(),
    })
}
