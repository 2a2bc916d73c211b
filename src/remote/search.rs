//! Product search: Qdrant when it is configured, else the local FTS5 trigram index. The local
//! path asks the index for candidates that share trigrams with the query (so typos still
//! find them) and ranks them by the same embedding Qdrant stores, so both paths answer alike.
//! A query may also be a vector (for sites with their own model): Qdrant in client mode, else
//! an exact scan of the stored vectors. [`run`] is the one entry the CLI and the API share.

use rusqlite::Connection;
use serde::Serialize;

use super::embed;
use crate::remote::options::{RemoteConfig, VectorSource};
use crate::store::vectors;
use crate::store::{Result, SqlContext};

/// Longest text query, in bytes.
const MAX_TEXT: usize = 500;
/// Most hits one search returns.
pub const MAX_LIMIT: usize = 100;

/// What to look for.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Text(String),
    Vector(Vec<f32>),
}

/// Hits and where they came from ("qdrant" or "local").
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub source: &'static str,
    pub hits: Vec<Hit>,
}

impl Query {
    /// Checks the query on its own (length, numbers).
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            Query::Text(t) if t.trim().is_empty() || t.len() > MAX_TEXT => {
                Err(format!("give 1 to {MAX_TEXT} characters to look for"))
            }
            Query::Text(_) => Ok(()),
            Query::Vector(v) => vectors::validate_vector(v),
        }
    }
}

/// Runs a search: Qdrant when it is configured and can answer this kind of query (text needs
/// the built-in embedding, a vector needs client vectors), else the local store through
/// `local` (a read connection).
pub fn run(
    remote: Option<&RemoteConfig>,
    local: &Connection,
    query: &Query,
    limit: usize,
) -> crate::error::Result<Answer> {
    use crate::error::Error;
    query
        .validate()
        .map_err(|e| Error::new(crate::error::Kind::Invalid, format!("search: {e}")))?;
    let limit = limit.clamp(1, MAX_LIMIT);
    let qdrant = remote.and_then(|r| {
        r.qdrant
            .as_ref()
            .map(|q| (super::qdrant::Qdrant::new(q, &r.site_id), q.vectors))
    });
    match (query, qdrant) {
        (Query::Text(t), Some((q, VectorSource::Builtin))) => {
            // Qdrant picks candidates by the name's embedding; they are ranked by the same
            // score as the local path (the better of name and sku, an exact sku first).
            let mut hits = q.search(t, (limit * 5).min(MAX_LIMIT))?;
            if let Some(p) = crate::store::products::get_nocase(local, t.trim())? {
                if !hits.iter().any(|h| h.sku == p.sku) {
                    hits.push(Hit {
                        sku: p.sku,
                        product_name: p.product_name,
                        score: 0.0,
                    });
                }
            }
            Ok(Answer {
                source: "qdrant",
                hits: rank(hits, t, limit),
            })
        }
        (Query::Vector(v), Some((q, VectorSource::Client { size }))) => {
            if v.len() != size {
                return Err(Error::new(
                    crate::error::Kind::Invalid,
                    format!(
                    "search: the query vector has {} dimensions; the Qdrant collection has {size}",
                    v.len()
                ),
                ));
            }
            Ok(Answer {
                source: "qdrant",
                hits: q.search_vector(v, limit)?,
            })
        }
        (Query::Text(t), _) => Ok(Answer {
            source: "local",
            hits: self::local(local, t, limit)?,
        }),
        (Query::Vector(v), _) => Ok(Answer {
            source: "local",
            hits: local_vector(local, v, limit)?,
        }),
    }
}

/// The nearest stored product vectors to `query`.
pub fn local_vector(conn: &Connection, query: &[f32], limit: usize) -> Result<Vec<Hit>> {
    Ok(vectors::nearest(conn, query, limit)?
        .into_iter()
        .map(|(sku, product_name, score)| Hit {
            sku,
            product_name,
            score,
        })
        .collect())
}

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
    let hits: Vec<Hit> = rows
        .filter_map(|r| r.ok())
        .map(|(sku, product_name)| Hit {
            sku,
            product_name,
            score: 0.0,
        })
        .collect();
    Ok(rank(hits, text, limit))
}

/// The one ranking of both paths: an exact sku (any case) scores 1, anything else the better
/// of its name's and its sku's similarity to the query; ties by sku.
fn rank(hits: Vec<Hit>, text: &str, limit: usize) -> Vec<Hit> {
    let query = embed::embed(text);
    let wanted = text.trim();
    let mut hits: Vec<Hit> = hits
        .into_iter()
        .map(|h| {
            let score = if h.sku.eq_ignore_ascii_case(wanted) {
                1.0
            } else {
                embed::cosine(&query, &embed::embed(&h.product_name))
                    .max(embed::cosine(&query, &embed::embed(&h.sku)))
            };
            Hit { score, ..h }
        })
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.sku.cmp(&b.sku)));
    hits.dedup_by(|a, b| a.sku == b.sku);
    hits.truncate(limit);
    hits
}
