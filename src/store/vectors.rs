//! Client-supplied product vectors (`product_vectors`): a site that has its own embedding
//! model stores one vector per sku here, and the Qdrant target sends those instead of the
//! built-in embedding of the name. Setting and clearing run in the writer's transaction;
//! reading, the brute-force local nearest-neighbour search and the lookups the Qdrant target
//! makes run on any connection. Never changes a product or its stock.
//!
//! Every vector of a site has the same number of dimensions (one model per site); to change
//! models, clear them all and load the new ones.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::error::{Result, SqlContext, StoreError};
use crate::model;

/// Most dimensions a vector may have (Qdrant's own limit).
pub const MAX_DIMS: usize = 65_536;

/// A vector to store for a product, or `None` to remove the product's vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductVector {
    pub sku: String,
    pub vector: Option<Vec<f32>>,
}

/// What a vector write did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorInfo {
    pub sku: String,
    /// Dimensions of the stored vector (0 when it was removed).
    pub dims: usize,
    /// The vector was removed.
    pub cleared: bool,
}

/// Checks a vector on its own: size, finite numbers, not all zero (cosine needs a length).
pub fn validate_vector(v: &[f32]) -> std::result::Result<(), String> {
    if v.is_empty() {
        return Err("the vector is empty".into());
    }
    if v.len() > MAX_DIMS {
        return Err(format!(
            "the vector has {} dimensions; the limit is {MAX_DIMS}",
            v.len()
        ));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "value {} of the vector is not a finite number (too large for a 32-bit float?)",
            i + 1
        ));
    }
    if v.iter().all(|x| *x == 0.0) {
        return Err("the vector is all zeros; it has no direction to compare".into());
    }
    Ok(())
}

impl ProductVector {
    pub fn validate(&self) -> std::result::Result<(), String> {
        model::validate_sku(&self.sku)?;
        match &self.vector {
            Some(v) => validate_vector(v),
            None => Ok(()),
        }
    }
}

/// Little-endian f32s, as stored.
pub fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`encode`]; `None` for a blob whose length is not a multiple of 4.
pub fn decode(b: &[u8]) -> Option<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// The number of dimensions this site's vectors have, looking past `except` (the sku being
/// replaced), if any vector is stored.
fn site_dims(conn: &Connection, except: Option<&str>) -> Result<Option<usize>> {
    conn.prepare_cached("SELECT dims FROM product_vectors WHERE sku IS NOT ?1 LIMIT 1")
        .and_then(|mut st| st.query_row([except], |r| r.get::<_, i64>(0)).optional())
        .ctx("read product vectors")
        .map(|d| d.map(|d| d as usize))
}

/// Stores or removes a product's vector (in the caller's transaction).
pub fn set(conn: &Connection, pv: &ProductVector) -> Result<VectorInfo> {
    pv.validate().map_err(StoreError::invalid)?;
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM inventory_current WHERE sku = ?1)")
        .and_then(|mut st| st.query_row([&pv.sku], |r| r.get(0)))
        .ctx("read product")?;
    if !exists {
        return Err(StoreError::not_found(format!(
            "unknown sku {:?}; add the product before its vector",
            pv.sku
        )));
    }
    let Some(v) = &pv.vector else {
        conn.prepare_cached("DELETE FROM product_vectors WHERE sku = ?1")
            .and_then(|mut st| st.execute([&pv.sku]))
            .ctx("remove a product vector")?;
        return Ok(VectorInfo {
            sku: pv.sku.clone(),
            dims: 0,
            cleared: true,
        });
    };
    if let Some(d) = site_dims(conn, Some(&pv.sku))? {
        if d != v.len() {
            return Err(StoreError::invalid(format!(
                "this site's product vectors have {d} dimensions and this one has {}; one model per site (to change models run `ora product clear-vectors`, then load the new vectors)",
                v.len()
            )));
        }
    }
    conn.prepare_cached(
        "INSERT INTO product_vectors (sku, dims, vector, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (sku) DO UPDATE SET dims = excluded.dims, vector = excluded.vector, updated_at = excluded.updated_at",
    )
    .and_then(|mut st| st.execute((&pv.sku, v.len() as i64, encode(v), model::now_utc())))
    .ctx("store a product vector")?;
    Ok(VectorInfo {
        sku: pv.sku.clone(),
        dims: v.len(),
        cleared: false,
    })
}

/// Removes every product vector (in the caller's transaction); returns how many there were.
pub fn clear_all(conn: &Connection) -> Result<usize> {
    conn.execute("DELETE FROM product_vectors", [])
        .ctx("remove product vectors")
}

/// A product's name and stored vector, as the Qdrant target needs them; `None` when the
/// product does not exist.
pub fn point_source(conn: &Connection, sku: &str) -> Result<Option<(String, Option<Vec<f32>>)>> {
    conn.prepare_cached(
        "SELECT i.product_name, v.vector FROM inventory_current i
           LEFT JOIN product_vectors v ON v.sku = i.sku WHERE i.sku = ?1",
    )
    .and_then(|mut st| {
        st.query_row([sku], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<Vec<u8>>>(1)?))
        })
        .optional()
    })
    .ctx("read a product vector")
    .map(|o| o.map(|(name, blob)| (name, blob.and_then(|b| decode(&b)))))
}

