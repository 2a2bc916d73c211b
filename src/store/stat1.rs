//! One table's query-planner statistics (its `sqlite_stat1` rows), measured exactly on a read
//! snapshot and then written in one short write. The measuring takes no write lock, so the
//! warehouse's writers go on while it reads the table's indexes; the write that follows holds
//! the lock for a few rows. Owns the reading of a table's index layout and the stat line's
//! arithmetic (SQLite's own). Never writes anything but SQLite's statistics tables (and a
//! view made and dropped at once, which has every connection load them again), and never
//! guesses: a table with an index on expressions, or a partial index whose condition
//! it cannot read back, is measured by nobody here (the caller lets SQLite's ANALYZE do it).
//!
//! A stat line is `N a1 a2 ...`: N entries in the index, and for each leading run of its key
//! columns the average number of entries sharing one value of that run. SQLite's sampled
//! ANALYZE estimates the averages from the first entries; these are counted.

use rusqlite::{params, Connection, OptionalExtension};

use super::error::{Result, SqlContext};
use super::schema::quote_ident;

/// One `sqlite_stat1` row: the index (None: the table's own row count) and its stat line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat1Row {
    pub idx: Option<String>,
    pub stat: String,
}

/// One index of the table, as `PRAGMA index_list` gives it.
struct Index {
    name: String,
    /// `pk` for the primary key of a WITHOUT ROWID table (or a rowid table's non-integer
    /// key), `u` for a UNIQUE constraint, `c` for CREATE INDEX.
    origin: String,
    partial: bool,
}

/// A key column of an index: its name and the collation the index orders it by.
struct KeyColumn {
    name: String,
    collation: String,
}

/// Measures `table`'s statistics in one read transaction (a snapshot: writers go on). None
/// when an index of it cannot be measured here (on expressions, or an unreadable partial
/// condition).
pub fn measure(conn: &Connection, table: &str) -> Result<Option<Vec<Stat1Row>>> {
    conn.execute_batch("BEGIN")
        .ctx("begin reading the table's statistics")?;
    let out = measure_in_snapshot(conn, table);
    // A read transaction: ending it cannot lose anything.
    let _ = conn.execute_batch("COMMIT");
    out
}

