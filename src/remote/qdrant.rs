//! The Qdrant target: a collection of products, one point per sku and site (a deterministic
//! UUID from both), the payload `{sku, name, site}` with keyword indexes on sku and site. The
//! vector is the built-in embedding of the product name, or with `vectors = "client"` the
//! vector a client stored for the sku (read from the local store at delivery; a product
//! without one has no point until it gets one). Creates the collection when it is missing and
//! refuses one whose vector size or distance differ. Only product and vector changes concern
//! it; every other change just moves its position on. Also answers searches.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::embed;
use super::httpc;
use super::outbox::Change;
use super::search::Hit;
use super::target::{RemoteError, Target};
use crate::remote::options::{QdrantConfig, VectorSource};
use crate::store::vectors;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Points per upsert request.
const BATCH: usize = 256;

/// One site's products in one collection.
pub struct Qdrant {
    cfg: QdrantConfig,
    site: String,
    /// The HTTP client, made at the first request (a `ca_file` that cannot be used is then a
    /// configuration error of every request).
    http: std::sync::OnceLock<Result<httpc::Client, String>>,
}

/// The point id of a sku of a site: a UUID built from SHA-256(site, sku).
pub fn point_id(site: &str, sku: &str) -> String {
    let d = Sha256::digest(format!("{site}\u{0}{sku}").as_bytes());
    let h = crate::fsutil::hex(&d[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn error_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => "(an empty answer)".into(),
        _ => v["status"]["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string()),
    }
}

impl Qdrant {
    pub fn new(cfg: &QdrantConfig, site: &str) -> Qdrant {
        Qdrant {
            cfg: cfg.clone(),
            site: site.to_string(),
            http: std::sync::OnceLock::new(),
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), RemoteError> {
        let client = self
            .http
            .get_or_init(|| httpc::Client::new(&self.cfg.url, self.cfg.ca_file.as_deref(), TIMEOUT))
            .as_ref()
            .map_err(|e| RemoteError::mismatch(e.clone()))?;
        let (status, v) = client
            .request(method, path, body, self.cfg.api_key.as_deref())
            .map_err(|e| match e {
                httpc::Unreachable::Down(m) => {
                    RemoteError::unreachable(format!("Qdrant is unreachable: {m}"))
                }
                httpc::Unreachable::Tls(m) => RemoteError::mismatch(format!(
                    "Qdrant TLS failed: {m}; check remote.qdrant.url and remote.qdrant.ca_file (the CA that signed Qdrant's certificate, which must name the host of the URL)"
                )),
            })?;
        match status {
            401 | 403 => Err(RemoteError::auth(format!(
                "Qdrant refused the API key ({status}): {}",
                error_text(&v)
            ))),
            500..=599 => Err(RemoteError::unreachable(format!(
                "Qdrant answered {status}: {}",
                error_text(&v)
            ))),
            _ => Ok((status, v)),
        }
    }

    fn ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, RemoteError> {
        let (status, v) = self.call(method, path, body)?;
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(RemoteError::failed(format!(
                "Qdrant {method} {path} answered {status}: {}",
                error_text(&v)
            )))
        }
    }

    fn collection(&self) -> String {
        format!("/collections/{}", self.cfg.collection)
    }

    /// The size of this collection's vectors.
    pub fn vector_size(&self) -> usize {
        match self.cfg.vectors {
            VectorSource::Builtin => embed::DIM,
            VectorSource::Client { size } => size,
        }
    }

    fn point(&self, sku: &str, name: &str, vector: &[f32]) -> serde_json::Value {
        json!({
            "id": point_id(&self.site, sku),
            "vector": vector,
            "payload": { "sku": sku, "name": name, "site": self.site },
        })
    }

    /// The point of a product in built-in mode (from its row alone).
    fn builtin_point(&self, row: &serde_json::Value) -> Option<serde_json::Value> {
        let name = row["product_name"].as_str().unwrap_or_default();
        Some(self.point(row["sku"].as_str()?, name, &embed::embed(name)))
    }

    /// The point of a product in client mode: its name and stored vector as the local store
    /// has them now; `None` when it has no usable vector (or no longer exists).
    fn client_point(
        &self,
        local: &Connection,
        sku: &str,
        size: usize,
    ) -> Result<Option<serde_json::Value>, RemoteError> {
        let found = vectors::point_source(local, sku).map_err(|e| {
            RemoteError::failed(format!("qdrant: reading the local store failed: {e}"))
        })?;
        Ok(match found {
            Some((name, Some(v))) if v.len() == size => Some(self.point(sku, &name, &v)),
            Some((_, Some(v))) => {
                log::warn!(
                    "qdrant: the vector of {sku} has {} dimensions, the collection {size}; it is left out (store a vector of {size})",
                    v.len()
                );
                None
            }
            _ => None,
        })
    }

    fn delete_points(&self, ids: Vec<String>) -> Result<(), RemoteError> {
        for chunk in ids.chunks(BATCH) {
            self.ok(
                "POST",
                &format!("{}/points/delete?wait=true", self.collection()),
                Some(&json!({ "points": chunk })),
            )?;
        }
        Ok(())
    }

    fn upsert(&self, points: Vec<serde_json::Value>) -> Result<(), RemoteError> {
        for chunk in points.chunks(BATCH) {
            self.ok(
                "PUT",
                &format!("{}/points?wait=true", self.collection()),
                Some(&json!({ "points": chunk })),
            )?;
        }
        Ok(())
    }

    /// Drops and recreates the collection (`ora qdrant reindex`).
    /// Removes this site's points (other sites' stay) from the collection, creating it when it
    /// is missing; a collection of the wrong vector size is refused, never dropped.
    pub fn clear_site(&mut self) -> Result<(), RemoteError> {
        self.prepare()?;
        self.ok(
            "POST",
            &format!("{}/points/delete?wait=true", self.collection()),
            Some(&json!({
                "filter": { "must": [ { "key": "site", "match": { "value": self.site } } ] },
            })),
        )?;
        Ok(())
    }

    /// Drops the whole collection (every site's points) and creates it anew.
    pub fn recreate(&mut self) -> Result<(), RemoteError> {
        let (status, v) = self.call("DELETE", &self.collection(), None)?;
        if !(200..300).contains(&status) && status != 404 {
            return Err(RemoteError::failed(format!(
                "Qdrant could not drop the collection: {}",
                error_text(&v)
            )));
        }
        self.prepare()
    }

    /// The `limit` nearest products of this site to `text` (built-in embedding only).
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<Hit>, RemoteError> {
        self.search_vector(&embed::embed(text), limit)
    }

    /// The `limit` nearest products of this site to a vector of the collection's size.
    pub fn search_vector(&self, query: &[f32], limit: usize) -> Result<Vec<Hit>, RemoteError> {
        // `points/query` (Qdrant 1.10+; `points/search` is deprecated and gone from the 1.19
        // reference): the nearest points to a vector, answered as `result.points`.
        let v = self.ok(
            "POST",
            &format!("{}/points/query", self.collection()),
            Some(&json!({
                "query": query,
                "limit": limit,
                "with_payload": true,
                "filter": { "must": [ { "key": "site", "match": { "value": self.site } } ] },
            })),
        )?;
        Ok(v["result"]["points"]
            .as_array()
            .map(|hits| {
                hits.iter()
                    .filter_map(|h| {
                        Some(Hit {
                            sku: h["payload"]["sku"].as_str()?.to_string(),
                            product_name: h["payload"]["name"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            score: h["score"].as_f64().unwrap_or(0.0) as f32,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Target for Qdrant {
    fn name(&self) -> &'static str {
        "qdrant"
    }

    fn probe(&mut self) -> Result<String, RemoteError> {
        let (status, v) = self.call("GET", &self.collection(), None)?;
        match status {
            200 => Ok(format!(
                "answers; collection {} holds {} points",
                self.cfg.collection,
                v["result"]["points_count"]
                    .as_u64()
                    .map_or("?".into(), |n| n.to_string())
            )),
            404 if error_text(&v).contains("doesn't exist") => Ok(format!(
                "answers; collection {} does not exist yet (the first sync creates it)",
                self.cfg.collection
            )),
            other => Err(RemoteError::failed(format!(
                "Qdrant answered {other} to GET {}: {}",
                self.collection(),
                error_text(&v)
            ))),
        }
    }

    fn prepare(&mut self) -> Result<(), RemoteError> {
        let (status, v) = self.call("GET", &self.collection(), None)?;
        match status {
            200 => {
                let params = &v["result"]["config"]["params"]["vectors"];
                let size = params["size"].as_u64();
                let distance = params["distance"].as_str().unwrap_or("");
                let want = self.vector_size();
                if size != Some(want as u64) || distance != "Cosine" {
                    return Err(RemoteError::mismatch(format!(
                        "Qdrant collection {} has vectors of size {} ({distance}); ora needs {want} (Cosine): use another remote.qdrant.collection, or `ora qdrant reindex --recreate`, which drops the collection with every site's points",
                        self.cfg.collection,
                        size.map_or("?".into(), |s| s.to_string()),
                    )));
                }
            }
            // Qdrant's own 404 is JSON naming the collection; anything else (a proxy, a wrong
            // path prefix in the URL) must not be taken for "the collection is missing".
            404 if !error_text(&v).contains("doesn't exist") => {
                return Err(RemoteError::failed(format!(
                    "Qdrant answered 404 to GET {} without Qdrant's answer ({}): check remote.qdrant.url (the server's address, without a path)",
                    self.collection(),
                    error_text(&v)
                )))
            }
            404 => {
                self.ok(
                    "PUT",
                    &self.collection(),
                    Some(
                        &json!({ "vectors": { "size": self.vector_size(), "distance": "Cosine" } }),
                    ),
                )?;
            }
            other => {
                return Err(RemoteError::failed(format!(
                    "Qdrant answered {other}: {}",
                    error_text(&v)
                )))
            }
        }
        for field in ["sku", "site"] {
            self.ok(
                "PUT",
                &format!("{}/index?wait=true", self.collection()),
                Some(&json!({ "field_name": field, "field_schema": "keyword" })),
            )?;
        }
        Ok(())
    }

    fn remote_position(&mut self) -> Result<Option<i64>, RemoteError> {
        Ok(None)
    }

    fn begin_copy(&mut self) -> Result<(), RemoteError> {
        // Points of skus that no longer exist are removed with the site's old points.
        self.ok(
            "POST",
            &format!("{}/points/delete?wait=true", self.collection()),
            Some(&json!({ "filter": { "must": [ { "key": "site", "match": { "value": self.site } } ] } })),
        )?;
        Ok(())
    }

    fn copy_rows(
        &mut self,
        table: &str,
        rows: &[serde_json::Value],
        local: &Connection,
    ) -> Result<(), RemoteError> {
        if table != "inventory_current" {
            return Ok(());
        }
        let points = match self.cfg.vectors {
            VectorSource::Builtin => rows.iter().filter_map(|r| self.builtin_point(r)).collect(),
            VectorSource::Client { size } => {
                let mut points = Vec::new();
                for sku in rows.iter().filter_map(|r| r["sku"].as_str()) {
                    points.extend(self.client_point(local, sku, size)?);
                }
                points
            }
        };
        self.upsert(points)
    }

    fn end_copy(&mut self, _up_to: i64) -> Result<(), RemoteError> {
        Ok(())
    }

    fn deliver(
        &mut self,
        changes: &[Change],
        _up_to: i64,
        local: &Connection,
    ) -> Result<(), RemoteError> {
        let mut points = Vec::new();
        let mut gone = Vec::new();
        match self.cfg.vectors {
            VectorSource::Builtin => {
                for c in changes.iter().filter(|c| c.table == "inventory_current") {
                    match &c.row {
                        Some(r) => points.extend(self.builtin_point(r)),
                        None => gone.push(point_id(&self.site, &c.key)),
                    }
                }
            }
            VectorSource::Client { size } => {
                // Per sku: may its point have to go (product deleted, vector changed or
                // removed)? A stock movement of a product without a vector needs no request.
                let mut touched: BTreeMap<&str, bool> = BTreeMap::new();
                for c in changes {
                    let may_go = match c.table.as_str() {
                        "inventory_current" => c.row.is_none(),
                        "product_vectors" => true,
                        _ => continue,
                    };
                    *touched.entry(c.key.as_str()).or_default() |= may_go;
                }
                for (sku, may_go) in touched {
                    match self.client_point(local, sku, size)? {
                        Some(p) => points.push(p),
                        None if may_go => gone.push(point_id(&self.site, sku)),
                        None => {}
                    }
                }
            }
        }
        if !points.is_empty() {
            self.upsert(points)?;
        }
        if !gone.is_empty() {
            self.delete_points(gone)?;
        }
        Ok(())
    }
}
