//! `ora maintain daily|weekly`: the routines that keep the file fast and small, safe to run
//! beside a live server: their own connection, the busy timeout, and only short write locks
//! (only the tables whose planner statistics are missing or tenfold out of date get new ones,
//! counted on a read snapshot and written in one short write each; old idempotency keys are
//! pruned in small batches).
//! Daily: checkpoint (PASSIVE; the WAL truncated only when far past its working size),
//! planner statistics, prune request_log and the slow-statement log, give free pages back,
//! quick_check.
//! Weekly: page statistics, give free pages back, VACUUM when free pages pass the threshold,
//! integrity_check, table sizes (kept in its ops_log line), planner statistics.
//! Free pages go back to the file system in slices: a file ora made has `auto_vacuum =
//! INCREMENTAL`, and each routine runs `incremental_vacuum` a few MB per short transaction, so
//! no writer waits long. A VACUUM holds every writer for its whole length (about 10 s a GB
//! here): it runs on an older file (made before incremental vacuum) when free pages pass the
//! threshold and the file is under `vacuum_max_mb`, or when asked (`ora maintain weekly
//! --vacuum`), never by the timer on a large file; it leaves the file incremental from then on.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::check::pragma_check;
use crate::file::oplog;
use crate::ops::metrics::ObjectSize;
use crate::store::capture;
use crate::store::connection::{self, Tuning};
use crate::store::StoreError;

/// The weekly step that measures the tables and indexes, and how many of the largest it keeps.
const TABLE_SIZES: &str = "table sizes";
pub const LARGEST_KEPT: usize = 20;

/// Settings of the routines.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// VACUUM when more than this share of pages is free.
    pub vacuum_free_percent: f64,
    /// A file larger than this is vacuumed only when asked (`vacuum_asked`).
    pub vacuum_max_bytes: u64,
    /// The operator asked for the VACUUM (`--vacuum`): it runs whatever the file's size.
    pub vacuum_asked: bool,
    /// Idempotency keys older than this many days are pruned.
    pub request_log_days: u32,
    pub tuning: Tuning,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        MaintainOptions {
            vacuum_free_percent: 25.0,
            vacuum_max_bytes: DEFAULT_VACUUM_MAX_MB << 20,
            vacuum_asked: false,
            request_log_days: 30,
            tuning: Tuning::default(),
        }
    }
}

/// The largest file the weekly routine vacuums unasked (about 5 s of blocked writes here).
pub const DEFAULT_VACUUM_MAX_MB: u64 = 512;

/// One step of a routine and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: String,
    pub result: String,
    pub seconds: f64,
}

/// What a routine did.
#[derive(Debug, Clone, Serialize)]
pub struct MaintainReport {
    pub routine: String,
    pub ok: bool,
    pub steps: Vec<Step>,
    pub seconds: f64,
}

/// Which routine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routine {
    Daily,
    Weekly,
}

fn sql(step: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| StoreError::sqlite(&format!("maintain: {step}"), e).into()
}

/// Makes the planner's statistics again for the tables whose statistics are missing or
/// tenfold out of date, counted on a read snapshot (writers go on) and written in one short
/// write each; the other tables keep theirs (re-analyzing a large ledger every night would
/// change no plan).
fn planner_statistics(conn: &Connection) -> Result<String> {
    let analyzed = crate::store::refresh_planner_statistics(conn)?;
    Ok(if analyzed.is_empty() {
        "every table's statistics still hold (none new or grown or shrunk tenfold)".into()
    } else {
        format!("made again: {}", analyzed.join(", "))
    })
}

struct Steps {
    steps: Vec<Step>,
    /// The largest tables and indexes, measured by the weekly routine (kept in its ops_log
    /// line for the monthly report, which then need not read the whole file).
    largest: Option<Vec<ObjectSize>>,
}

impl Steps {
    fn run(&mut self, name: &str, f: impl FnOnce() -> Result<String>) -> Result<String> {
        let t = Instant::now();
        let result = f()?;
        self.steps.push(Step {
            step: name.into(),
            result: result.clone(),
            seconds: t.elapsed().as_secs_f64(),
        });
        Ok(result)
    }
}

