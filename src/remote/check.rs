//! `ora sync postgres --check`: row counts and an order-independent digest per table, on both
//! sides, compared. A row's hash is SHA-256 over its column values as text (NULL distinct from
//! empty); a table's digest is the wrapping sum of its rows' hashes, so no collation or order
//! matters.

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde::Serialize;

use super::outbox::TABLES;
use crate::store::{Result, SqlContext};

pub use crate::store::row_hash;

/// Rows and digest of one local table.
pub fn local_digest(conn: &Connection, table: &str) -> Result<(i64, u64)> {
    let Some((_, _, cols)) = TABLES.iter().find(|(t, _, _)| *t == table) else {
        return Ok((0, 0));
    };
    let mut st = conn
        .prepare(&format!("SELECT {} FROM {table}", cols.join(", ")))
        .ctx("check")?;
    let mut rows = st.query([]).ctx("check")?;
    let (mut n, mut digest) = (0i64, 0u64);
    while let Some(r) = rows.next().ctx("check")? {
        let values: Vec<Option<String>> = (0..cols.len())
            .map(|i| match r.get_ref(i) {
                Ok(ValueRef::Null) | Err(_) => None,
                Ok(ValueRef::Integer(v)) => Some(v.to_string()),
                Ok(ValueRef::Real(v)) => Some(v.to_string()),
                Ok(ValueRef::Text(t)) => Some(String::from_utf8_lossy(t).into_owned()),
                Ok(ValueRef::Blob(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            })
            .collect();
        digest = digest.wrapping_add(row_hash(&values));
        n += 1;
    }
    Ok((n, digest))
}

/// One table compared.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    pub table: String,
    pub local_rows: i64,
    pub remote_rows: i64,
    pub equal: bool,
}
