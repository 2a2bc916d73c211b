//! The slow-statement log: every statement ora runs on its connections that takes longer than
//! `[database] slow_ms` (100 ms by default, 0: off; given to each connection in its `Tuning`)
//! is counted in memory by its SQL text (never its parameters, so no data is kept), and
//! [`flush`] writes the counts to `slow_statements` (at most [`MAX_ROWS`] rows; maintenance
//! prunes what is older than 90 days). The callback SQLite calls after each statement does one
//! atomic load and a comparison when nothing is slow; it never runs SQL and never blocks on
//! the database. SQLite's trace callback carries no context of ours, so the counts and the
//! threshold it compares with are the process's (the one registry besides SQLite's locks):
//! the threshold is the one the last connection was opened with.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::trace::{TraceEvent, TraceEventCodes};
use rusqlite::Connection;
use serde::Serialize;

use super::connection::{self, Tuning};
use super::error::{Result, SqlContext};

/// The default threshold.
pub const DEFAULT_SLOW_MS: u64 = 100;
/// Distinct statements remembered between flushes, and rows kept in the table.
const MAX_ROWS: usize = 500;
/// Longest SQL text kept.
const MAX_SQL: usize = 2_000;

static THRESHOLD_NS: AtomicU64 = AtomicU64::new(DEFAULT_SLOW_MS * 1_000_000);
static SEEN: Mutex<Option<HashMap<String, Seen>>> = Mutex::new(None);

#[derive(Debug, Clone, Default)]
struct Seen {
    count: u64,
    total_ns: u64,
    max_ns: u64,
}

/// Watches `conn`'s statements when `slow_ms` is above 0 (0: the log is off for it).
pub fn install(conn: &Connection, slow_ms: u64) {
    if slow_ms > 0 {
        THRESHOLD_NS.store(slow_ms.saturating_mul(1_000_000), Ordering::Relaxed);
        conn.trace_v2(TraceEventCodes::SQLITE_TRACE_PROFILE, Some(on_event));
    }
}

fn on_event(ev: TraceEvent<'_>) {
    let TraceEvent::Profile(stmt, took) = ev else {
        return;
    };
    let threshold = THRESHOLD_NS.load(Ordering::Relaxed);
    let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    if threshold == 0 || ns < threshold {
        return;
    }
    note(&stmt.sql(), ns);
}

/// Counts one slow run of `sql`.
fn note(sql: &str, ns: u64) {
    let mut text: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.len() > MAX_SQL {
        let mut cut = MAX_SQL;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    let Ok(mut guard) = SEEN.lock() else {
        return;
    };
    let seen = guard.get_or_insert_with(HashMap::new);
    if !seen.contains_key(&text) && seen.len() >= MAX_ROWS {
        return;
    }
    let s = seen.entry(text).or_default();
    s.count = s.count.saturating_add(1);
    s.total_ns = s.total_ns.saturating_add(ns);
    s.max_ns = s.max_ns.max(ns);
}

fn take() -> HashMap<String, Seen> {
    SEEN.lock()
        .ok()
        .and_then(|mut g| g.take())
        .unwrap_or_default()
}

/// Writes what was counted since the last flush into `slow_statements` of `db` (in its own
/// short, replicated transaction). Nothing counted: nothing is opened. A failure is logged and
/// the counts are dropped (the log is advice, never a reason for a command to fail).
pub fn flush(db: &Path) {
    let seen = take();
    if seen.is_empty() || !db.is_file() {
        return;
    }
    let run = || -> Result<()> {
        let conn = connection::open_writer(db, &Tuning::default())?;
        super::capture::short_write(&conn, Duration::from_secs(2), |conn| record(conn, &seen))
    };
    if let Err(e) = run() {
        log::info!("could not record {} slow statements: {e}", seen.len());
    }
}

fn record(conn: &Connection, seen: &HashMap<String, Seen>) -> Result<()> {
    let now = crate::model::now_utc();
    let mut st = conn
        .prepare_cached(
            "INSERT INTO slow_statements (sql, count, total_ms, max_ms, first_seen, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (sql) DO UPDATE SET count = count + excluded.count,
                 total_ms = total_ms + excluded.total_ms,
                 max_ms = max(max_ms, excluded.max_ms), last_seen = excluded.last_seen",
        )
        .ctx("record slow statements")?;
    for (sql, s) in seen {
        st.execute((
            sql,
            i64::try_from(s.count).unwrap_or(i64::MAX),
            s.total_ns as f64 / 1e6,
            s.max_ns as f64 / 1e6,
            &now,
        ))
        .ctx("record slow statements")?;
    }
    conn.execute(
        "DELETE FROM slow_statements WHERE sql NOT IN
           (SELECT sql FROM slow_statements ORDER BY last_seen DESC LIMIT ?1)",
        [MAX_ROWS as i64],
    )
    .ctx("record slow statements")?;
    Ok(())
}

/// Removes statements not seen for `days` days (maintenance).
pub fn prune(conn: &Connection, days: u32) -> Result<usize> {
    let cutoff = (crate::clock::now() - chrono::Duration::days(i64::from(days)))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    conn.execute("DELETE FROM slow_statements WHERE last_seen < ?1", [cutoff])
        .ctx("prune slow statements")
}

/// A statement of the log.
#[derive(Debug, Clone, Serialize)]
pub struct SlowStatement {
    pub sql: String,
    pub count: i64,
    pub total_ms: f64,
    pub max_ms: f64,
    pub first_seen: String,
    pub last_seen: String,
    /// EXPLAIN QUERY PLAN, read now (empty for statements without one).
    pub plan: Vec<String>,
}

/// The log, slowest first; `since` (YYYY-MM-DD) keeps statements seen since that day.
pub fn list(conn: &Connection, since: Option<&str>, limit: u32) -> Result<Vec<SlowStatement>> {
    let ctx = "read slow statements";
    let mut st = conn
        .prepare_cached(
            "SELECT sql, count, total_ms, max_ms, first_seen, last_seen FROM slow_statements
              WHERE ?1 IS NULL OR last_seen >= ?1 ORDER BY max_ms DESC LIMIT ?2",
        )
        .ctx(ctx)?;
    let rows = st
        .query_map((since, i64::from(limit)), |r| {
            Ok(SlowStatement {
                sql: r.get(0)?,
                count: r.get(1)?,
                total_ms: r.get(2)?,
                max_ms: r.get(3)?,
                first_seen: r.get(4)?,
                last_seen: r.get(5)?,
                plan: Vec::new(),
            })
        })
        .ctx(ctx)?;
    let mut out = rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)?;
    for s in &mut out {
        s.plan = plan(conn, &s.sql);
    }
    Ok(out)
}

/// EXPLAIN QUERY PLAN of a recorded statement (nothing is run; parameters stay unbound).
fn plan(conn: &Connection, sql: &str) -> Vec<String> {
    let Ok(mut st) = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")) else {
        return Vec::new();
    };
    let Ok(rows) = st.query_map([], |r| r.get::<_, String>(3)) else {
        return Vec::new();
    };
    rows.filter_map(|r| r.ok()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn slow_statements_are_counted_by_their_text_only() {
        super::note("SELECT *\n  FROM t WHERE a = ?1", 150_000_000);
        super::note("SELECT * FROM t WHERE a = ?1", 250_000_000);
        let seen = super::take();
        let s = &seen["SELECT * FROM t WHERE a = ?1"];
        assert_eq!(
            (s.count, s.max_ns, s.total_ns),
            (2, 250_000_000, 400_000_000)
        );
        assert!(super::take().is_empty(), "a flush takes everything");
    }
}
