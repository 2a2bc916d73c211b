//! A standby applying its primary's records, inside the writer's transaction: each record must
//! continue the standby's chain (the next sequence number, the hash of the one before, its own
//! hash), carry no gap, and apply without a conflict; then its changes are in, with the
//! primary's triggers' effects already part of them (the connection's triggers are off while
//! they apply, so nothing acts twice), the product search index follows, the record is kept in
//! `replica_log` (for a standby of its own after a promotion, and for an old primary that
//! rejoins), and the position moves. A record that does not fit stops the batch there: what
//! came before it stays, and the caller learns why a new base is needed. Never writes anything
//! a record does not carry, and never runs on a primary.

use rusqlite::config::DbConfig;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::capture::{self, Record};
use super::error::{Result, SqlContext, StoreError};
use super::recorder::Savepoint;
use super::{schema, session};

/// Records a standby keeps in `replica_log` once applied.
const KEEP_RECORDS: i64 = 20_000;

/// The primary's records, in order, and the epoch it serves them in.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub epoch: i64,
    pub records: Vec<Record>,
}

/// Where a batch left the standby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Followed {
    /// The last record applied (the position before the batch when none was).
    pub seq: i64,
    pub applied: usize,
    /// Why the rest of the batch could not be applied: the standby needs a new base.
    pub needs_base: Option<String>,
}

/// Applies `b` on the standby `conn` (inside the caller's write transaction).
pub fn apply(conn: &Connection, b: &Batch) -> Result<Followed> {
    let st = capture::state(conn)?
        .ok_or_else(|| StoreError::conflict("this database has no replica state to follow with"))?;
    if !st.standby {
        return Err(StoreError::not_primary(
            "this database is not a standby; it applies no primary's records",
        ));
    }
    if b.epoch < st.epoch {
        return Ok(Followed {
            seq: st.seq,
            applied: 0,
            needs_base: Some(format!(
                "the primary serves epoch {} but this standby has seen epoch {}: it is an old primary",
                b.epoch, st.epoch
            )),
        });
    }
    let (mut seq, mut hash) = (st.seq, st.last_hash);
    let mut applied = 0;
    let mut needs_base = None;
    let mut renamed = false;
    with_triggers_off(conn, || {
        for r in &b.records {
            if let Some(why) = misfit(r, seq, &hash) {
                needs_base = Some(why);
                break;
            }
            let point = Savepoint::take(conn, "follow_record").ctx("apply the primary's record")?;
            if let Err(e) = session::apply(conn, &r.changeset) {
                point.roll_back(conn).ctx("apply the primary's record")?;
                needs_base = Some(format!(
                    "the primary's record {} does not apply to this standby ({e}): their data differ",
                    r.seq
                ));
                break;
            }
            point.release(conn).ctx("apply the primary's record")?;
            renamed = renamed
                || session::touches(&r.changeset, "inventory_current", &[0, 1])
                    .ctx("read the primary's record")?;
            keep(conn, r)?;
            (seq, hash) = (r.seq, r.hash);
            applied += 1;
        }
        Ok(())
    })?;
    if renamed {
        conn.execute_batch(schema::REBUILD_DERIVED)
            .ctx("rebuild the product search index")?;
    }
    if applied > 0 {
        conn.prepare_cached(
            "UPDATE replica_state SET seq = ?1, last_hash = ?2, epoch = max(epoch, ?3) WHERE id = 1",
        )
        .and_then(|mut s| s.execute(rusqlite::params![seq, &hash[..], b.epoch]))
        .ctx("move the standby's position")?;
        conn.prepare_cached("DELETE FROM replica_log WHERE seq <= ?1")
            .and_then(|mut s| s.execute([seq - KEEP_RECORDS]))
            .ctx("prune the standby's kept records")?;
    }
    Ok(Followed {
        seq,
        applied,
        needs_base,
    })
}

/// Why `r` cannot follow the position (`seq`, `hash`), if it cannot.
fn misfit(r: &Record, seq: i64, hash: &[u8; 32]) -> Option<String> {
    if r.seq != seq + 1 {
        return Some(format!(
            "the primary's next record is {} but this standby stands at {seq}",
            r.seq
        ));
    }
    if &r.prev_hash != hash {
        return Some(format!(
            "the primary's record {} does not continue this standby's history: the two have diverged",
            r.seq
        ));
    }
    if !r.hash_ok() {
        return Some(format!("the primary's record {} is damaged", r.seq));
    }
    if r.is_gap() {
        return Some(format!(
            "the primary's history has a gap before record {} (a change outside ora, or a schema change)",
            r.seq
        ));
    }
    None
}