/// Runs a routine on `db` and records it in ops_log (kind `maintain_daily` / `maintain_weekly`).
pub fn run(db: &Path, routine: Routine, o: &MaintainOptions) -> Result<MaintainReport> {
    let started = crate::model::now_utc();
    let kind = match routine {
        Routine::Daily => "maintain_daily",
        Routine::Weekly => "maintain_weekly",
    };
    let t0 = Instant::now();
    connection::check_path(db, false)?;
    let conn = connection::open_writer(db, &o.tuning)?;
    let shown = db.display().to_string();
    crate::store::schema::check_compatible(crate::store::schema::identify(&conn, &shown)?, &shown)?;
    let mut s = Steps {
        steps: Vec::new(),
        largest: None,
    };
    let outcome = match routine {
        Routine::Daily => daily(&conn, db, o, &mut s),
        Routine::Weekly => weekly(&conn, o, &mut s),
    };
    let report = MaintainReport {
        routine: kind.into(),
        ok: matches!(outcome, Ok(true)),
        steps: s.steps,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let integrity = report
        .steps
        .iter()
        .find(|s| s.step.ends_with("_check"))
        .map(|s| s.result.clone());
    let details = match &outcome {
        Ok(_) => {
            serde_json::json!({ "steps": report.steps, "seconds": report.seconds, "integrity": integrity, "largest": s.largest })
        }
        Err(e) => serde_json::json!({ "steps": report.steps, "error": e.to_string() }),
    };
    drop(conn);
    oplog::record(db, kind, &started, report.ok, &details);
    outcome.map(|_| report)
}

fn daily(conn: &Connection, db: &Path, o: &MaintainOptions, s: &mut Steps) -> Result<bool> {
    s.run("wal checkpoint", || {
        let busy = Duration::from_millis(u64::from(o.tuning.busy_timeout_ms));
        super::wal_trim::checkpoint(conn, db, busy)
    })?;
    s.run("planner statistics", || planner_statistics(conn))?;
    s.run("prune request_log", || {
        prune_request_log(conn, o.request_log_days, &o.tuning)
    })?;
    s.run("prune slow statements", || {
        let wait = lock_wait(&o.tuning);
        let n = capture::short_write(conn, wait, |conn| {
            crate::store::slowlog::prune(conn, SLOW_LOG_DAYS)
        })?;
        Ok(format!("{n} not seen for {SLOW_LOG_DAYS} days removed"))
    })?;
    s.run(GIVE_BACK, || give_back(conn, &o.tuning))?;
    let check = s.run("quick_check", || pragma_check(conn, "quick_check"))?;
    Ok(check == "ok")
}

/// How long a routine's short write waits for the write lock: four busy timeouts, at least
/// four seconds.
fn lock_wait(t: &Tuning) -> Duration {
    Duration::from_millis(u64::from(t.busy_timeout_ms).max(1000) * 4)
}

/// The step that returns free pages in slices.
pub const GIVE_BACK: &str = "give back free pages";

/// Most pages one slice of `incremental_vacuum` returns (8 MB of 4 KiB pages); a slice stops
/// sooner once it has worked [`capture::SLICE_WORK`] (it moves pages from the end of the file
/// into free ones and rewrites their parents' pointers, which must be read first).
const SLICE_PAGES: usize = 2048;

/// Whether the file gives free pages back in slices (`auto_vacuum = INCREMENTAL`).
fn incremental(conn: &Connection) -> Result<bool> {
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .map_err(sql("auto_vacuum"))?;
    Ok(mode == 2)
}

/// Returns every free page to the file system in short write transactions, each stopping
/// after [`SLICE_PAGES`] pages or [`capture::SLICE_WORK`] (each waits for the write lock like
/// any writer; between two, a waiting writer of the server takes its turn).
fn give_back(conn: &Connection, t: &Tuning) -> Result<String> {
    give_back_within(conn, lock_wait(t), capture::SLICE_WORK)
}

/// [`give_back`], each slice working at most `work` (at least one page).
fn give_back_within(conn: &Connection, wait: Duration, work: Duration) -> Result<String> {
    let free = || {
        conn.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))
            .map_err(sql("free pages"))
    };
    let before = free()?;
    if before == 0 {
        return Ok("none free".into());
    }
    if !incremental(conn)? {
        return Ok(format!(
            "{before} free; this file predates incremental vacuum: `ora maintain weekly --vacuum` gives them back and converts it (once, in a quiet hour)"
        ));
    }
    let (mut slices, mut longest) = (0u32, Duration::ZERO);
    let mut left = before;
    while left > 0 {
        // Timed from when the lock is taken to when it is let go.
        let mut held = None;
        capture::short_write(conn, wait, |conn| {
            let started = Instant::now();
            held = Some(started);
            // The pragma gives back one page per step (a row each): stepped until it is done
            // or the slice's time is spent; what it moved so far is committed.
            let err = |e| StoreError::sqlite("maintain: incremental_vacuum", e);
            let mut st = conn
                .prepare(&format!("PRAGMA incremental_vacuum({SLICE_PAGES})"))
                .map_err(err)?;
            let mut rows = st.query([]).map_err(err)?;
            while rows.next().map_err(err)?.is_some() {
                if started.elapsed() >= work {
                    break;
                }
            }
            Ok(())
        })?;
        longest = longest.max(held.map_or(Duration::ZERO, |t| t.elapsed()));
        slices += 1;
        let now = free()?;
        if now >= left {
            break;
        }
        left = now;
        if left > 0 {
            capture::hand_over();
        }
    }
    Ok(format!(
        "{} of {before} pages given back in {slices} slice(s), the longest {} ms",
        before - left,
        longest.as_millis()
    ))
}

