//! Capture of every write transaction for the continuous replica. While the database's replica
//! is enabled (`replica_state.enabled`), each write transaction of ora records its row changes
//! (`recorder`, from SQLite's pre-update hook) and, just before COMMIT, stores them as one
//! [`Record`] in `replica_log` (in the same transaction, so a commit and its record exist
//! together or not at all), chained to the previous record by a SHA-256 hash. The shipper
//! copies the records to the replica directory and they are pruned once it has them.
//!
//! A commit by anything that does not capture (the sqlite3 shell, an older ora, a script) is
//! seen, never missed: the `replica_outside_*` triggers raise `replica_state.outside` on any row
//! change and only a captured commit clears it, so the next captured commit finds it raised and
//! marks its record [`FLAG_GAP`]; a schema change is caught by `PRAGMA schema_version` and a
//! hash of the schema. The shipper answers a gap with a fresh base copy.
//!
//! Every write transaction in ora goes through [`Capture`] (the writer) or this module's short
//! writes (everything else): [`short_write`] for bookkeeping (captured), [`replica_write`] for
//! the replica's own tables (never captured), [`hold_write_lock`] to line readers up with no
//! write at all. Never starts or ends a transaction itself, except in those.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::error::{Result, SqlContext, StoreError};
use super::recorder::{self, Recorder};

/// Changes before this record were not all captured: it cannot be applied on the state its
/// predecessor left; the replica needs a new base at or after it.
const FLAG_GAP: u32 = 1;

/// Tables never recorded: the capture's own tables, SQLite's internal ones, and the derived
/// search index (rebuilt from its content table on restore).
pub static SKIP_PREFIXES: &[&str] = &["replica_", "sqlite_", "product_search"];

/// The hash before the first record.
pub const ZERO_HASH: [u8; 32] = [0; 32];

/// One captured commit: its changes and its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the database's history: 1, 2, 3, ... with no holes.
    pub seq: i64,
    /// Wall-clock time of the commit, milliseconds since 1970 (UTC).
    pub committed_ms: i64,
    pub flags: u32,
    /// Lowest and highest ledger id this commit inserted (0 when none).
    pub first_ledger: i64,
    pub last_ledger: i64,
    /// The hash of the record before (ZERO_HASH for the first).
    pub prev_hash: [u8; 32],
    /// SHA-256 over the previous hash, the fields above and the changeset.
    pub hash: [u8; 32],
    /// The changeset of the commit (the session extension's format).
    pub changeset: Vec<u8>,
}

impl Record {
    /// The chained hash of a record's content.
    pub fn compute_hash(
        prev: &[u8; 32],
        seq: i64,
        committed_ms: i64,
        flags: u32,
        ledger: (i64, i64),
        changeset: &[u8],
    ) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"ora-replica-record-1");
        h.update(prev);
        h.update(seq.to_le_bytes());
        h.update(committed_ms.to_le_bytes());
        h.update(flags.to_le_bytes());
        h.update(ledger.0.to_le_bytes());
        h.update(ledger.1.to_le_bytes());
        h.update((changeset.len() as u64).to_le_bytes());
        h.update(changeset);
        h.finalize().into()
    }

    /// Whether the stored hash matches the content and `prev`.
    pub fn hash_ok(&self) -> bool {
        self.hash
            == Record::compute_hash(
                &self.prev_hash,
                self.seq,
                self.committed_ms,
                self.flags,
                (self.first_ledger, self.last_ledger),
                &self.changeset,
            )
    }

    pub fn is_gap(&self) -> bool {
        self.flags & FLAG_GAP != 0
    }
}

/// A 32-byte hash from a blob column (an empty or odd blob reads as ZERO_HASH).
pub fn hash_from(blob: &[u8]) -> [u8; 32] {
    <[u8; 32]>::try_from(blob).unwrap_or(ZERO_HASH)
}

/// The capture's position, as `replica_state` holds it.
#[derive(Debug, Clone)]
pub struct State {
    pub database_id: String,
    pub enabled: bool,
    pub dir: Option<String>,
    pub mode: String,
    pub seq: i64,
    pub last_hash: [u8; 32],
    pub outside: bool,
    pub schema_version: i64,
    pub schema_hash: String,
    /// Commits are captured for standbys (even without a replica directory).
    pub feed: bool,
    /// This file follows a primary (it applies the primary's records, takes no writes).
    pub standby: bool,
    /// The epoch of the lineage: a promotion starts the next.
    pub epoch: i64,
}

impl State {
    /// Whether commits are captured: for the replica or for standbys, never on a standby.
    pub fn captures(&self) -> bool {
        (self.enabled || self.feed) && !self.standby
    }
}