/// Cosine similarity of `query` (with its precomputed length) and a stored blob, read in
/// place (no allocation); 0 for a blob of another size or without length.
fn cosine_blob(query: &[f32], query_norm: f32, blob: &[u8]) -> f32 {
    if blob.len() != query.len() * 4 || query_norm == 0.0 {
        return 0.0;
    }
    // Eight independent sums, so the compiler can use vector instructions.
    const LANES: usize = 8;
    let (mut dots, mut norms) = ([0f32; LANES], [0f32; LANES]);
    let mut qs = query.chunks_exact(LANES);
    let mut bs = blob.chunks_exact(4 * LANES);
    for (q, b) in (&mut qs).zip(&mut bs) {
        for i in 0..LANES {
            let x = f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
            dots[i] += q[i] * x;
            norms[i] += x * x;
        }
    }
    let (mut dot, mut norm) = (dots.iter().sum::<f32>(), norms.iter().sum::<f32>());
    for (q, c) in qs.remainder().iter().zip(bs.remainder().chunks_exact(4)) {
        let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        dot += q * x;
        norm += x * x;
    }
    if norm == 0.0 {
        0.0
    } else {
        dot / (query_norm * norm.sqrt())
    }
}

/// The `limit` products whose vectors are nearest to `query` by cosine similarity, best
/// first, as (sku, name, score); NotFound when no product has a vector. An exact scan of the vectors (names are read for the winners
/// only): fine for the tens of thousands of products a site has.
pub fn nearest(
    conn: &Connection,
    query: &[f32],
    limit: usize,
) -> Result<Vec<(String, String, f32)>> {
    let Some(d) = site_dims(conn, None)? else {
        return Err(StoreError::not_found(
            "no product has a vector yet; store them with `ora product vector` or PUT /api/products/{sku}/vector",
        ));
    };
    if d != query.len() {
        return Err(StoreError::invalid(format!(
            "the query vector has {} dimensions; this site's product vectors have {d}",
            query.len()
        )));
    }
    let query_norm = query.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut st = conn
        .prepare_cached("SELECT sku, vector FROM product_vectors")
        .ctx("search product vectors")?;
    let mut rows = st.query([]).ctx("search product vectors")?;
    // The best `limit` so far, worst first once full.
    let mut best: Vec<(f32, String)> = Vec::with_capacity(limit + 1);
    while let Some(r) = rows.next().ctx("search product vectors")? {
        let blob = r
            .get_ref(1)
            .ctx("search product vectors")?
            .as_blob()
            .unwrap_or_default();
        let score = cosine_blob(query, query_norm, blob);
        if best.len() == limit && best.first().is_some_and(|w| score <= w.0) {
            continue;
        }
        best.push((score, r.get(0).ctx("search product vectors")?));
        best.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
        if best.len() > limit {
            best.remove(0);
        }
    }
    let mut name = conn
        .prepare_cached("SELECT product_name FROM inventory_current WHERE sku = ?1")
        .ctx("search product vectors")?;
    let mut out = Vec::with_capacity(best.len());
    for (score, sku) in best.into_iter().rev() {
        let n: String = name
            .query_row([&sku], |r| r.get(0))
            .optional()
            .ctx("search product vectors")?
            .unwrap_or_default();
        out.push((sku, n, score));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_odd_lengths_are_refused() {
        let v = vec![0.5f32, -1.25, 3.0e-8, f32::MAX];
        assert_eq!(decode(&encode(&v)), Some(v));
        assert_eq!(decode(&[1, 2, 3]), None);
    }

    #[test]
    fn vectors_without_direction_or_with_non_numbers_are_refused() {
        assert!(validate_vector(&[]).is_err());
        assert!(validate_vector(&[0.0, 0.0]).is_err());
        assert!(validate_vector(&[1.0, f32::INFINITY]).is_err());
        assert!(validate_vector(&[1.0, f32::NAN]).is_err());
        assert!(validate_vector(&vec![1.0; MAX_DIMS + 1]).is_err());
        assert!(validate_vector(&[0.0, 1.0]).is_ok());
    }

    #[test]
    fn cosine_of_a_blob_matches_cosine_of_the_vector() {
        // 19 values: two full lanes of eight and a remainder of three.
        let a: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..19).map(|i| (i as f32 * 0.91).cos()).collect();
        let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        // The reference, in f64 the plain way.
        let dot: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let nb: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt();
        let expected = dot / (f64::from(na) * nb);
        assert!((f64::from(cosine_blob(&a, na, &encode(&b))) - expected).abs() < 1e-5);
        assert!((cosine_blob(&a, na, &encode(&a)) - 1.0).abs() < 1e-5);
        assert_eq!(cosine_blob(&a, na, &encode(&b[..18])), 0.0);
    }

    #[test]
    fn cosine_ranks_parallel_above_orthogonal() {
        let q = [1.0f32, 0.0];
        assert!((cosine_blob(&q, 1.0, &encode(&[2.0, 0.0])) - 1.0).abs() < 1e-6);
        assert!(cosine_blob(&q, 1.0, &encode(&[0.0, 1.0])).abs() < 1e-6);
        assert_eq!(cosine_blob(&[1.0], 1.0, &encode(&[1.0, 0.0])), 0.0);
    }
}
