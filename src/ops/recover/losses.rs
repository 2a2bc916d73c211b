//! What a salvage lost, and how it knows. A row counts as **known lost** only when something
//! that survived names it and the salvaged file does not hold it: an entry of one of the
//! damaged file's indexes (each holds the key of a row that existed) or a row of the newest
//! backup. **Possibly lost** is a bound, said with its reason: for the tables whose ids are
//! handed out in order (the ledger, shipped items, the ops log), ids up to the highest one seen
//! that nothing accounts for; for the others, the damaged pages of the table's tree times the
//! rows a page of it held (tables keyed by a column are accounted for by lookup, in
//! `super::lookup`). Also: the first id new ledger rows may take (above every id anything ever
//! named, so a lost id is never given to another movement), and idempotency entries whose
//! movement is lost are forgotten (a replay records it again instead of answering with an id
//! that no longer exists). Reads the damaged file only through `Pages`; writes only the output.

use std::collections::HashMap;

use super::intset::IntSet;

use rusqlite::types::Value;
use rusqlite::Connection;

use super::pages::Pages;
use super::salvage::{self, SchemaEntry};
use super::sql;
use crate::error::Result;

/// Tables whose rowids are handed out in order (append-only): a gap is a row lost or an id
/// never used.
pub const DENSE: &[&str] = &[
    "inventory_transactions",
    "shipped_items",
    "ops_log",
    "audit_log",
];

/// What identifies a table's rows: its rowid, or a primary-key column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    Rowid,
    Column(String),
}

/// The key kind of each table of the reference schema.
pub fn key_kinds(reference: &Connection, tables: &[String]) -> Result<HashMap<String, KeyKind>> {
    let mut out = HashMap::new();
    for t in tables {
        let mut st = reference
            .prepare("SELECT name, type FROM pragma_table_info(?1) WHERE pk > 0")
            .map_err(sql("read a table's key"))?;
        let pk: Vec<(String, String)> = st
            .query_map([t], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("read a table's key"))?
            .collect::<std::result::Result<_, _>>()
            .map_err(sql("read a table's key"))?;
        let kind = match pk.as_slice() {
            [(name, decl)] if !decl.eq_ignore_ascii_case("INTEGER") => {
                KeyKind::Column(name.clone())
            }
            _ => KeyKind::Rowid,
        };
        out.insert(t.clone(), kind);
    }
    Ok(out)
}

/// A set of rowids (an [`IntSet`]: a bit per dense id).
#[derive(Debug, Clone, Default)]
pub struct Keys {
    ints: IntSet,
}

impl Keys {
    fn add(&mut self, v: Value) {
        if let Value::Integer(i) = v {
            self.ints.add(i);
        }
    }

    fn seal(mut self) -> Keys {
        self.ints.seal();
        self
    }

    pub fn len(&self) -> usize {
        self.ints.len()
    }

    fn max_int(&self) -> Option<i64> {
        self.ints.max()
    }

    fn has_int(&self, i: i64) -> bool {
        self.ints.contains(i)
    }

    /// The keys of `self` that none of `others` holds, as text.
    fn missing_from(&self, others: &[&Keys]) -> Vec<String> {
        self.ints
            .iter()
            .filter(|i| !others.iter().any(|o| o.has_int(*i)))
            .map(|i| i.to_string())
            .collect()
    }

    fn union(a: Option<&Keys>, b: Option<&Keys>) -> Keys {
        let mut k = Keys::default();
        for s in [a, b].into_iter().flatten() {
            for i in s.ints.iter() {
                k.ints.add(i);
            }
        }
        k.seal()
    }
}

/// The rowids every readable index entry of the damaged file names, per table keyed by rowid
/// (an entry ends with its row's rowid). Tables keyed by a column are accounted for by lookup
/// instead (`super::lookup`), without holding their keys.
pub fn from_indexes(
    pages: &Pages,
    schema: &[SchemaEntry],
    kinds: &HashMap<String, KeyKind>,
) -> HashMap<String, Keys> {
    let mut out: HashMap<String, Keys> = HashMap::new();
    for e in schema.iter().filter(|e| e.kind == "index" && e.root > 0) {
        if kinds.get(&e.table) != Some(&KeyKind::Rowid) {
            continue;
        }
        let keys = out.entry(e.table.clone()).or_default();
        salvage::walk_index(pages, e.root, &mut |mut v| {
            if let Some(last) = v.pop() {
                keys.add(last);
            }
        });
    }
    out.into_iter().map(|(t, k)| (t, k.seal())).collect()
}

/// The rowids of `table` in a database (the salvaged file or a backup's copy).
pub fn keys_in(conn: &Connection, table: &str) -> Result<Keys> {
    let mut st = conn
        .prepare(&format!(
            "SELECT rowid FROM {}",
            crate::store::schema::quote_ident(table)
        ))
        .map_err(sql("read a table's keys"))?;
    let mut rows = st.query([]).map_err(sql("read a table's keys"))?;
    let mut k = Keys::default();
    while let Some(r) = rows.next().map_err(sql("read a table's keys"))? {
        k.add(r.get::<_, Value>(0).map_err(sql("read a table's keys"))?);
    }
    Ok(k.seal())
}

