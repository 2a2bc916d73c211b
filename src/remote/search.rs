//! Product search: Qdrant when it is configured, else the local FTS5 trigram index. The local
//! path asks the index for candidates that share trigrams with the query (so typos still
//! find them) and ranks them by the same embedding Qdrant stores, so both paths answer alike.

use rusqlite::Connection;
use serde::Serialize;

use super::embed;
use crate::store::error::{Result, SqlContext};

/// One hit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
    pub sku: String,
    pub product_name: String,
    pub score: f32,
}

/// Candidates taken from the index before ranking.
const CANDIDATES: usize = 200;

/// The FTS5 query: any of the query's trigrams (quoted), so near misses match too.
fn trigram_query(text: &str) -> Option<String> {
    let norm = embed::normalize(text);
    let chars: Vec<char> = norm.chars().collect();
    let mut grams: Vec<String> = chars
        .windows(3)
        .map(|w| w.iter().collect::<String>())
        .filter(|g: &String| !g.contains(' '))
        .collect();
    grams.sort();
    grams.dedup();
    if grams.is_empty() {
        return None;
    }
    Some(
        grams
            .iter()
            .map(|g| format!("\"{}\"", g.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

/// Searches the local index.
pub fn local(conn: &Connection, text: &str, limit: usize) -> Result<Vec<Hit>> {
    let Some(q) = trigram_query(text) else {
        return Ok(Vec::new());
    };
    let mut st = conn
        .prepare_cached(
            "SELECT sku, product_name FROM product_search WHERE product_search MATCH ?1 ORDER BY rank LIMIT ?2",
        )
        .ctx("search")?;
    let rows = st
        .query_map((q, CANDIDATES as i64), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .ctx("search")?;
    let query = embed::embed(text);
    let wanted = text.trim();
    let mut hits: Vec<Hit> = rows
        .filter_map(|r| r.ok())
        .map(|(sku, product_name)| {
            let score = if sku.eq_ignore_ascii_case(wanted) {
                1.0
            } else {
                embed::cosine(&query, &embed::embed(&product_name))
                    .max(embed::cosine(&query, &embed::embed(&sku)))
            };
            Hit {
                sku,
                product_name,
                score,
            }
        })
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.sku.cmp(&b.sku)));
    hits.truncate(limit);
    Ok(hits)
}
