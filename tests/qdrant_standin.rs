//! A stand-in for Qdrant's REST API, implementing the endpoints ora uses the way Qdrant's
//! documentation specifies them: request shapes are checked (a wrong one is answered 400 with
//! Qdrant's error body), answers have Qdrant's envelope (`result`, `status`, `time`), a query
//! (`points/query`, the 1.19 API: `points/search` is gone from it) ranks by cosine similarity
//! with `must`/`match` payload filters. It can be told to answer
//! every request with 503, to require an API key, and to stop listening.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

#[derive(Default)]
pub struct Collection {
    pub size: usize,
    pub distance: String,
    pub points: HashMap<String, (Vec<f32>, Value)>,
    pub indexes: Vec<String>,
}

#[derive(Default)]
pub struct State {
    pub collections: HashMap<String, Collection>,
    /// Every request seen: (method, path).
    pub requests: Vec<(String, String)>,
}

pub struct Qdrant {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
    pub failing: Arc<AtomicBool>,
    pub api_key: Option<String>,
    stop: Arc<AtomicBool>,
}

impl Drop for Qdrant {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn ok(result: Value) -> (u16, Value) {
    (
        200,
        json!({ "result": result, "status": "ok", "time": 0.0001 }),
    )
}

fn err(code: u16, msg: &str) -> (u16, Value) {
    (code, json!({ "status": { "error": msg }, "time": 0.0001 }))
}

/// An answer Qdrant gives as plain text, not JSON (a refused API key, an unknown route).
fn plain(code: u16, text: &str) -> (u16, Value) {
    (code, Value::String(text.to_string()))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn point_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if is_uuid(s) => Some(s.to_lowercase()),
        Value::Number(n) if n.as_u64().is_some() => Some(n.to_string()),
        _ => None,
    }
}

fn matches(filter: &Value, payload: &Value) -> bool {
    filter["must"].as_array().is_none_or(|conds| {
        conds.iter().all(|c| {
            c["key"]
                .as_str()
                .is_some_and(|k| payload[k] == c["match"]["value"])
        })
    })
}

impl Qdrant {
    pub fn start(api_key: Option<&str>) -> Qdrant {
        Qdrant::start_with(api_key, None)
    }

    /// The stand-in behind TLS with this certificate and key (PEM files), as Qdrant Cloud is.
    pub fn start_tls(
        api_key: Option<&str>,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Qdrant {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Qdrant::start_with(api_key, Some(Arc::new(cfg)))
    }

    fn start_with(api_key: Option<&str>, tls: Option<Arc<rustls::ServerConfig>>) -> Qdrant {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let q = Qdrant {
            addr,
            state: Arc::default(),
            failing: Arc::default(),
            api_key: api_key.map(str::to_string),
            stop: Arc::default(),
        };
        let (state, failing, stop, key) = (
            Arc::clone(&q.state),
            Arc::clone(&q.failing),
            Arc::clone(&q.stop),
            q.api_key.clone(),
        );
        std::thread::spawn(move || {
            for stream in l.incoming().flatten() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let (state, failing, key) = (Arc::clone(&state), Arc::clone(&failing), key.clone());
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve(stream, &state, &failing, key.as_deref()),
                    Some(cfg) => {
                        let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                            return;
                        };
                        let mut s = rustls::StreamOwned::new(conn, stream);
                        serve(&mut s, &state, &failing, key.as_deref());
                        s.conn.send_close_notify();
                        let _ = s.flush();
                    }
                });
            }
        });
        q
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The https URL by name (for a stand-in started with [`Qdrant::start_tls`]).
    pub fn https_url(&self) -> String {
        let port = self.addr.rsplit(':').next().unwrap_or_default();
        format!("https://localhost:{port}")
    }

    pub fn points(&self, collection: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .collections
            .get(collection)
            .map_or(0, |c| c.points.len())
    }
}