/// Keeps an applied record in `replica_log`.
fn keep(conn: &Connection, r: &Record) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO replica_log (seq, committed_ms, flags, first_ledger, last_ledger, prev_hash, hash, changeset)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(rusqlite::params![
            r.seq,
            r.committed_ms,
            r.flags,
            r.first_ledger,
            r.last_ledger,
            &r.prev_hash[..],
            &r.hash[..],
            &r.changeset
        ])
    })
    .ctx("keep the primary's record")?;
    Ok(())
}

/// Runs `f` with the connection's triggers off (the records already carry their effects),
/// turning them on again whatever happens. SQLite re-prepares the connection's statements
/// after each switch, so none keeps the other setting.
pub(super) fn with_triggers_off(conn: &Connection, f: impl FnOnce() -> Result<()>) -> Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)
        .ctx("turn the triggers off")?;
    let r = f();
    let on = conn
        .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, true)
        .ctx("turn the triggers on again");
    r.and(on.map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::super::ledger::Movement;
    use super::super::products::NewProduct;
    use super::super::role::{self, Following};
    use super::super::workflows::WorkflowChange;
    use super::super::{capture, connection, OpenMode, Store, StoreKind, StoreOptions};
    use super::super::{Outcome, WriteOp, WriteRequest};
    use super::*;
    use crate::model::TxType;
    use std::path::Path;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);

    fn open(p: &Path) -> Store {
        Store::open(&StoreOptions::new(p), OpenMode::Create).unwrap()
    }

    fn write(s: &Store, op: WriteOp) {
        s.write(WriteRequest::new(op)).unwrap();
    }

    fn rows(p: &Path, sql: &str) -> Vec<String> {
        let c = Connection::open(p).unwrap();
        let mut st = c.prepare(sql).unwrap();
        let r = st
            .query_map([], |r| {
                let n = r.as_ref().column_count();
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap();
        r.map(|x| x.unwrap()).collect()
    }

    fn records_after(p: &Path, seq: i64) -> Vec<Record> {
        let c = Connection::open(p).unwrap();
        let mut st = c
            .prepare("SELECT seq, committed_ms, flags, first_ledger, last_ledger, prev_hash, hash, changeset FROM replica_log WHERE seq > ?1 ORDER BY seq")
            .unwrap();
        let r = st
            .query_map([seq], |r| {
                Ok(Record {
                    seq: r.get(0)?,
                    committed_ms: r.get(1)?,
                    flags: r.get(2)?,
                    first_ledger: r.get(3)?,
                    last_ledger: r.get(4)?,
                    prev_hash: capture::hash_from(&r.get::<_, Vec<u8>>(5)?),
                    hash: capture::hash_from(&r.get::<_, Vec<u8>>(6)?),
                    changeset: r.get(7)?,
                })
            })
            .unwrap();
        r.map(|x| x.unwrap()).collect()
    }

    /// A primary with its feed on, and a standby made from a copy of it.
    fn pair(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, i64) {
        let p = dir.join("p.db");
        let s = dir.join("s.db");
        open(&p).close();
        let c = connection::open_writer(&p, &Default::default()).unwrap();
        capture::replica_write(&c, WAIT, |c| role::set_feed(c, true)).unwrap();
        c.execute("VACUUM INTO ?1", [s.to_str().unwrap()]).unwrap();
        let st = capture::state(&c).unwrap().unwrap();
        let sc = connection::open_writer(&s, &Default::default()).unwrap();
        capture::replica_write(&sc, WAIT, |c| {
            role::become_standby(
                c,
                &Following {
                    primary_url: "http://p:8080".into(),
                    database_id: st.database_id.clone(),
                    epoch: 1,
                    seq: st.seq,
                    last_hash: st.last_hash,
                },
            )
        })
        .unwrap();
        (p, s, st.seq)
    }

    const COMPARED: &[&str] = &[
        "SELECT * FROM inventory_current ORDER BY sku",
        "SELECT * FROM inventory_transactions ORDER BY id",
        "SELECT * FROM workflows ORDER BY name",
        "SELECT * FROM audit_log ORDER BY id",
        "SELECT count(*) FROM outbox",
    ];

    #[test]
    fn a_standby_applies_its_primarys_records_into_the_same_data() {
        let dir = tempfile::tempdir().unwrap();
        let (p, s, base) = pair(dir.path());
        let primary = open(&p);
        write(
            &primary,
            WriteOp::ProductAdd(NewProduct {
                sku: "P-1".into(),
                product_name: "Brass lamp".into(),
                reorder_point: 2,
                initial_quantity: 5,
            }),
        );
        write(
            &primary,
            WriteOp::Movement(Movement::new("P-1", TxType::Ship, 3)),
        );
        write(
            &primary,
            WriteOp::WorkflowSet(WorkflowChange {
                name: "dock".into(),
                status: "running".into(),
                details: None,
                expect_version: None,
            }),
        );
        primary.close();
        let recs = records_after(&p, base);
        assert_eq!(recs.len(), 3);

        let standby = open(&s);
        let refused = standby
            .write(WriteRequest::new(WriteOp::Movement(Movement::new(
                "P-1",
                TxType::Receive,
                1,
            ))))
            .unwrap_err();
        assert_eq!(refused.kind(), StoreKind::NotPrimary);
        let follow = |records: Vec<Record>| match standby
            .write(WriteRequest::new(WriteOp::Follow(Batch {
                epoch: 1,
                records,
            })))
            .unwrap()
            .outcome
        {
            Outcome::Followed(f) => f,
            other => panic!("{other:?}"),
        };
        let f = follow(recs.clone());
        assert_eq!((f.applied, f.needs_base.as_deref()), (3, None));
        assert_eq!(f.seq, recs[2].seq);
        // Applied twice: refused at the first record, nothing changes.
        let again = follow(recs.clone());
        assert_eq!(again.applied, 0);
        assert!(again.needs_base.unwrap().contains("stands at"));
        standby.close();

        for sql in COMPARED {
            assert_eq!(rows(&p, sql), rows(&s, sql), "{sql}");
        }
        // The search index followed the new product; the position and the kept records too.
        assert_eq!(
            rows(
                &s,
                "SELECT sku FROM product_search WHERE product_search MATCH 'lamp'"
            ),
            ["Text(\"P-1\")"]
        );
        let sc = Connection::open(&s).unwrap();
        let st = capture::state(&sc).unwrap().unwrap();
        assert_eq!((st.seq, st.last_hash), (recs[2].seq, recs[2].hash));
        assert_eq!(records_after(&s, base), recs);
    }

    #[test]
    fn a_record_that_does_not_continue_the_chain_stops_the_batch_there() {
        let dir = tempfile::tempdir().unwrap();
        let (p, s, base) = pair(dir.path());
        let primary = open(&p);
        for q in [5, 6, 7] {
            write(
                &primary,
                WriteOp::ProductAdd(NewProduct {
                    sku: format!("P-{q}"),
                    product_name: "x".into(),
                    reorder_point: 0,
                    initial_quantity: q,
                }),
            );
        }
        primary.close();
        let mut recs = records_after(&p, base);
        // The third is another history's: its link to the second is wrong.
        recs[2].prev_hash = [9; 32];
        let standby = open(&s);
        let out = standby
            .write(WriteRequest::new(WriteOp::Follow(Batch {
                epoch: 1,
                records: recs.clone(),
            })))
            .unwrap()
            .outcome;
        standby.close();
        let Outcome::Followed(f) = out else {
            panic!("{out:?}")
        };
        assert_eq!(f.applied, 2);
        assert!(f.needs_base.unwrap().contains("diverged"));
        assert_eq!(
            rows(&s, "SELECT sku FROM inventory_current ORDER BY sku"),
            ["Text(\"P-5\")", "Text(\"P-6\")"]
        );
    }

    /// Turning the feed on and a write queued right behind it are two transactions: the write
    /// is captured as the first record, and that record is no gap (a gap would send every
    /// standby for a new base).
    #[test]
    fn a_write_queued_behind_the_feed_turning_on_is_captured() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.db");
        let store = open(&p);
        let w = store.writer().unwrap();
        let on = w
            .enqueue(WriteRequest::new(WriteOp::Role(role::Change::Feed(true))))
            .unwrap();
        let add = w
            .enqueue(WriteRequest::new(WriteOp::ProductAdd(NewProduct {
                sku: "P-1".into(),
                product_name: "Brass lamp".into(),
                reorder_point: 2,
                initial_quantity: 5,
            })))
            .unwrap();
        on.wait().unwrap();
        add.wait().unwrap();
        write(
            &store,
            WriteOp::Movement(Movement::new("P-1", TxType::Ship, 1)),
        );
        store.close();
        let recs = records_after(&p, 0);
        assert_eq!(recs.len(), 2, "both writes are captured");
        assert!(recs.iter().all(|r| !r.is_gap()), "no gap in {recs:?}");
    }
}