/// Reads `replica_state` (None on a database older than the replica).
pub fn state(conn: &Connection) -> Result<Option<State>> {
    let mut st = match conn.prepare_cached(
        "SELECT database_id, enabled, dir, mode, seq, last_hash, outside, schema_version, schema_hash,
                feed, role = 'standby', epoch
           FROM replica_state WHERE id = 1",
    ) {
        Ok(st) => st,
        Err(e) => {
            return match user_version(conn) {
                // A file older than the replica's migration has no such table.
                Some(v) if v < REPLICA_SCHEMA_VERSION => Ok(None),
                // Older than the standbys' columns: read without them (a primary of epoch 1).
                Some(v) if v < ROLE_SCHEMA_VERSION => state_before_roles(conn),
                _ => Err(StoreError::sqlite("read the replica state", e)),
            }
        }
    };
    st.query_row([], state_of)
        .optional()
        .ctx("read the replica state")
}

/// [`state`] of a file from before the standbys' columns: a primary of epoch 1, no feed.
fn state_before_roles(conn: &Connection) -> Result<Option<State>> {
    conn.query_row(
        "SELECT database_id, enabled, dir, mode, seq, last_hash, outside, schema_version, schema_hash,
                0, 0, 1
           FROM replica_state WHERE id = 1",
        [],
        state_of,
    )
    .optional()
    .ctx("read the replica state")
}

/// A `replica_state` row, its columns in [`state`]'s order.
fn state_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<State> {
    Ok(State {
        database_id: r.get(0)?,
        enabled: r.get(1)?,
        dir: r.get(2)?,
        mode: r.get(3)?,
        seq: r.get(4)?,
        last_hash: hash_from(&r.get::<_, Vec<u8>>(5)?),
        outside: r.get(6)?,
        schema_version: r.get(7)?,
        schema_hash: r.get(8)?,
        feed: r.get(9)?,
        standby: r.get(10)?,
        epoch: r.get(11)?,
    })
}

fn user_version(conn: &Connection) -> Option<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .ok()
}

/// The schema version that made `replica_state` and `replica_log`.
const REPLICA_SCHEMA_VERSION: i64 = 4;
/// The schema version that added the standbys' columns (`store::role`).
const ROLE_SCHEMA_VERSION: i64 = 13;

/// A hash of the schema (every table, index, trigger and view with its SQL), leaving out
/// SQLite's own tables (ANALYZE creates `sqlite_stat1`; that changes no data).
pub fn schema_hash(conn: &Connection) -> Result<String> {
    let mut st = conn
        .prepare(
            "SELECT type, name, coalesce(sql, '') FROM sqlite_schema
              WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name",
        )
        .ctx("read the schema")?;
    let mut rows = st.query([]).ctx("read the schema")?;
    let mut h = Sha256::new();
    while let Some(r) = rows.next().ctx("read the schema")? {
        for i in 0..3 {
            let s: String = r.get(i).ctx("read the schema")?;
            h.update(s.as_bytes());
            h.update([0]);
        }
    }
    Ok(crate::fsutil::hex(&h.finalize()))
}

pub fn schema_version(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("PRAGMA schema_version")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .ctx("read the schema version")
}

/// Milliseconds since 1970, UTC.
pub fn now_ms() -> i64 {
    crate::clock::now().timestamp_millis()
}

/// The capture of one write transaction, begun right after `BEGIN IMMEDIATE`.
pub struct Capture<'c> {
    recorder: Option<Recorder<'c>>,
    state: Option<State>,
    /// Why the changes before this commit are not all in the chain.
    gap: Option<String>,
    /// (version, hash) to record when the schema's cookie moved.
    schema: Option<(i64, String)>,
}

