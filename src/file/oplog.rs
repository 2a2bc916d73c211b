//! `ops_log`: one row per run of an operation (health, maintenance, backup, verify, ...), read by
//! the status page and `/metrics`. Writes through its own short `BEGIN IMMEDIATE` connection,
//! never through the domain writer, and never fails the operation it records.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::store::capture::short_write;
use crate::store::connection::{self, Tuning};
use crate::store::{Result, SqlContext};

/// How long an ops_log write waits for a busy writer before giving up.
const LOG_LOCK_WAIT: Duration = Duration::from_secs(30);

/// One finished run, as recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    pub id: i64,
    pub kind: String,
    pub started: String,
    pub finished: Option<String>,
    pub ok: Option<bool>,
    pub details: Option<serde_json::Value>,
}

/// The longest a nightly pass (verify, drill, replica verify) goes without the full pass it
/// stands in for.
pub const FULL_PASS_EVERY_DAYS: i64 = 7;

impl Run {
    /// Whether the run was a nightly (quick) pass; a run that does not say was a full one.
    pub fn is_quick(&self) -> bool {
        self.details.as_ref().is_some_and(|d| d["pass"] == "quick")
    }

    /// How many hours ago the run started on ora's clock (none when its time does not read).
    pub fn hours_ago(&self) -> Option<f64> {
        let t = chrono::DateTime::parse_from_rfc3339(&self.started).ok()?;
        Some(
            (crate::clock::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64
                / 3_600_000.0,
        )
    }
}

/// How many hours ago the newest passing full run of `kind` started (none: no full run has
/// passed, or its time does not read), by the last 500 runs of `kind`.
pub fn last_full_pass_hours(conn: &Connection, kind: &str) -> Result<Option<f64>> {
    let runs = recent(conn, Some(kind), 500)?;
    Ok(runs
        .iter()
        .find(|r| r.ok == Some(true) && !r.is_quick())
        .and_then(Run::hours_ago))
}

/// Whether a nightly run of `kind` must make the full pass: none has passed within
/// [`FULL_PASS_EVERY_DAYS`].
pub fn full_pass_due(conn: &Connection, kind: &str) -> Result<bool> {
    Ok(last_full_pass_hours(conn, kind)?.is_none_or(|h| h >= (FULL_PASS_EVERY_DAYS * 24) as f64))
}

/// Records a finished run of `kind`. Failure to record is logged, not returned: a verify that
/// cannot write its log line (read-only disk) still reports its verdict.
pub fn record(db: &Path, kind: &str, started: &str, ok: bool, details: &serde_json::Value) {
    match try_record(db, kind, started, ok, details) {
        Ok(()) => {}
        // A standby's ops_log is its primary's, copied; its own runs go to the journal only.
        Err(e) if e.kind() == crate::store::StoreKind::NotPrimary => {
            log::info!("{kind} run not recorded in ops_log: {e}");
        }
        Err(e) => log::warn!("could not record the {kind} run in ops_log: {e}"),
    }
}

fn try_record(
    db: &Path,
    kind: &str,
    started: &str,
    ok: bool,
    details: &serde_json::Value,
) -> Result<()> {
    let conn = connection::open_writer(db, &Tuning::default())?;
    insert(&conn, kind, started, ok, details)
}

/// Inserts a run on an open connection in its own short transaction.
pub fn insert(
    conn: &Connection,
    kind: &str,
    started: &str,
    ok: bool,
    details: &serde_json::Value,
) -> Result<()> {
    short_write(conn, LOG_LOCK_WAIT, |conn| {
        conn.execute(
            "INSERT INTO ops_log (kind, started, finished, ok, details) VALUES (?1, ?2, ?3, ?4, ?5)",
            (
                kind,
                started,
                crate::model::now_utc(),
                ok,
                details.to_string(),
            ),
        )
        .ctx("record in ops_log")?;
        Ok(())
    })
}

/// How the runs of one kind of operation in a period went.
#[derive(Debug, Clone, serde::Serialize, Default, PartialEq, Eq)]
pub struct Runs {
    pub ok: i64,
    pub failed: i64,
}

/// The most recent runs of `kind` (or of every kind), newest first.
pub fn recent(conn: &Connection, kind: Option<&str>, limit: u32) -> Result<Vec<Run>> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, kind, started, finished, ok, details FROM ops_log
              WHERE (?1 IS NULL OR kind = ?1) ORDER BY id DESC LIMIT ?2",
        )
        .ctx("read ops_log")?;
    let rows = st
        .query_map((kind, i64::from(limit)), |r| {
            let details: Option<String> = r.get(5)?;
            Ok(Run {
                id: r.get(0)?,
                kind: r.get(1)?,
                started: r.get(2)?,
                finished: r.get(3)?,
                ok: r.get(4)?,
                details: details.and_then(|d| serde_json::from_str(&d).ok()),
            })
        })
        .ctx("read ops_log")?;
    rows.collect::<std::result::Result<Vec<_>, _>>()
        .ctx("read ops_log")
}

