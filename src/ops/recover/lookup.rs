//! What a table keyed by a text column (orders by number, products by sku, idempotency keys)
//! lost, found without holding its keys: every key a witness names (an entry of the damaged
//! file's primary-key index, a row of the backup) is looked up in the salvaged file, and only
//! the ones it lacks are kept. Memory grows with what was lost, not with the table (1.66M order
//! numbers held as text took about 100 MB per copy, and the comparison held several).
//! Reads the damaged file only through `Pages`; never writes.

use std::collections::BTreeSet;

use rusqlite::types::Value;
use rusqlite::Connection;

use super::losses::{bound_by_damaged_pages, Loss};
use super::pages::Pages;
use super::salvage::{self, SchemaEntry};
use super::sql;
use crate::error::Result;
use crate::store::schema::quote_ident;

/// One table keyed by column `key`, and what survived that names its rows.
pub struct TextKeyed<'a> {
    pub table: &'a str,
    pub key: &'a str,
    /// The damaged file's pages and the root of the table's primary-key index, if it had one.
    pub index: Option<(&'a Pages, u32)>,
    /// The backup's copy, opened.
    pub backup: Option<&'a Connection>,
    pub damaged_pages: usize,
    pub rows_per_leaf: u64,
}

/// The loss of the table, and how many rows the backup held (when compared with one).
pub fn account(salvaged: &Connection, t: &TextKeyed) -> Result<(Loss, Option<i64>)> {
    let mut lookup = salvaged
        .prepare(&format!(
            "SELECT 1 FROM {} WHERE {} = ?1",
            quote_ident(t.table),
            quote_ident(t.key)
        ))
        .map_err(sql("look a key up in the salvaged file"))?;
    let mut held = |v: &Value| {
        lookup
            .exists([v])
            .map_err(sql("look a key up in the salvaged file"))
    };
    let by_index = match t.index {
        Some((pages, root)) => Some(missing_from_index(pages, root, &mut held)?),
        None => None,
    };
    let by_backup = match t.backup {
        Some(conn) => missing_from_backup(conn, t, &mut held)?,
        None => None,
    };
    let mut how = Vec::new();
    if by_index.as_ref().is_some_and(|m| !m.is_empty()) {
        how.push("index entries".to_string());
    }
    if by_backup.as_ref().is_some_and(|(_, m)| !m.is_empty()) {
        how.push("the backup".to_string());
    }
    let mut missing: BTreeSet<String> = by_index.unwrap_or_default();
    missing.extend(by_backup.iter().flat_map(|(_, m)| m.iter().cloned()));
    let known = missing.len() as u64;
    let (possibly, possibly_how) = bound_by_damaged_pages(t.damaged_pages, t.rows_per_leaf, known);
    let loss = Loss {
        known_lost: known,
        known_lost_how: how,
        known_lost_examples: missing.into_iter().take(5).collect(),
        possibly_lost: possibly,
        possibly_lost_how: possibly_how,
        missing_vs_backup: by_backup.as_ref().map(|(_, m)| m.len() as u64),
    };
    Ok((loss, by_backup.map(|(n, _)| n)))
}

/// The root of the primary-key index of a table keyed by a column (SQLite names it
/// `sqlite_autoindex_<table>_1`; its entries start with the key).
pub fn key_index_root(schema: &[SchemaEntry], table: &str) -> Option<u32> {
    let name = format!("sqlite_autoindex_{table}_1");
    schema
        .iter()
        .find(|e| e.kind == "index" && e.table == table && e.name == name && e.root > 0)
        .map(|e| e.root)
}

type Held<'h> = dyn FnMut(&Value) -> Result<bool> + 'h;

/// The keys the index names that the salvaged file lacks.
fn missing_from_index(pages: &Pages, root: u32, held: &mut Held) -> Result<BTreeSet<String>> {
    let mut missing = BTreeSet::new();
    let mut failed = None;
    salvage::walk_index(pages, root, &mut |v| {
        let Some(key) = v.into_iter().next() else {
            return;
        };
        if failed.is_some() {
            return;
        }
        match held(&key) {
            Ok(true) => {}
            Ok(false) => {
                missing.extend(as_text(key));
            }
            Err(e) => failed = Some(e),
        }
    });
    failed.map_or(Ok(missing), Err)
}

/// How many rows the backup's table holds, and their keys the salvaged file lacks. A backup
/// whose (older) schema lacks the table or the column is not a witness for it.
fn missing_from_backup(
    conn: &Connection,
    t: &TextKeyed,
    held: &mut Held,
) -> Result<Option<(i64, BTreeSet<String>)>> {
    let mut missing = BTreeSet::new();
    let statement = format!(
        "SELECT {} FROM {}",
        quote_ident(t.key),
        quote_ident(t.table)
    );
    let Ok(mut st) = conn.prepare(&statement) else {
        return Ok(None);
    };
    let mut rows = st.query([]).map_err(sql("read the backup's keys"))?;
    let mut count = 0i64;
    while let Some(r) = rows.next().map_err(sql("read the backup's keys"))? {
        count += 1;
        let key: Value = r.get(0).map_err(sql("read the backup's keys"))?;
        if !held(&key)? {
            missing.extend(as_text(key));
        }
    }
    Ok(Some((count, missing)))
}

/// A key as the report shows it (whole numbers in decimal; other kinds are not keys).
fn as_text(v: Value) -> Option<String> {
    match v {
        Value::Text(t) => Some(t),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A key the backup names and the salvage lacks is known lost; the rest of the backup is
    // counted, not held.
    #[test]
    fn a_key_the_backup_names_and_the_salvage_lacks_is_known_lost() {
        let salvaged = Connection::open_in_memory().unwrap();
        let backup = Connection::open_in_memory().unwrap();
        for (c, keys) in [
            (&salvaged, "('A-1'), ('A-2')"),
            (&backup, "('A-1'), ('A-2'), ('A-3')"),
        ] {
            c.execute_batch(&format!(
                "CREATE TABLE orders(number TEXT PRIMARY KEY NOT NULL); INSERT INTO orders VALUES {keys};"
            ))
            .unwrap();
        }
        let t = TextKeyed {
            table: "orders",
            key: "number",
            index: None,
            backup: Some(&backup),
            damaged_pages: 1,
            rows_per_leaf: 10,
        };
        let (loss, in_backup) = account(&salvaged, &t).unwrap();
        assert_eq!(in_backup, Some(3));
        assert_eq!(loss.known_lost, 1);
        assert_eq!(loss.known_lost_examples, ["A-3"]);
        assert_eq!(loss.known_lost_how, ["the backup"]);
        assert_eq!(loss.missing_vs_backup, Some(1));
        assert_eq!(
            loss.possibly_lost, 9,
            "one damaged page of ten rows, one of them known"
        );
    }
}