impl<'c> Capture<'c> {
    /// Starts capturing on `conn`, inside its open write transaction. Off (nothing recorded)
    /// while the database has no replica.
    pub fn begin(conn: &'c Connection) -> Result<Capture<'c>> {
        let state = state(conn)?.filter(State::captures);
        let Some(st) = state else {
            return Ok(Capture {
                recorder: None,
                state: None,
                gap: None,
                schema: None,
            });
        };
        let mut gap = st
            .outside
            .then(|| "another program changed the database".to_string());
        let mut schema = None;
        let version = schema_version(conn)?;
        if version != st.schema_version {
            let hash = schema_hash(conn)?;
            if hash != st.schema_hash {
                gap.get_or_insert_with(|| "the schema changed".to_string());
            }
            schema = Some((version, hash));
        }
        let current_hash = schema.as_ref().map_or(st.schema_hash.as_str(), |(_, h)| h);
        let recorder = recorder::tables_for(conn, current_hash, SKIP_PREFIXES)
            .and_then(|tables| Recorder::start(conn, tables))
            .map_err(|e| StoreError::sqlite("capture for the replica", e))?;
        Ok(Capture {
            recorder: Some(recorder),
            state: Some(st),
            gap,
            schema,
        })
    }

    /// Whether this transaction is captured.
    pub fn active(&self) -> bool {
        self.recorder.is_some()
    }

    /// Stores the transaction's record (when it changed anything, or must report a gap) and
    /// moves the capture's position, just before COMMIT. Also drops `replica_log` rows up to
    /// `prune_upto` (the replica has them). Returns the record for a synchronous shipper.
    ///
    /// Kept whole: the replica record of one transaction: whether there is one, the gap it must
    /// report, its hash link and the position, all written just before COMMIT in one order.
    pub fn finish(self, conn: &Connection, prune_upto: i64) -> Result<Option<Record>> {
        let (Some(recorder), Some(st)) = (self.recorder, self.state) else {
            return Ok(None);
        };
        let sql = |e| StoreError::sqlite("record the commit for the replica", e);
        let changeset = recorder.changeset().map_err(sql)?;
        drop(recorder);
        if prune_upto > 0 {
            conn.prepare_cached("DELETE FROM replica_log WHERE seq <= ?1")
                .and_then(|mut s| s.execute([prune_upto]))
                .map_err(sql)?;
        }
        let (schema_v, schema_h) = match self.schema {
            Some((v, h)) => (v, h),
            None => (st.schema_version, st.schema_hash.clone()),
        };
        if changeset.is_empty() && self.gap.is_none() {
            // Nothing captured changed (our own triggers may still have raised the flag on a
            // no-op update, or the schema cookie moved without a schema change).
            conn.prepare_cached(
                "UPDATE replica_state SET outside = 0, schema_version = ?1, schema_hash = ?2 WHERE id = 1",
            )
            .and_then(|mut s| s.execute(rusqlite::params![schema_v, schema_h]))
            .map_err(sql)?;
            return Ok(None);
        }
        let ids = super::changeset_ids::inserted_ids(&changeset, "inventory_transactions")
            .map_err(sql)?;
        let ledger = (
            ids.iter().copied().min().unwrap_or(0),
            ids.iter().copied().max().unwrap_or(0),
        );
        let seq = st
            .seq
            .checked_add(1)
            .ok_or_else(|| StoreError::failed("the replica position overflowed"))?;
        let flags = if self.gap.is_some() { FLAG_GAP } else { 0 };
        let committed_ms = now_ms();
        let hash =
            Record::compute_hash(&st.last_hash, seq, committed_ms, flags, ledger, &changeset);
        if let Some(why) = &self.gap {
            log::warn!(
                "replica: {why} outside ora before commit {seq}; the replica will take a new base"
            );
        }
        conn.prepare_cached(
            "INSERT INTO replica_log (seq, committed_ms, flags, first_ledger, last_ledger, prev_hash, hash, changeset)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                seq,
                committed_ms,
                flags,
                ledger.0,
                ledger.1,
                &st.last_hash[..],
                &hash[..],
                &changeset
            ])
        })
        .map_err(sql)?;
        conn.prepare_cached(
            "UPDATE replica_state SET seq = ?1, last_hash = ?2, outside = 0, schema_version = ?3, schema_hash = ?4 WHERE id = 1",
        )
        .and_then(|mut s| s.execute(rusqlite::params![seq, &hash[..], schema_v, schema_h]))
        .map_err(sql)?;
        Ok(Some(Record {
            seq,
            committed_ms,
            flags,
            first_ledger: ledger.0,
            last_ledger: ledger.1,
            prev_hash: st.last_hash,
            hash,
            changeset,
        }))
    }
}

/// The kept records after `after`, in order: at most `max_count`, and no more than `max_bytes`
/// of changesets (but at least one record when there is one).
pub fn records_after(
    conn: &Connection,
    after: i64,
    max_count: usize,
    max_bytes: usize,
) -> Result<Vec<Record>> {
    let sql = |e| StoreError::sqlite("read the kept records", e);
    let mut st = conn
        .prepare_cached(
            "SELECT seq, committed_ms, flags, first_ledger, last_ledger, prev_hash, hash, changeset
               FROM replica_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(sql)?;
    let limit = i64::try_from(max_count).unwrap_or(i64::MAX);
    let mut rows = st.query(rusqlite::params![after, limit]).map_err(sql)?;
    let (mut out, mut bytes) = (Vec::new(), 0usize);
    while let Some(r) = rows.next().map_err(sql)? {
        let rec = Record {
            seq: r.get(0).map_err(sql)?,
            committed_ms: r.get(1).map_err(sql)?,
            flags: r.get(2).map_err(sql)?,
            first_ledger: r.get::<_, Option<i64>>(3).map_err(sql)?.unwrap_or(0),
            last_ledger: r.get::<_, Option<i64>>(4).map_err(sql)?.unwrap_or(0),
            prev_hash: hash_from(&r.get::<_, Vec<u8>>(5).map_err(sql)?),
            hash: hash_from(&r.get::<_, Vec<u8>>(6).map_err(sql)?),
            changeset: r.get(7).map_err(sql)?,
        };
        bytes = bytes.saturating_add(rec.changeset.len());
        if bytes > max_bytes && !out.is_empty() {
            break;
        }
        out.push(rec);
    }
    Ok(out)
}

/// The hash of the chain at `seq`, as this database knows it: the kept record's, the link of
/// the kept record after it, or the capture's position when that is `seq` (None: none of
/// these).
pub fn hash_at(conn: &Connection, seq: i64) -> Result<Option<[u8; 32]>> {
    let kept: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT hash FROM replica_log WHERE seq = ?1
             UNION ALL SELECT prev_hash FROM replica_log WHERE seq = ?1 + 1 LIMIT 1",
        )
        .and_then(|mut s| s.query_row([seq], |r| r.get(0)).optional())
        .ctx("read a kept record")?;
    if let Some(h) = kept {
        return Ok(Some(hash_from(&h)));
    }
    Ok(state(conn)?.filter(|s| s.seq == seq).map(|s| s.last_hash))
}