fn measure_in_snapshot(conn: &Connection, table: &str) -> Result<Option<Vec<Stat1Row>>> {
    let without_rowid: bool = conn
        .query_row(
            "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .ctx("read the table's kind")?;
    let mut rows = Vec::new();
    // The table's rows, counted once: the entries of every full index, and SQLite's own line
    // for the table when no full index carries that count (None until one is met).
    let mut table_rows: Option<u64> = None;
    for index in indexes(conn, table)? {
        let Some(columns) = key_columns(conn, &index.name)? else {
            return Ok(None);
        };
        let filter = if index.partial {
            match partial_condition(conn, &index.name)? {
                Some(condition) => Some(condition),
                None => return Ok(None),
            }
        } else {
            None
        };
        let entries = match (&filter, table_rows) {
            (Some(condition), _) => count(conn, table, &[], Some(condition))?,
            (None, Some(n)) => n,
            (None, None) => *table_rows.insert(count(conn, table, &[], None)?),
        };
        let stat = stat_line(conn, table, &columns, filter.as_deref(), entries)?;
        let idx = if without_rowid && index.origin == "pk" {
            // SQLite names a WITHOUT ROWID table's key by the table's own name.
            table.to_string()
        } else {
            index.name
        };
        rows.push(Stat1Row {
            idx: Some(idx),
            stat,
        });
    }
    if table_rows.is_none() {
        let n = count(conn, table, &[], None)?;
        if n > 0 {
            rows.push(Stat1Row {
                idx: None,
                stat: n.to_string(),
            });
        }
    }
    Ok(Some(rows))
}

/// The stat line of one index with `entries` entries: those, then the average run for each
/// leading part of its key, counted on the table (restricted to the index's condition).
fn stat_line(
    conn: &Connection,
    table: &str,
    columns: &[KeyColumn],
    filter: Option<&str>,
    entries: u64,
) -> Result<String> {
    let mut stat = entries.to_string();
    for k in 1..=columns.len() {
        let distinct = count(conn, table, &columns[..k], filter)?;
        stat.push(' ');
        stat.push_str(&average_run(entries, distinct).to_string());
    }
    Ok(stat)
}

/// SQLite's estimate of the entries one value of a key prefix matches: the entries over the
/// distinct values, rounded up, except that just above 1 (under 1.1) stays 1.
fn average_run(entries: u64, distinct: u64) -> u64 {
    let (n, d) = (u128::from(entries), u128::from(distinct.max(1)));
    let mut estimate = n.div_ceil(d);
    if estimate == 2 && n * 10 <= d * 11 {
        estimate = 1;
    }
    u64::try_from(estimate).unwrap_or(u64::MAX)
}

/// The table's rows under `filter`, or with `group` given, the distinct values of those
/// columns (NULLs one value, compared by each column's collation, as an index does).
fn count(conn: &Connection, table: &str, group: &[KeyColumn], filter: Option<&str>) -> Result<u64> {
    let filter = filter.map(|f| format!(" WHERE {f}")).unwrap_or_default();
    let sql = if group.is_empty() {
        format!("SELECT count(*) FROM {}{filter}", quote_ident(table))
    } else {
        let by: Vec<String> = group
            .iter()
            .map(|c| {
                format!(
                    "{} COLLATE {}",
                    quote_ident(&c.name),
                    quote_ident(&c.collation)
                )
            })
            .collect();
        format!(
            "SELECT count(*) FROM (SELECT 1 FROM {}{filter} GROUP BY {})",
            quote_ident(table),
            by.join(", ")
        )
    };
    let n: i64 = conn
        .query_row(&sql, [], |r| r.get(0))
        .ctx("count a table's entries for its statistics")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn indexes(conn: &Connection, table: &str) -> Result<Vec<Index>> {
    let mut st = conn
        .prepare("SELECT name, origin, partial FROM pragma_index_list(?1)")
        .ctx("list the table's indexes")?;
    let rows = st
        .query_map([table], |r| {
            Ok(Index {
                name: r.get(0)?,
                origin: r.get(1)?,
                partial: r.get(2)?,
            })
        })
        .ctx("list the table's indexes")?;
    rows.collect::<rusqlite::Result<_>>()
        .ctx("list the table's indexes")
}

/// The key columns of an index in order (None when one is an expression).
fn key_columns(conn: &Connection, index: &str) -> Result<Option<Vec<KeyColumn>>> {
    let mut st = conn
        .prepare("SELECT cid, name, coll FROM pragma_index_xinfo(?1) WHERE key = 1 ORDER BY seqno")
        .ctx("read an index's columns")?;
    let rows = st
        .query_map([index], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .ctx("read an index's columns")?;
    let mut columns = Vec::new();
    for row in rows {
        let (cid, name, collation) = row.ctx("read an index's columns")?;
        match (cid, name) {
            (0.., Some(name)) => columns.push(KeyColumn {
                name,
                collation: collation.unwrap_or_else(|| "BINARY".into()),
            }),
            _ => return Ok(None),
        }
    }
    Ok(Some(columns))
}

/// The condition of a partial index, read back from its CREATE INDEX statement.
fn partial_condition(conn: &Connection, index: &str) -> Result<Option<String>> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?1",
            params![index],
            |r| r.get(0),
        )
        .optional()
        .ctx("read a partial index's condition")?
        .flatten();
    Ok(sql.as_deref().and_then(condition_of))
}

/// The WHERE condition of a `CREATE INDEX ... ON t(columns) WHERE condition` statement: the
/// text after the column list's closing parenthesis and the keyword. None for any other
/// shape (no condition, a comment in the way, unbalanced quotes or parentheses).
fn condition_of(create: &str) -> Option<String> {
    let close = column_list_end(create)?;
    let rest = create.get(close + 1..)?.trim_start();
    let keyword = rest.get(..5)?;
    let after = rest.get(5..)?;
    let separated = after.starts_with(|c: char| c.is_whitespace() || c == '(');
    if !keyword.eq_ignore_ascii_case("WHERE") || !separated {
        return None;
    }
    let condition = after.trim();
    (!condition.is_empty()).then(|| condition.to_string())
}

/// The byte offset of the parenthesis closing the first parenthesised list outside quotes.
fn column_list_end(sql: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in sql.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                '[' => quote = Some(']'),
                '(' => depth += 1,
                ')' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                '-' | '/' if sql[i + 1..].starts_with(['-', '*']) => return None,
                _ => {}
            },
        }
    }
    None
}