/// Slow statements not seen for this long leave the log.
const SLOW_LOG_DAYS: u32 = 90;

/// Deletes idempotency keys older than `days`, 5,000 per short transaction.
fn prune_request_log(conn: &Connection, days: u32, t: &Tuning) -> Result<String> {
    let cutoff = (crate::clock::now() - chrono::Duration::days(i64::from(days)))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let wait = lock_wait(t);
    let mut total = 0;
    loop {
        let n = capture::short_write(conn, wait, |conn| {
            crate::store::prune_request_log(conn, &cutoff, 5000)
        })?;
        total += n;
        if n < 5000 {
            break;
        }
        capture::hand_over();
    }
    Ok(format!("{total} keys older than {days} days removed"))
}

fn weekly(conn: &Connection, o: &MaintainOptions, s: &mut Steps) -> Result<bool> {
    let q = |sql_text: &str| {
        conn.query_row(sql_text, [], |r| r.get::<_, i64>(0))
            .map_err(sql("page statistics"))
    };
    let pages = q("PRAGMA page_count")?;
    let free = q("PRAGMA freelist_count")?;
    let free_pct = if pages > 0 {
        100.0 * free as f64 / pages as f64
    } else {
        0.0
    };
    s.run("page statistics", || {
        Ok(format!("{pages} pages, {free} free ({free_pct:.1}%)"))
    })?;
    s.run(GIVE_BACK, || give_back(conn, &o.tuning))?;
    s.run("VACUUM", || {
        if !o.vacuum_asked && incremental(conn)? {
            return Ok(
                "not needed: free pages are given back in slices (auto_vacuum = incremental)"
                    .into(),
            );
        }
        if free_pct <= o.vacuum_free_percent && !o.vacuum_asked {
            return Ok(format!(
                "skipped: {free_pct:.1}% free is within {:.0}%",
                o.vacuum_free_percent
            ));
        }
        let bytes = u64::try_from(pages).unwrap_or(0).saturating_mul(
            u64::try_from(q("PRAGMA page_size")?).unwrap_or(4096),
        );
        if bytes > o.vacuum_max_bytes && !o.vacuum_asked {
            return Ok(format!(
                "not run: {free_pct:.1}% free, but a VACUUM of this {} MB file would hold every writer for about {} s; run `ora maintain weekly --vacuum` in a quiet hour",
                bytes >> 20,
                (bytes >> 20) / 100 + 1
            ));
        }
        // The rebuilt file gives free pages back in slices from then on.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
            .map_err(sql("vacuum"))?;
        let after = q("PRAGMA page_count")?;
        Ok(format!(
            "{pages} -> {after} pages; free pages are given back in slices from now on"
        ))
    })?;
    let check = s.run("integrity_check", || pragma_check(conn, "integrity_check"))?;
    // The sizes read every page once more (2 s at 3.3 GB beside the check's 70 s); the
    // monthly report then need not.
    let mut largest = Vec::new();
    s.run(TABLE_SIZES, || {
        largest = crate::ops::metrics::object_sizes(conn)?;
        largest.truncate(LARGEST_KEPT);
        Ok(match largest.first() {
            Some(o) => format!("largest: {} ({} MB)", o.name, o.bytes >> 20),
            None => "no tables".into(),
        })
    })?;
    s.largest = Some(largest);
    s.run("planner statistics", || planner_statistics(conn))?;
    Ok(check == "ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in `dir` with at least 300 free pages, and their number.
    fn with_free_pages(dir: &Path) -> (Connection, i64) {
        let conn = Connection::open(dir.join("t.db")).unwrap();
        conn.execute_batch(
            "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;
             CREATE TABLE a (x); CREATE TABLE b (x);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
             INSERT INTO a SELECT randomblob(3000) FROM n;
             INSERT INTO b SELECT randomblob(3000) FROM a;
             DELETE FROM a;",
        )
        .unwrap();
        let free: i64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        assert!(free >= 300, "{free}");
        (conn, free)
    }

    // A slice with time to spare gives back up to 2,048 pages (the pragma steps one page at a
    // time: stepped once, it gave back one page per slice).
    #[test]
    fn a_slice_gives_back_many_pages() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, free) = with_free_pages(dir.path());
        let hour = Duration::from_secs(3600);
        let said = give_back_within(&conn, hour, hour).unwrap();
        assert!(
            said.starts_with(&format!("{free} of {free} pages given back in 1 slice(s)")),
            "{said}"
        );
    }

    // A slice that runs out of time keeps the pages it moved: with no time to spare, one page
    // per slice, and still every free page goes back, the file intact.
    #[test]
    fn a_slice_out_of_time_keeps_what_it_gave_back() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, free) = with_free_pages(dir.path());
        let said = give_back_within(&conn, Duration::from_secs(5), Duration::ZERO).unwrap();
        assert!(
            said.starts_with(&format!(
                "{free} of {free} pages given back in {free} slice(s)"
            )),
            "{said}"
        );
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}
