//! The outbox's bookkeeping statements: a remote target's delivered position and last error in
//! `sync_control`, and pruning the outbox rows every target has. Run inside a transaction the
//! caller owns: the writer's group (a forwarder's records in `ora serve` take their turn with
//! every other write) or a short transaction of `remote::outbox`. Never touches domain tables.

use rusqlite::Connection;

use super::error::{Result, SqlContext};

/// What a forwarder hands the writer after a delivery or a failed attempt: the position and the
/// changes delivered since its last record, the error of a later failure, and whether to prune.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncRecord {
    pub target: String,
    pub ok: Option<(i64, usize)>,
    pub error: Option<String>,
    pub prune: bool,
}

/// Records a delivery up to `seq` (and clears the last error).
pub fn record_ok(conn: &Connection, target: &str, seq: i64, delivered: usize) -> Result<()> {
    let now = crate::model::now_utc();
    conn.prepare_cached(
        "UPDATE sync_control SET last_seq = ?2, delivered = delivered + ?3, last_ok = ?4, last_attempt = ?4,
                last_error = NULL WHERE target = ?1",
    )
    .and_then(|mut st| st.execute((target, seq, delivered as i64, &now)))
    .ctx("record a delivery")?;
    Ok(())
}

/// Records a failed attempt (the position stays).
pub fn record_error(conn: &Connection, target: &str, error: &str) -> Result<()> {
    let now = crate::model::now_utc();
    conn.prepare_cached(
        "UPDATE sync_control SET last_attempt = ?2, last_error = ?3 WHERE target = ?1",
    )
    .and_then(|mut st| st.execute((target, &now, error)))
    .ctx("record a failed delivery")?;
    Ok(())
}

/// Deletes the changes every target has (all of them when no target is registered).
pub fn prune(conn: &Connection) -> Result<usize> {
    conn.execute(
        "DELETE FROM outbox WHERE seq <= (SELECT CASE WHEN count(*) = 0 THEN (SELECT coalesce(max(seq), 0) FROM outbox)
                                                   ELSE min(coalesce(last_seq, -1)) END FROM sync_control)",
        [],
    )
    .ctx("prune the outbox")
}

/// Applies a forwarder's record: the position first, then an error that came after it, then
/// the pruning. Returns the outbox rows pruned.
pub fn apply(conn: &Connection, r: &SyncRecord) -> Result<usize> {
    if let Some((seq, n)) = r.ok {
        record_ok(conn, &r.target, seq, n)?;
    }
    if let Some(e) = &r.error {
        record_error(conn, &r.target, e)?;
    }
    if r.prune {
        return prune(conn);
    }
    Ok(0)
}
