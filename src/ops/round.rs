//! How long the night takes: the nightly round (backup, drill, daily maintenance, verify,
//! replica verify) and the weekly full pass (the full drill, weekly maintenance, the full
//! verify and replica verify), each job timed by its last run in ops_log. Reads ops_log only.

use rusqlite::Connection;
use serde::Serialize;

use crate::file::oplog::{self, Run};
use crate::store::Result;

/// One job of the round, by its last runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// ops_log's kind of the nightly job.
    pub kind: &'static str,
    /// Its last nightly run's seconds (none: it has not run).
    pub nightly_seconds: Option<f64>,
    /// Its last full run's seconds (for maintenance: the weekly routine's).
    pub full_seconds: Option<f64>,
}

/// The round's jobs and their sums.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Round {
    pub jobs: Vec<Job>,
    pub nightly_seconds: f64,
    pub full_seconds: f64,
}

/// The jobs: (nightly kind, the kind of its full form).
const JOBS: [(&str, &str); 5] = [
    ("backup", "backup"),
    ("backup_verify", "backup_verify"),
    ("maintain_daily", "maintain_weekly"),
    ("verify", "verify"),
    ("replica_verify", "replica_verify"),
];

fn seconds(r: &Run) -> Option<f64> {
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let (s, f) = (at(&r.started)?, at(r.finished.as_deref()?)?);
    Some(((f - s).num_milliseconds() as f64 / 1000.0).max(0.0))
}

/// The round as the last runs timed it; none before any job has run.
pub fn estimate(conn: &Connection) -> Result<Option<Round>> {
    let mut jobs = Vec::new();
    for (kind, full_kind) in JOBS {
        let runs = oplog::recent(conn, Some(kind), 50)?;
        // A job with a nightly pass is timed by its newest quick run when there is one.
        let nightly = runs
            .iter()
            .find(|r| r.is_quick())
            .or_else(|| runs.first())
            .and_then(seconds);
        let full = if full_kind == kind {
            runs.iter().find(|r| !r.is_quick()).and_then(seconds)
        } else {
            oplog::recent(conn, Some(full_kind), 1)?
                .first()
                .and_then(seconds)
        };
        jobs.push(Job {
            kind,
            nightly_seconds: nightly,
            full_seconds: full.or(nightly),
        });
    }
    if jobs.iter().all(|j| j.nightly_seconds.is_none()) {
        return Ok(None);
    }
    let sum = |f: fn(&Job) -> Option<f64>| jobs.iter().filter_map(f).sum::<f64>();
    Ok(Some(Round {
        nightly_seconds: sum(|j| j.nightly_seconds),
        full_seconds: sum(|j| j.full_seconds),
        jobs,
    }))
}

/// How long the newest run of `kind` took, of the quick (nightly) pass or the full one; the
/// words a waiting operator reads ("its last full pass took 2 min"), none before any run.
pub fn last_took(conn: &Connection, kind: &str, quick: bool) -> Result<Option<String>> {
    let runs = oplog::recent(conn, Some(kind), 50)?;
    Ok(runs
        .iter()
        .find(|r| r.is_quick() == quick)
        .and_then(seconds)
        .map(|s| {
            let pass = if quick { "nightly pass" } else { "full pass" };
            format!("(its last {pass} took {})", words(s))
        }))
}

/// A duration for people: "45 s", "12 min", "1 h 20 min".
pub fn words(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=89 => format!("{s} s"),
        90..=5399 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600 + 30) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(words(44.6), "45 s");
        assert_eq!(words(125.0), "2 min");
        assert_eq!(words(4800.0), "80 min");
        assert_eq!(words(5400.0), "1 h 30 min");
    }

    #[test]
    fn each_job_is_timed_by_its_last_nightly_and_full_runs() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE ops_log (id INTEGER PRIMARY KEY, kind TEXT, started TEXT, finished TEXT, ok INTEGER, details TEXT)",
        )
        .unwrap();
        assert_eq!(estimate(&conn).unwrap(), None);
        let run = |kind: &str, secs: u32, pass: &str| {
            conn.execute(
                "INSERT INTO ops_log (kind, started, finished, ok, details) VALUES (?1, '2026-12-06T02:00:00Z', ?2, 1, ?3)",
                (
                    kind,
                    format!("2026-12-06T02:{:02}:{:02}Z", secs / 60, secs % 60),
                    format!("{{\"pass\":\"{pass}\"}}"),
                ),
            )
            .unwrap();
        };
        run("backup", 20, "");
        run("verify", 100, "full");
        run("verify", 10, "quick");
        run("maintain_daily", 6, "");
        run("maintain_weekly", 90, "");
        let r = estimate(&conn).unwrap().unwrap();
        let verify = r.jobs.iter().find(|j| j.kind == "verify").unwrap();
        assert_eq!(
            (verify.nightly_seconds, verify.full_seconds),
            (Some(10.0), Some(100.0))
        );
        assert_eq!(r.nightly_seconds, 36.0);
        assert_eq!(r.full_seconds, 210.0);
    }
}