/// Rowids of `table`'s rows the salvage put in lost_and_found (they are there, not lost).
pub fn parked(conn: &Connection, table: &str) -> Result<Keys> {
    let mut st = conn
        .prepare("SELECT row_id FROM lost_and_found WHERE source_table = ?1 AND row_id IS NOT NULL")
        .map_err(sql("read lost_and_found"))?;
    let mut rows = st.query([table]).map_err(sql("read lost_and_found"))?;
    let mut k = Keys::default();
    while let Some(r) = rows.next().map_err(sql("read lost_and_found"))? {
        k.add(r.get::<_, Value>(0).map_err(sql("read lost_and_found"))?);
    }
    Ok(k.seal())
}

/// What one table lost, with how it is known.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Loss {
    /// Rows something that survived names and the salvage does not hold.
    pub known_lost: u64,
    /// What named them: "index entries", "the backup".
    pub known_lost_how: Vec<String>,
    /// The first few of them (ids or keys).
    pub known_lost_examples: Vec<String>,
    /// A bound on further rows that may be lost; see `possibly_lost_how`.
    pub possibly_lost: u64,
    pub possibly_lost_how: Option<String>,
    /// Rows of the backup the salvage does not hold (rows made since the backup are not
    /// counted; rows removed since it are).
    pub missing_vs_backup: Option<u64>,
}

/// Everything known about one table, to account for its losses.
pub struct Facts<'a> {
    pub dense: bool,
    pub present: &'a Keys,
    pub parked: &'a Keys,
    pub from_indexes: Option<&'a Keys>,
    pub from_backup: Option<&'a Keys>,
    /// The largest rowid the table's tree named (interior keys and rows).
    pub tree_max: i64,
    pub damaged_pages: usize,
    pub rows_per_leaf: u64,
}

pub fn account(f: &Facts) -> Loss {
    let evidence = Keys::union(f.from_indexes, f.from_backup);
    let missing = evidence.missing_from(&[f.present, f.parked]);
    let mut how = Vec::new();
    let named_by =
        |k: Option<&Keys>| k.is_some_and(|k| !k.missing_from(&[f.present, f.parked]).is_empty());
    if named_by(f.from_indexes) {
        how.push("index entries".to_string());
    }
    if named_by(f.from_backup) {
        how.push("the backup".to_string());
    }
    let known = missing.len() as u64;
    let (possibly, possibly_how) = if f.dense {
        // Ids up to the highest one anything named, held by nothing and named by nothing.
        let top = [f.tree_max, evidence.max_int().unwrap_or(0)]
            .into_iter()
            .max()
            .unwrap_or(0)
            .max(0);
        let accounted = (1..=top)
            .filter(|i| f.present.has_int(*i) || f.parked.has_int(*i) || evidence.has_int(*i))
            .count() as u64;
        let gaps = u64::try_from(top).unwrap_or(0).saturating_sub(accounted);
        (
            gaps,
            (gaps > 0).then(|| {
                format!("ids up to {top} that no row, index entry or backup accounts for: lost, or never used")
            }),
        )
    } else {
        bound_by_damaged_pages(f.damaged_pages, f.rows_per_leaf, known)
    };
    Loss {
        known_lost: known,
        known_lost_how: how,
        known_lost_examples: missing.into_iter().take(5).collect(),
        possibly_lost: possibly,
        possibly_lost_how: possibly_how,
        missing_vs_backup: f
            .from_backup
            .map(|b| b.missing_from(&[f.present, f.parked]).len() as u64),
    }
}

/// For a table whose ids say nothing of gaps: the damaged pages of its tree times the rows a
/// page held, less the rows already known lost.
pub fn bound_by_damaged_pages(
    damaged_pages: usize,
    rows_per_leaf: u64,
    known: u64,
) -> (u64, Option<String>) {
    let per_page = rows_per_leaf.max(1);
    let bound = (damaged_pages as u64)
        .saturating_mul(per_page)
        .saturating_sub(known);
    let how = (bound > 0).then(|| {
        format!("up to: {damaged_pages} damaged page(s) of the table, about {per_page} rows each")
    });
    (bound, how)
}

/// The ledger ids named by rows of the salvaged file itself: shipped items, stored answers of
/// idempotent requests, the outbox.
fn referenced_ledger_ids(conn: &Connection, answers: &StoredAnswers) -> Result<Vec<i64>> {
    let mut ids: Vec<i64> = Vec::new();
    let top: Option<i64> = conn
        .query_row("SELECT max(transaction_id) FROM shipped_items", [], |r| {
            r.get(0)
        })
        .map_err(sql("read shipped items"))?;
    ids.extend(top);
    let top: Option<i64> = conn
        .query_row(
            "SELECT max(CAST(key AS INTEGER)) FROM outbox WHERE tbl = 'inventory_transactions'",
            [],
            |r| r.get(0),
        )
        .map_err(sql("read the outbox"))?;
    ids.extend(top);
    for (_, moved) in &answers.0 {
        ids.extend(moved);
    }
    Ok(ids)
}

