//! The query planner's statistics (`sqlite_stat1`): refreshed only for the tables that need
//! it, and measured without holding the write lock. Never analyzes a table whose statistics
//! still hold, and never runs an unbounded ANALYZE.
//!
//! Why not ANALYZE every night: with the SQLite ora links (STAT4 compiled in), even a sampled
//! ANALYZE counts every entry of every index first, inside its write transaction; on a
//! 20M-row ledger that held every writer for about half a second. The planner needs the
//! statistics to be the right size, not fresh: SQLite's own rule (`PRAGMA optimize`) asks for
//! a new analysis only when a table has no statistics yet or has grown or shrunk tenfold since
//! its last one, and finds that out from the shape of the table's b-tree (a few pages).
//!
//! And when a table does need them: outside a transaction its lines are counted on a read
//! snapshot (writers go on) and written in one short write (`stat1`); only a table that
//! cannot be measured that way (an index on expressions), or a refresh inside the caller's
//! own write transaction, runs SQLite's sampled ANALYZE.

use rusqlite::Connection;

use super::error::{Result, SqlContext};

/// Rows per index an ANALYZE samples (`PRAGMA analysis_limit`).
const SAMPLE_ROWS: i64 = 1_000;

/// `PRAGMA optimize` mask: list only (0x01), the ANALYZE step (0x02), bounded by the analysis
/// limit (0x10), and every table checked, not only the ones this connection queried
/// (0x10000).
const LIST_WHAT_NEEDS_ANALYSIS: u32 = 0x0001 | 0x0002 | 0x0010 | 0x1_0000;

/// Refreshes each table whose statistics are missing or stale by SQLite's rule, and returns
/// the tables refreshed. In autocommit each table is measured on a read snapshot and written
/// in its own short write; inside the caller's transaction they are analyzed (sampled) in
/// it, the lock being held already.
pub fn refresh(conn: &Connection) -> Result<Vec<String>> {
    let before: i64 = conn
        .query_row("PRAGMA analysis_limit", [], |r| r.get(0))
        .ctx("read the analysis limit")?;
    conn.execute_batch(&format!("PRAGMA analysis_limit = {SAMPLE_ROWS}"))
        .ctx("bound the analysis")?;
    let outcome = refresh_what_needs_it(conn);
    conn.execute_batch(&format!("PRAGMA analysis_limit = {before}"))
        .ctx("restore the analysis limit")?;
    outcome
}

fn refresh_what_needs_it(conn: &Connection) -> Result<Vec<String>> {
    let statements = stale_tables(conn)?;
    let apart = conn.is_autocommit();
    let mut refreshed = Vec::with_capacity(statements.len());
    for statement in statements {
        // SQLite wrote the statement, names quoted: `ANALYZE "main"."table"`.
        let Some(table) = table_of(&statement) else {
            conn.execute_batch(&statement).ctx("analyze a table")?;
            refreshed.push(statement);
            continue;
        };
        if is_empty(conn, &table)? {
            // Its indexes have no statistics to keep, so SQLite lists it every time;
            // there is nothing to learn until it has rows.
            continue;
        }
        let measured = if apart {
            super::stat1::measure(conn, &table)?
        } else {
            None
        };
        match measured {
            Some(rows) => super::stat1::write(conn, &table, &rows)?,
            None => conn.execute_batch(&statement).ctx("analyze a table")?,
        }
        refreshed.push(table);
    }
    if !apart && !refreshed.is_empty() {
        // The caller's transaction: the other connections learn of the new statistics
        // when it commits.
        super::stat1::announce(conn)?;
    }
    Ok(refreshed)
}

/// SQLite's `ANALYZE "main"."table"` statement for each table whose statistics are stale.
fn stale_tables(conn: &Connection) -> Result<Vec<String>> {
    let mut st = conn
        .prepare(&format!("PRAGMA main.optimize({LIST_WHAT_NEEDS_ANALYSIS})"))
        .ctx("list the tables whose statistics are stale")?;
    let rows = st
        .query_map([], |r| r.get::<_, String>(0))
        .ctx("list the tables whose statistics are stale")?;
    rows.collect::<rusqlite::Result<_>>()
        .ctx("list the tables whose statistics are stale")
}

fn is_empty(conn: &Connection, table: &str) -> Result<bool> {
    conn.query_row(
        &format!(
            "SELECT NOT EXISTS (SELECT 1 FROM {})",
            super::schema::quote_ident(table)
        ),
        [],
        |r| r.get(0),
    )
    .ctx("look at a table before analyzing it")
}

/// The table an `ANALYZE "main"."table"` statement names, quotes undone (`None` for any
/// other shape).
fn table_of(statement: &str) -> Option<String> {
    let quoted = statement.strip_prefix("ANALYZE \"main\".\"")?;
    Some(quoted.strip_suffix('"')?.replace("\"\"", "\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_rows(conn: &Connection, table: &str) -> i64 {
        conn.query_row(
            "SELECT count(*) FROM sqlite_stat1 WHERE tbl = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap()
    }

    const TABLE: &str =
        "CREATE TABLE t(id INTEGER PRIMARY KEY, sku TEXT); CREATE INDEX t_sku ON t(sku);";

    /// `n` more rows of 50 skus.
    fn rows(n: u32) -> String {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
             INSERT INTO t(sku) SELECT 'S' || (i % 50) FROM n;"
        )
    }

    // A new table is analyzed once; the next refresh leaves it alone until it grows tenfold.
    #[test]
    fn a_table_is_analyzed_when_new_and_again_only_after_growing_tenfold() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(TABLE).unwrap();
        conn.execute_batch(&rows(2000)).unwrap();
        assert_eq!(refresh(&conn).unwrap(), vec!["t".to_string()]);
        assert_eq!(stat_rows(&conn, "t"), 1);
        assert!(refresh(&conn).unwrap().is_empty(), "statistics still hold");
        conn.execute_batch("CREATE TABLE empty(k TEXT PRIMARY KEY);")
            .unwrap();
        assert!(
            refresh(&conn).unwrap().is_empty(),
            "an empty table has nothing to learn"
        );
        conn.execute_batch(&rows(40_000)).unwrap();
        assert_eq!(refresh(&conn).unwrap(), vec!["t".to_string()]);
        let limit: i64 = conn
            .query_row("PRAGMA analysis_limit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(limit, 0, "the connection's own limit is given back");
    }

    // A bulk import refreshes in its own write transaction: the statistics join it.
    #[test]
    fn inside_a_transaction_the_analysis_joins_it() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(TABLE).unwrap();
        conn.execute_batch("BEGIN").unwrap();
        conn.execute_batch(&rows(2000)).unwrap();
        assert_eq!(refresh(&conn).unwrap(), vec!["t".to_string()]);
        assert!(!conn.is_autocommit(), "still the caller's transaction");
        assert_eq!(stat_rows(&conn, "t"), 1);
        conn.execute_batch("COMMIT").unwrap();
    }

    #[test]
    fn a_quoted_table_name_is_read_back() {
        assert_eq!(table_of(r#"ANALYZE "main"."a""b""#).unwrap(), r#"a"b"#);
        assert_eq!(table_of(r#"ANALYZE "main"."a"".""b""#).unwrap(), r#"a"."b"#);
        assert_eq!(table_of(r#"ANALYZE "main"."ledger""#).unwrap(), "ledger");
        assert_eq!(table_of("ANALYZE something else"), None);
    }
}
