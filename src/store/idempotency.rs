//! Idempotency keys: a write that carries a `request_id` already applied returns the first
//! outcome and changes nothing. A key reused for a different request is a
//! conflict, not a silent replay. Runs inside the writer's transaction; never commits.

use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::command::{Outcome, WriteOp};
use super::error::{Result, SqlContext, StoreError};

/// A stable digest of the request's content, so a reused key can be told apart from a retry.
pub fn fingerprint(op: &WriteOp) -> String {
    let bytes = serde_json::to_vec(op).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored outcome of `request_id`, if it was applied before with the same content.
pub fn lookup(conn: &Connection, request_id: &str, fingerprint: &str) -> Result<Option<Outcome>> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT fingerprint, outcome FROM request_log WHERE request_id = ?1")
        .and_then(|mut st| {
            st.query_row([request_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .ctx("look up request_id")?;
    let Some((stored_fp, outcome)) = row else {
        return Ok(None);
    };
    if stored_fp != fingerprint {
        return Err(StoreError::conflict(format!(
            "request_id {request_id:?} was already used for a different request; use a new request_id for a new request"
        )));
    }
    serde_json::from_str(&outcome).map(Some).map_err(|e| {
        StoreError::failed(format!(
            "read the stored outcome of request_id {request_id:?}: {e}"
        ))
    })
}

/// Records the outcome of `request_id` in the same transaction as the change itself.
pub fn record(
    conn: &Connection,
    request_id: &str,
    fingerprint: &str,
    outcome: &Outcome,
) -> Result<()> {
    let json = serde_json::to_string(outcome)
        .map_err(|e| StoreError::failed(format!("record request_id {request_id:?}: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO request_log (request_id, fingerprint, outcome, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut st| st.execute((request_id, fingerprint, json, crate::model::now_utc())))
    .ctx("record request_id")?;
    Ok(())
}

/// Deletes up to `limit` keys recorded before `cutoff` (an RFC 3339 time), in the caller's
/// transaction; returns how many went. Maintenance calls it until fewer than `limit` go.
pub fn prune_before(conn: &Connection, cutoff: &str, limit: u32) -> Result<usize> {
    conn.execute(
        "DELETE FROM request_log WHERE rowid IN
           (SELECT rowid FROM request_log WHERE created_at < ?1 LIMIT ?2)",
        (cutoff, i64::from(limit)),
    )
    .ctx("prune request_log")
}
