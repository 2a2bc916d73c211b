//! The Qdrant target: a collection of products, one point per sku and site (a deterministic
//! UUID from both), the vector the built-in embedding of the product name, the payload
//! `{sku, name, site}` with keyword indexes on sku and site. Creates the collection when it is
//! missing and refuses one whose vector size or distance differ. Only product changes concern
//! it; every other change just moves its position on. Also answers searches.

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::embed;
use super::httpc;
use super::outbox::Change;
use super::search::Hit;
use super::target::{RemoteError, Target};
use crate::config::QdrantConfig;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Points per upsert request.
const BATCH: usize = 256;

/// One site's products in one collection.
pub struct Qdrant {
    cfg: QdrantConfig,
    site: String,
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
    v["status"]["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

impl Qdrant {
    pub fn new(cfg: &QdrantConfig, site: &str) -> Qdrant {
        Qdrant {
            cfg: cfg.clone(),
            site: site.to_string(),
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), RemoteError> {
        let (status, v) = httpc::request(
            &self.cfg.url,
            method,
            path,
            body,
            self.cfg.api_key.as_deref(),
            TIMEOUT,
        )
        .map_err(|e| RemoteError::Unreachable(format!("Qdrant is unreachable: {}", e.0)))?;
        match status {
            401 | 403 => Err(RemoteError::Auth(format!(
                "Qdrant refused the API key ({status}): {}",
                error_text(&v)
            ))),
            500..=599 => Err(RemoteError::Unreachable(format!(
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
            Err(RemoteError::Failed(format!(
                "Qdrant {method} {path} answered {status}: {}",
                error_text(&v)
            )))
        }
    }

    fn collection(&self) -> String {
        format!("/collections/{}", self.cfg.collection)
    }

    fn point(&self, sku: &str, name: &str) -> serde_json::Value {
        json!({
            "id": point_id(&self.site, sku),
            "vector": embed::embed(name),
            "payload": { "sku": sku, "name": name, "site": self.site },
        })
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
    pub fn recreate(&mut self) -> Result<(), RemoteError> {
        let (status, v) = self.call("DELETE", &self.collection(), None)?;
        if !(200..300).contains(&status) && status != 404 {
            return Err(RemoteError::Failed(format!(
                "Qdrant could not drop the collection: {}",
                error_text(&v)
            )));
        }
        self.prepare()
    }

    /// The `limit` nearest products of this site to `text`.
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<Hit>, RemoteError> {
        let v = self.ok(
            "POST",
            &format!("{}/points/search", self.collection()),
            Some(&json!({
                "vector": embed::embed(text),
                "limit": limit,
                "with_payload": true,
                "filter": { "must": [ { "key": "site", "match": { "value": self.site } } ] },
            })),
        )?;
        Ok(v["result"]
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

    fn prepare(&mut self) -> Result<(), RemoteError> {
        let (status, v) = self.call("GET", &self.collection(), None)?;
        match status {
            200 => {
                let params = &v["result"]["config"]["params"]["vectors"];
                let size = params["size"].as_u64();
                let distance = params["distance"].as_str().unwrap_or("");
                if size != Some(embed::DIM as u64) || distance != "Cosine" {
                    return Err(RemoteError::Mismatch(format!(
                        "Qdrant collection {} has vectors of size {} ({distance}); ora needs {} (Cosine): use another remote.qdrant.collection or run `ora qdrant reindex`",
                        self.cfg.collection,
                        size.map_or("?".into(), |s| s.to_string()),
                        embed::DIM
                    )));
                }
            }
            404 => {
                self.ok(
                    "PUT",
                    &self.collection(),
                    Some(&json!({ "vectors": { "size": embed::DIM, "distance": "Cosine" } })),
                )?;
            }
            other => {
                return Err(RemoteError::Failed(format!(
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

    fn copy_rows(&mut self, table: &str, rows: &[serde_json::Value]) -> Result<(), RemoteError> {
        if table != "inventory_current" {
            return Ok(());
        }
        let points = rows
            .iter()
            .filter_map(|r| {
                Some(self.point(
                    r["sku"].as_str()?,
                    r["product_name"].as_str().unwrap_or_default(),
                ))
            })
            .collect();
        self.upsert(points)
    }

    fn end_copy(&mut self, _up_to: i64) -> Result<(), RemoteError> {
        Ok(())
    }

    fn deliver(&mut self, changes: &[Change], _up_to: i64) -> Result<(), RemoteError> {
        let products: Vec<&Change> = changes
            .iter()
            .filter(|c| c.table == "inventory_current")
            .collect();
        let points: Vec<serde_json::Value> = products
            .iter()
            .filter_map(|c| c.row.as_ref())
            .filter_map(|r| {
                Some(self.point(
                    r["sku"].as_str()?,
                    r["product_name"].as_str().unwrap_or_default(),
                ))
            })
            .collect();
        if !points.is_empty() {
            self.upsert(points)?;
        }
        let gone: Vec<String> = products
            .iter()
            .filter(|c| c.row.is_none())
            .map(|c| point_id(&self.site, &c.key))
            .collect();
        if !gone.is_empty() {
            self.ok(
                "POST",
                &format!("{}/points/delete?wait=true", self.collection()),
                Some(&json!({ "points": gone })),
            )?;
        }
        Ok(())
    }
}