/// The newest successful run of `kind` that recorded a list under `field` in its details: when
/// it finished and the list (as JSON text).
pub fn newest_list(conn: &Connection, kind: &str, field: &str) -> Result<Option<(String, String)>> {
    conn.query_row(
        "SELECT coalesce(finished, started), json_extract(details, '$.' || ?2) FROM ops_log
          WHERE kind = ?1 AND ok = 1 AND json_valid(details)
            AND json_type(details, '$.' || ?2) = 'array'
          ORDER BY id DESC LIMIT 1",
        (kind, field),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .ctx("read ops_log")
}

/// The newest recorded integrity result: (kind of run, when it finished, "ok" or the problem).
/// Runs that checked the file record it under `details.integrity`.
pub fn last_integrity(conn: &Connection) -> Result<Option<(String, String, String)>> {
    conn.query_row(
        "SELECT kind, coalesce(finished, started), json_extract(details, '$.integrity') FROM ops_log
          WHERE json_valid(details) AND json_extract(details, '$.integrity') IS NOT NULL
          ORDER BY id DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()
    .ctx("read ops_log")
}

/// The month's runs per kind (`from`..=`to`, by the day they started): how many ended ok and
/// how many failed.
pub fn month_runs(
    conn: &Connection,
    from: &str,
    to: &str,
) -> Result<std::collections::HashMap<String, Runs>> {
    let mut st = conn
        .prepare_cached(
            "SELECT kind, sum(ok = 1), sum(ok = 0) FROM ops_log
              WHERE substr(started, 1, 10) BETWEEN ?1 AND ?2 GROUP BY kind",
        )
        .ctx("read ops_log")?;
    let rows = st
        .query_map([from, to], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Runs {
                    ok: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    failed: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                },
            ))
        })
        .ctx("read ops_log")?;
    rows.collect::<std::result::Result<_, _>>()
        .ctx("read ops_log")
}

/// Integrity results recorded in the month: "ok" and anything else.
pub fn month_integrity(conn: &Connection, from: &str, to: &str) -> Result<Runs> {
    conn.query_row(
        "SELECT coalesce(sum(r = 'ok'), 0), coalesce(sum(r <> 'ok'), 0) FROM (
           SELECT json_extract(details, '$.integrity') AS r FROM ops_log
            WHERE substr(started, 1, 10) BETWEEN ?1 AND ?2 AND json_valid(details)
              AND json_extract(details, '$.integrity') IS NOT NULL)",
        [from, to],
        |r| {
            Ok(Runs {
                ok: r.get(0)?,
                failed: r.get(1)?,
            })
        },
    )
    .ctx("read ops_log")
}

/// The database's size at each good backup of the month: (ms since 1970, bytes), oldest first.
pub fn backup_sizes(conn: &Connection, from: &str, to: &str) -> Result<Vec<(i64, u64)>> {
    let mut st = conn
        .prepare_cached(
            "SELECT started, json_extract(details, '$.database_bytes') FROM ops_log
              WHERE kind = 'backup' AND ok = 1 AND json_valid(details)
                AND substr(started, 1, 10) BETWEEN ?1 AND ?2 ORDER BY id",
        )
        .ctx("read ops_log")?;
    let rows = st
        .query_map([from, to], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .ctx("read ops_log")?;
    let mut out = Vec::new();
    for row in rows {
        let (at, bytes) = row.ctx("read ops_log")?;
        if let (Ok(t), Some(b)) = (chrono::DateTime::parse_from_rfc3339(&at), bytes) {
            out.push((t.timestamp_millis(), b.max(0) as u64));
        }
    }
    Ok(out)
}

/// An ops_log kind in words ("maintain_weekly": "Weekly maintenance"), for people.
pub fn describe(kind: &str) -> String {
    match kind {
        "backup" => "Backup".into(),
        "backup_verify" => "Backup restore drill".into(),
        "health" => "Health check".into(),
        "maintain_daily" => "Daily maintenance".into(),
        "maintain_weekly" => "Weekly maintenance".into(),
        "restore" => "Restore from a backup".into(),
        "recover" => "Salvage (recover)".into(),
        "archive" => "Archive of old backups".into(),
        "verify" => "Full verification".into(),
        "replica_base" => "Replica base copy".into(),
        "replica_verify" => "Replica check".into(),
        "replica_restore" => "Restore from the replica".into(),
        "reconcile" => "Stock set back to the ledger".into(),
        "shipment_archive" => "Archive of old shipments".into(),
        other => {
            let mut w = other.replace('_', " ");
            if let Some(first) = w.get(..1) {
                let up = first.to_ascii_uppercase();
                w.replace_range(..1, &up);
            }
            w
        }
    }
}