/// Replaces `table`'s statistics with `rows` in one short write, and has this connection's
/// planner load them. Also drops the table's STAT4 samples: they would describe the table as
/// it was at its last full ANALYZE.
pub fn write(conn: &Connection, table: &str, rows: &[Stat1Row]) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .ctx("take the write lock for the statistics")?;
    let out = write_in_transaction(conn, table, rows);
    match out {
        Ok(()) => conn.execute_batch("COMMIT").ctx("commit the statistics"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn write_in_transaction(conn: &Connection, table: &str, rows: &[Stat1Row]) -> Result<()> {
    let (has_stat1, has_stat4): (bool, bool) = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'),
                    EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat4')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ctx("look for the statistics tables")?;
    if !has_stat1 {
        // Makes the statistics tables (a file that has never had any).
        conn.execute_batch("ANALYZE sqlite_schema")
            .ctx("make the statistics tables")?;
    }
    conn.execute("DELETE FROM sqlite_stat1 WHERE tbl = ?1", [table])
        .ctx("replace the table's statistics")?;
    let mut insert = conn
        .prepare("INSERT INTO sqlite_stat1(tbl, idx, stat) VALUES (?1, ?2, ?3)")
        .ctx("replace the table's statistics")?;
    for row in rows {
        insert
            .execute(params![table, row.idx, row.stat])
            .ctx("replace the table's statistics")?;
    }
    // (Made just now, if it was: then it is empty.)
    if has_stat4 {
        conn.execute("DELETE FROM sqlite_stat4 WHERE tbl = ?1", [table])
            .ctx("drop the table's STAT4 samples")?;
    }
    conn.execute_batch("ANALYZE sqlite_schema")
        .ctx("load the new statistics")?;
    announce(conn)
}

/// Has every other connection to the file load the statistics again: SQLite reads them only
/// when a connection (re)loads the schema, so a server's connections, opened before, would
/// plan with the old ones until restarted. A view made and dropped in the caller's write
/// transaction moves the schema's version and leaves the schema as it was (a view has no
/// pages, so none is left free); each connection reloads at its next statement. Inside a
/// write transaction only.
pub fn announce(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE VIEW ora_statistics_renewed AS SELECT 1; DROP VIEW ora_statistics_renewed;",
    )
    .ctx("have other connections load the new statistics")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables of every shape ora's schema has (and a few it may grow): a rowid table with a
    /// two-column, a plain, a partial unique and a NOCASE descending index; a WITHOUT ROWID
    /// table; a table without indexes; a table with only a partial index whose condition
    /// holds a quoted parenthesis and the word WHERE; a UNIQUE constraint with NULLs and
    /// 1 beside 1.0; an empty partial index.
    const SHAPES: &str = "
        CREATE TABLE ledger(id INTEGER PRIMARY KEY, sku TEXT, date TEXT, req TEXT);
        CREATE INDEX ledger_sku ON ledger(sku, id);
        CREATE INDEX ledger_date ON ledger(date);
        CREATE UNIQUE INDEX ledger_req ON ledger(req) WHERE req IS NOT NULL;
        CREATE INDEX ledger_nocase ON ledger(sku COLLATE NOCASE DESC, date);
        CREATE TABLE pairs(a TEXT, b INTEGER, c TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
        CREATE INDEX pairs_c ON pairs(c);
        CREATE TABLE plain(x, y);
        CREATE TABLE notes(id INTEGER PRIMARY KEY, note TEXT);
        CREATE INDEX [notes (odd)] ON notes(note) where note <> 'x) WHERE y';
        CREATE TABLE uniq(k UNIQUE, v);
        CREATE INDEX uniq_none ON uniq(v) WHERE v > 1000000;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
        INSERT INTO ledger(sku, date, req)
            SELECT CASE WHEN i % 7 = 0 THEN 's' || (i % 5) ELSE 'S' || (i % 50) END,
                   '2026-01-' || (i % 31), CASE WHEN i % 3 = 0 THEN 'r' || i END FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 900)
        INSERT INTO pairs SELECT 'a' || (i % 30), i % 97, 'c' || (i % 4) FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
        INSERT INTO plain SELECT i, i FROM n;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
        INSERT INTO notes(note) SELECT CASE WHEN i % 4 = 0 THEN 'x) WHERE y' ELSE 'n' || (i % 9) END FROM n;
        INSERT INTO uniq VALUES (1, 1), (1.5, 2), (NULL, 3), (NULL, 4), (2.0, 5), ('1', 6);
    ";

    fn sqlite_exact(conn: &Connection, table: &str) -> Vec<Stat1Row> {
        conn.execute_batch(&format!(
            "PRAGMA analysis_limit = 0; ANALYZE {}",
            quote_ident(table)
        ))
        .unwrap();
        rows_of(conn, table)
    }

    fn rows_of(conn: &Connection, table: &str) -> Vec<Stat1Row> {
        let mut st = conn
            .prepare("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = ?1 ORDER BY idx")
            .unwrap();
        let rows = st.query_map([table], |r| {
            Ok(Stat1Row {
                idx: r.get(0)?,
                stat: r.get(1)?,
            })
        });
        rows.unwrap().map(|r| r.unwrap()).collect()
    }

    fn sorted(mut rows: Vec<Stat1Row>) -> Vec<Stat1Row> {
        rows.sort_by(|a, b| a.idx.cmp(&b.idx));
        rows
    }

    // The counted statistics are the very lines SQLite's own unsampled ANALYZE writes.
    #[test]
    fn measured_lines_are_the_ones_an_exact_analyze_writes() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SHAPES).unwrap();
        for table in ["ledger", "pairs", "plain", "notes", "uniq"] {
            let ours = measure(&conn, table).unwrap().expect("measurable");
            assert!(!ours.is_empty(), "{table}");
            assert_eq!(sorted(ours), sqlite_exact(&conn, table), "{table}");
        }
    }

    // What is written is what the planner then uses: SQLite's rule no longer asks for the
    // table, and the STAT4 samples of an older full ANALYZE are gone with the old lines.
    #[test]
    fn written_lines_replace_the_old_and_are_loaded() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SHAPES).unwrap();
        conn.execute_batch(
            "ANALYZE; DELETE FROM sqlite_stat1 WHERE tbl = 'ledger'; ANALYZE sqlite_schema",
        )
        .unwrap();
        let stale: i64 = conn
            .query_row("SELECT count(*) FROM pragma_optimize(0x10003)", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(stale >= 1, "the ledger lost its statistics");
        let rows = measure(&conn, "ledger").unwrap().unwrap();
        write(&conn, "ledger", &rows).unwrap();
        assert_eq!(rows_of(&conn, "ledger"), sorted(rows));
        let stale: Vec<String> = conn
            .prepare("PRAGMA main.optimize(0x10003)")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert!(
            stale.iter().all(|s| !s.contains("ledger")),
            "the planner loaded the new lines: {stale:?}"
        );
        let samples: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_stat4 WHERE tbl = 'ledger'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(samples, 0);
    }

    // The point of measuring apart: it goes on while another connection holds the write
    // lock; only the few rows' write waits for it.
    #[test]
    fn measuring_needs_no_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        holder.execute_batch(SHAPES).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.busy_timeout(std::time::Duration::ZERO).unwrap();
        holder
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO plain VALUES (0, 0);")
            .unwrap();
        let rows = measure(&conn, "ledger").unwrap().expect("measured");
        assert!(
            write(&conn, "ledger", &rows).is_err(),
            "the write waits for the lock"
        );
        assert!(
            conn.is_autocommit(),
            "a failed write leaves no transaction open"
        );
        holder.execute_batch("COMMIT").unwrap();
        write(&conn, "ledger", &rows).unwrap();
        assert_eq!(rows_of(&conn, "ledger").len(), 4);
    }

    // A connection opened before (a running server's) plans with the new statistics from
    // its next statement, and the schema is left as it was.
    #[test]
    fn connections_opened_before_plan_with_the_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE t(a, b); CREATE INDEX t_a ON t(a); CREATE INDEX t_b ON t(b);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
             INSERT INTO t SELECT i, i % 2 FROM n;
             ANALYZE sqlite_schema;",
        )
        .unwrap();
        // (The statistics tables exist already: making them would move the schema too.)
        let server = Connection::open(&path).unwrap();
        let plan = |c: &Connection| -> String {
            c.query_row(
                "EXPLAIN QUERY PLAN SELECT * FROM t WHERE a = 1 AND b = 1",
                [],
                |r| r.get(3),
            )
            .unwrap()
        };
        assert!(
            plan(&server).contains("t_b"),
            "without statistics: {}",
            plan(&server)
        );
        let schema = |c: &Connection| -> String {
            c.query_row("SELECT group_concat(sql, ';') FROM sqlite_schema WHERE name NOT LIKE 'sqlite_stat%'", [], |r| r.get(0))
                .unwrap()
        };
        let before = schema(&conn);
        let rows = measure(&conn, "t").unwrap().unwrap();
        write(&conn, "t", &rows).unwrap();
        // Its next statement that reads the file notices the schema moved (an EXPLAIN alone
        // reads nothing).
        let n: i64 = server
            .query_row("SELECT count(*) FROM t WHERE a = 1 AND b = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
        assert!(
            plan(&server).contains("t_a"),
            "with them: {}",
            plan(&server)
        );
        assert_eq!(schema(&conn), before);
    }

    #[test]
    fn an_index_on_an_expression_is_left_to_sqlite() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t(a TEXT); CREATE INDEX t_lower ON t(lower(a)); INSERT INTO t VALUES ('A');",
        )
        .unwrap();
        assert_eq!(measure(&conn, "t").unwrap(), None);
        assert!(conn.is_autocommit());
    }

    #[test]
    fn a_partial_condition_is_read_back_or_refused() {
        let c = |s: &str| condition_of(s);
        assert_eq!(
            c("CREATE INDEX i ON t(a) WHERE a IS NOT NULL").as_deref(),
            Some("a IS NOT NULL")
        );
        assert_eq!(
            c("CREATE INDEX \"i(\" ON [t)](a, \"b)\")\n  where(a > ')')").as_deref(),
            Some("(a > ')')")
        );
        assert_eq!(c("CREATE INDEX i ON t(a)"), None);
        assert_eq!(c("CREATE INDEX i ON t(a) WHEREVER"), None);
        assert_eq!(c("CREATE INDEX i ON t(a) WHERE "), None);
        assert_eq!(c("CREATE INDEX i ON t(a) /* c */ WHERE a"), None);
        assert_eq!(c("CREATE INDEX i ON t(a -- c\n) WHERE a"), None);
        assert_eq!(c("CREATE INDEX i ON t(a WHERE a"), None);
        assert_eq!(c("CREATE INDEX i ON t(a)) WHERE a"), None);
        assert_eq!(c("CREATE INDEX i ON t('a) WHERE a"), None);
        assert_eq!(c(""), None);
        assert_eq!(c("é(é)WHERE é").as_deref(), Some("é"));
        assert_eq!(c("é(é)WHEREé"), None);
        assert_eq!(c("é(é)é"), None);
    }

    #[test]
    fn the_average_run_is_sqlites() {
        assert_eq!(average_run(100, 10), 10);
        assert_eq!(average_run(101, 10), 11);
        assert_eq!(average_run(105, 100), 1, "under 1.1 stays 1");
        assert_eq!(average_run(120, 100), 2);
        assert_eq!(average_run(0, 0), 0);
        assert_eq!(average_run(u64::MAX, 1), u64::MAX);
        assert_eq!(average_run(u64::MAX, 0), u64::MAX);
    }
}