fn serve<S: Read + Write>(
    stream: S,
    state: &Mutex<State>,
    failing: &AtomicBool,
    key: Option<&str>,
) {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (mut len, mut given_key) = (0usize, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or(("", ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap_or(0),
            "api-key" => given_key = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    let (path, _query) = target.split_once('?').unwrap_or((&target, ""));
    let (status, answer) = if failing.load(Ordering::SeqCst) {
        err(
            503,
            "Service Unavailable: the stand-in is failing on purpose",
        )
    } else if key.is_some() && given_key.as_deref() != key {
        plain(
            401,
            "Must provide an API key or an Authorization bearer token",
        )
    } else {
        let parsed: Result<Value, _> = if body.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice(&body)
        };
        match parsed {
            Err(e) => err(400, &format!("Format error in JSON body: {e}")),
            Ok(b) => {
                let mut st = state.lock().unwrap();
                st.requests.push((method.clone(), path.to_string()));
                route(&mut st, &method, path, &b)
            }
        }
    };
    let (kind, text) = match &answer {
        Value::String(t) => ("text/plain", t.clone()),
        other => ("application/json", other.to_string()),
    };
    let w = r.get_mut();
    let _ = write!(w, "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
    let _ = w.flush();
}

fn route(st: &mut State, method: &str, path: &str, b: &Value) -> (u16, Value) {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, seg.as_slice()) {
        ("GET", ["collections", c]) => match st.collections.get(*c) {
            Some(col) => ok(json!({
                "status": "green",
                "points_count": col.points.len(),
                "config": { "params": { "vectors": { "size": col.size, "distance": col.distance } } },
            })),
            None => err(404, &format!("Not found: Collection `{c}` doesn't exist!")),
        },
        ("PUT", ["collections", c]) => {
            if st.collections.contains_key(*c) {
                return err(
                    400,
                    &format!("Wrong input: Collection `{c}` already exists!"),
                );
            }
            let size = b["vectors"]["size"].as_u64().unwrap_or(0) as usize;
            let distance = b["vectors"]["distance"].as_str().unwrap_or("");
            if size == 0 || !["Cosine", "Dot", "Euclid", "Manhattan"].contains(&distance) {
                return err(
                    400,
                    "Format error in JSON body: vectors.size and vectors.distance are required",
                );
            }
            st.collections.insert(
                c.to_string(),
                Collection {
                    size,
                    distance: distance.into(),
                    ..Collection::default()
                },
            );
            ok(json!(true))
        }
        ("DELETE", ["collections", c]) => ok(json!(st.collections.remove(*c).is_some())),
        ("PUT", ["collections", c, "index"]) => {
            let Some(col) = st.collections.get_mut(*c) else {
                return err(404, &format!("Not found: Collection `{c}` doesn't exist!"));
            };
            let (Some(field), Some("keyword")) =
                (b["field_name"].as_str(), b["field_schema"].as_str())
            else {
                return err(
                    400,
                    "Format error in JSON body: field_name and field_schema are required",
                );
            };
            col.indexes.push(field.to_string());
            ok(json!({ "operation_id": 1, "status": "completed" }))
        }
        ("PUT", ["collections", c, "points"]) => {
            let Some(col) = st.collections.get_mut(*c) else {
                return err(404, &format!("Not found: Collection `{c}` doesn't exist!"));
            };
            let Some(points) = b["points"].as_array() else {
                return err(400, "Format error in JSON body: missing field `points`");
            };
            let mut staged = Vec::new();
            for p in points {
                let Some(id) = point_id(&p["id"]) else {
                    return err(
                        400,
                        "Format error in JSON body: point id must be an unsigned integer or a UUID",
                    );
                };
                let Some(v) = p["vector"].as_array() else {
                    return err(400, "Format error in JSON body: missing field `vector`");
                };
                if v.len() != col.size {
                    return err(
                        400,
                        &format!(
                            "Wrong input: Vector dimension error: expected dim: {}, got {}",
                            col.size,
                            v.len()
                        ),
                    );
                }
                let vector: Vec<f32> = v
                    .iter()
                    .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                    .collect();
                if vector.iter().any(|x| x.is_nan()) {
                    return err(
                        400,
                        "Format error in JSON body: vector values must be numbers",
                    );
                }
                if !p["payload"].is_object() {
                    return err(400, "Format error in JSON body: payload must be an object");
                }
                staged.push((id, vector, p["payload"].clone()));
            }
            for (id, v, pl) in staged {
                col.points.insert(id, (v, pl));
            }
            ok(json!({ "operation_id": 2, "status": "completed" }))
        }
        ("POST", ["collections", c, "points", "delete"]) => {
            let Some(col) = st.collections.get_mut(*c) else {
                return err(404, &format!("Not found: Collection `{c}` doesn't exist!"));
            };
            if let Some(ids) = b["points"].as_array() {
                for id in ids {
                    let Some(id) = point_id(id) else {
                        return err(400, "Format error in JSON body: bad point id");
                    };
                    col.points.remove(&id);
                }
            } else if b["filter"].is_object() {
                col.points.retain(|_, (_, pl)| !matches(&b["filter"], pl));
            } else {
                return err(
                    400,
                    "Format error in JSON body: points or filter is required",
                );
            }
            ok(json!({ "operation_id": 3, "status": "completed" }))
        }
        ("POST", ["collections", c, "points", "query"]) => {
            let Some(col) = st.collections.get(*c) else {
                return err(404, &format!("Not found: Collection `{c}` doesn't exist!"));
            };
            // The nearest-points form of a query: `query` is the vector; `limit` defaults to 10.
            let Some(q) = b["query"].as_array() else {
                return err(
                    400,
                    "Format error in JSON body: `query` must be a vector here",
                );
            };
            let limit = match &b["limit"] {
                Value::Null => 10,
                v => match v.as_u64() {
                    Some(n) => n,
                    None => return err(400, "Format error in JSON body: invalid type for `limit`"),
                },
            };
            if q.len() != col.size {
                return err(
                    400,
                    &format!(
                        "Wrong input: Vector dimension error: expected dim: {}, got {}",
                        col.size,
                        q.len()
                    ),
                );
            }
            let q: Vec<f32> = q.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect();
            let qn = q.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            let mut hits: Vec<(f32, &String, &Value)> = col
                .points
                .iter()
                .filter(|(_, (_, pl))| b["filter"].is_null() || matches(&b["filter"], pl))
                .map(|(id, (v, pl))| {
                    let vn = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    (
                        v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>() / (vn * qn),
                        id,
                        pl,
                    )
                })
                .collect();
            hits.sort_by(|a, b| b.0.total_cmp(&a.0));
            let with_payload = b["with_payload"].as_bool().unwrap_or(false);
            let points: Vec<Value> = hits
                .into_iter()
                .take(limit as usize)
                .map(|(score, id, pl)| json!({ "id": id, "version": 1, "score": score, "payload": if with_payload { pl.clone() } else { Value::Null } }))
                .collect();
            ok(json!({ "points": points }))
        }
        _ => plain(404, "Not Found"),
    }
}