/// Every stored answer of an idempotent request with the ledger ids its movements got, read
/// once for both [`first_new_ledger_id`] and [`forget_lost_requests`].
pub struct StoredAnswers(Vec<(String, Vec<i64>)>);

impl StoredAnswers {
    pub fn read(conn: &Connection) -> Result<StoredAnswers> {
        stored_answers(conn).map(StoredAnswers)
    }
}

fn stored_answers(conn: &Connection) -> Result<Vec<(String, Vec<i64>)>> {
    let mut st = conn
        .prepare("SELECT request_id, outcome FROM request_log")
        .map_err(sql("read request_log"))?;
    let mut rows = st.query([]).map_err(sql("read request_log"))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql("read request_log"))? {
        let id: String = r.get(0).map_err(sql("read request_log"))?;
        let outcome: String = r.get(1).map_err(sql("read request_log"))?;
        let mut moved = Vec::new();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&outcome) {
            movement_ids(&v, &mut moved);
        }
        out.push((id, moved));
    }
    Ok(out)
}

/// The ids of the movements in an answer: every object with an `id`, a `sku` and a `type`.
fn movement_ids(v: &serde_json::Value, out: &mut Vec<i64>) {
    match v {
        serde_json::Value::Object(o) => {
            if let (Some(id), true, true) = (
                o.get("id").and_then(serde_json::Value::as_i64),
                o.contains_key("sku"),
                o.contains_key("type"),
            ) {
                out.push(id);
            }
            o.values().for_each(|x| movement_ids(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| movement_ids(x, out)),
        _ => {}
    }
}

/// The first id a new ledger row may take: above every id the damaged file's tree, its
/// indexes, the salvaged rows, the rows that point at movements, and the backup ever named.
pub fn first_new_ledger_id(
    conn: &Connection,
    answers: &StoredAnswers,
    tree_max: i64,
    from_indexes: Option<&Keys>,
    from_backup: Option<&Keys>,
) -> Result<i64> {
    let held: Option<i64> = conn
        .query_row("SELECT max(id) FROM inventory_transactions", [], |r| {
            r.get(0)
        })
        .map_err(sql("read the ledger"))?;
    let top = referenced_ledger_ids(conn, answers)?
        .into_iter()
        .chain(held)
        .chain([tree_max])
        .chain(from_indexes.and_then(Keys::max_int))
        .chain(from_backup.and_then(Keys::max_int))
        .max()
        .unwrap_or(0);
    Ok(top.saturating_add(1).max(1))
}

/// Removes the stored answers whose movements the salvage does not hold; returns how many.
/// Run once the salvaged rows are loaded; rows added after it take ids above every id an answer
/// names, so they cannot hold a lost movement's place.
pub fn forget_lost_requests(conn: &Connection, answers: &StoredAnswers) -> Result<u64> {
    let mut forgotten = 0;
    for (request_id, moved) in &answers.0 {
        let mut lost = false;
        for &id in moved {
            let held: bool = conn
                .prepare_cached("SELECT 1 FROM inventory_transactions WHERE id = ?1")
                .and_then(|mut st| st.exists([id]))
                .map_err(sql("read the ledger"))?;
            if !held {
                lost = true;
                break;
            }
        }
        if lost {
            conn.execute(
                "DELETE FROM request_log WHERE request_id = ?1",
                [request_id],
            )
            .map_err(sql("forget a lost request"))?;
            forgotten += 1;
        }
    }
    Ok(forgotten)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(v: &[i64]) -> Keys {
        let mut k = Keys::default();
        for i in v {
            k.add(Value::Integer(*i));
        }
        k.seal()
    }

    #[test]
    fn only_what_something_names_is_known_lost() {
        let present = ints(&[1, 2, 4, 7]);
        let parked = ints(&[5]);
        let index = ints(&[1, 2, 3, 4, 5]);
        let backup = ints(&[1, 2, 3, 4, 5, 6]);
        let l = account(&Facts {
            dense: true,
            present: &present,
            parked: &parked,
            from_indexes: Some(&index),
            from_backup: Some(&backup),
            tree_max: 9,
            damaged_pages: 1,
            rows_per_leaf: 50,
        });
        assert_eq!(l.known_lost, 2, "3 (index and backup) and 6 (backup)");
        assert_eq!(l.known_lost_examples, ["3", "6"]);
        assert_eq!(l.known_lost_how, ["index entries", "the backup"]);
        assert_eq!(
            l.possibly_lost, 2,
            "8 and 9: below the tree's highest key, named by nothing"
        );
        assert_eq!(l.missing_vs_backup, Some(2));
    }

    #[test]
    fn movement_ids_are_found_in_every_answer_shape() {
        let mut out = Vec::new();
        let v = serde_json::json!({"kind": "batch", "movements": [
            {"id": 4, "sku": "A", "type": "Receive"}, {"id": 9, "sku": "B", "type": "Ship"}]});
        movement_ids(&v, &mut out);
        let v = serde_json::json!({"kind": "product", "sku": "A", "id": 3});
        movement_ids(&v, &mut out);
        assert_eq!(out, [4, 9]);
    }
}
