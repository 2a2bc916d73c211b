//! The digest of a row's values, for comparing a table here with its copy elsewhere (the
//! replica's nightly proof, the PostgreSQL mirror's check): a sum of row hashes, so the order
//! rows are read in does not matter. Pure.

use sha2::{Digest, Sha256};

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
