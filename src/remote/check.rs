//! `ora sync postgres --check`: row counts and an order-independent digest per table, on both
//! sides, compared. A row's hash is SHA-256 over its column values as text (NULL distinct from
//! empty); a table's digest is the wrapping sum of its rows' hashes, so no collation or order
//! matters.

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::outbox::TABLES;
use crate::store::error::{Result, SqlContext};

/// The hash of one row's values (as text; `None` for NULL).
pub fn row_hash(values: &[Option<String>]) -> u64 {
    let mut h = Sha256::new();
    for v in values {
        match v {
            Some(s) => {
                h.update([1u8]);
                h.update(s.as_bytes());
            }
            None => h.update([0u8]),
        }
        h.update([0x1f]);
    }
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

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