/// The oldest kept record (None: none kept).
pub fn oldest_kept(conn: &Connection) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT min(seq) FROM replica_log")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .ctx("read the kept records")
}

/// How long a process that writes in slices pauses between two of them: a writer of another
/// process waiting for the lock tries every millisecond (see
/// [`super::connection::wait_when_busy`]), so it takes the lock in this gap and waits at most
/// one slice.
pub const HAND_OVER: Duration = Duration::from_millis(3);

/// Between two slices of a long job's writes: lets a waiting writer of another process in.
pub fn hand_over() {
    std::thread::sleep(HAND_OVER);
}

/// How long one slice of a long job's writes works holding the write lock, before its
/// commit: the job stops its slice there (giving free pages back, archiving shipments). The
/// same number of pages or rows costs many times more where the file's pages must be read
/// from the disk, so a slice bounded by its size alone does not bound the wait.
pub const SLICE_WORK: Duration = Duration::from_millis(20);

/// Runs `f` in its own short `BEGIN IMMEDIATE` transaction, captured for the replica like the
/// writer's: for ora's bookkeeping writes outside the domain writer (ops_log, sync_control,
/// the outbox, maintenance). Rolls back on any error; refused on a standby (its data change
/// only by its primary's records).
pub fn short_write<T>(
    conn: &Connection,
    lock_wait: Duration,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    transaction(conn, lock_wait, true, f)
}

/// [`short_write`] for the replica's own state (`replica_state`, `replica_log`: the capture's
/// position, the file's lineage, the replica secret): not captured, so nothing here moves
/// the capture's position or clears its `outside` flag.
pub fn replica_write<T>(
    conn: &Connection,
    lock_wait: Duration,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    transaction(conn, lock_wait, false, f)
}

/// Holds the write lock (waiting up to `lock_wait` for it) while `f` runs, then lets it go
/// without writing: no commit can land meanwhile (readers begun in `f` see one state).
pub fn hold_write_lock<T>(
    conn: &Connection,
    lock_wait: Duration,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    super::writer::begin_immediate(conn, lock_wait)?;
    let v = f();
    let _ = conn.execute_batch("ROLLBACK");
    v
}

/// Begins a read transaction on each of `readers` while `gate` holds the write lock (waiting
/// up to `lock_wait` for it): they all see one state of the file, and keep it until each
/// ends its transaction. On failure every reader's transaction is ended again.
pub fn line_up(gate: &Connection, lock_wait: Duration, readers: &[&Connection]) -> Result<()> {
    let r = hold_write_lock(gate, lock_wait, || {
        for c in readers {
            c.execute_batch("BEGIN")
                .and_then(|()| {
                    c.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                        r.get::<_, i64>(0)
                    })
                })
                .ctx("start a read snapshot")?;
        }
        Ok(())
    });
    if r.is_err() {
        for c in readers {
            let _ = c.execute_batch("ROLLBACK");
        }
    }
    r
}

fn transaction<T>(
    conn: &Connection,
    lock_wait: Duration,
    captured: bool,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    super::writer::begin_immediate(conn, lock_wait)?;
    let result = (|| {
        if !captured {
            return f(conn);
        }
        if state(conn)?.is_some_and(|s| s.standby) {
            return Err(StoreError::not_primary(
                "this database is a standby: only its primary's records change it",
            ));
        }
        let cap = Capture::begin(conn)?;
        let v = f(conn)?;
        cap.finish(conn, 0)?;
        Ok(v)
    })();
    match result {
        Ok(v) => match conn.execute_batch("COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(StoreError::sqlite("commit", e))
            }
        },
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(e)
        }
    }
}
