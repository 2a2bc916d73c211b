//! The JSON API. Reads go through the reader pool; writes go to the writer
//! and are answered after their commit (each connection has its own thread, so many writes
//! wait together and the writer's group commit serves them all).

use serde::Deserialize;

use super::body;
use super::fault::{Fault, Result};
use super::http::Request;
use super::reply::Reply;
use super::request::{self, Target};
use super::server::AppState;
use crate::error::Error;
use crate::model::{self, TxType};
use crate::remote::search::{self, Query};
use crate::store::kpis::KpiRecord;
use crate::store::ledger::{self, LedgerQuery};
use crate::store::products::{self, NewProduct};
use crate::store::shipments::{ShipItem, Shipment};
use crate::store::vectors::{self, ProductVector};
use crate::store::workflows::{self, WorkflowChange};
use crate::store::StoreKind;
use crate::store::{Movement, Outcome, StoreError, WriteOp, WriteRequest};

fn bad(e: String) -> Fault {
    Fault::invalid(e)
}

/// GET /api/inventory[?low=1] | ?as_of=DATE[&sku=SKU] (the stock at the end of a past day,
/// replayed from the ledger)
pub fn inventory_list(st: &AppState, t: &Target) -> Result<Reply> {
    if let Some(date) = t.param("as_of") {
        model::validate_date("as_of", date).map_err(bad)?;
        if let Some(p) = ["low", "limit", "after"]
            .into_iter()
            .find(|p| t.param(p).is_some())
        {
            return Err(bad(format!(
                "{p} lists today's stock; as_of answers for one day (give as_of with sku, or neither)"
            )));
        }
        let sku = t.param("sku");
        if let Some(s) = sku {
            model::validate_sku(s).map_err(bad)?;
        }
        let conn = st.store.read()?;
        if let Some(s) = sku {
            if products::get(&conn, s)?.is_none() {
                return Err(
                    products::unknown(&conn, s, "list products with GET /api/inventory").into(),
                );
            }
        }
        let rows = ledger::stock_as_of(&conn, date, sku)?;
        return Ok(Reply::of(
            200,
            &serde_json::json!({ "as_of": date, "stock": rows }),
        ));
    }
    if t.param("sku").is_some() {
        return Err(bad(
            "sku goes with as_of (one product's stock on a day); its stock now is GET /api/inventory/{sku}"
                .into(),
        ));
    }
    super::lists::products(st, t, "/api/inventory")
}

/// GET /api/inventory/{sku}
pub fn inventory_get(st: &AppState, sku: &str) -> Result<Reply> {
    model::validate_sku(sku).map_err(bad)?;
    let conn = st.store.read()?;
    let p = products::get(&conn, sku)?
        .ok_or_else(|| products::unknown(&conn, sku, "list products with GET /api/inventory"))?;
    Ok(Reply::of(200, &p))
}

/// GET /api/transactions?sku=&since=&limit=&before=&after=&format=: the ledger, newest first
/// (oldest first with `after`), paged by id; a page with more after it carries
/// `Link: <...>; rel="next"`.
pub fn transactions_list(st: &AppState, t: &Target) -> Result<Reply> {
    let sku = t.param("sku").map(str::to_string);
    if let Some(s) = &sku {
        model::validate_sku(s).map_err(bad)?;
    }
    let since = t.param("since").map(str::to_string);
    if let Some(d) = &since {
        model::validate_date("since", d).map_err(bad)?;
    }
    let limit = match t.param("limit") {
        Some(l) => {
            let n = model::parse_int("limit", l).map_err(bad)?;
            ledger::history_limit(n).map_err(bad)?
        }
        None => 100,
    };
    let cursor = |name: &str| -> Result<Option<i64>> {
        t.param(name)
            .map(|v| match model::parse_int(name, v) {
                Ok(n) if n >= 0 => Ok(n),
                Ok(n) => Err(bad(format!(
                    "{name} must be a ledger id (0 or more), got {n}"
                ))),
                Err(e) => Err(bad(e)),
            })
            .transpose()
    };
    let q = LedgerQuery {
        sku,
        since,
        limit,
        before: cursor("before")?,
        after: cursor("after")?,
    };
    let (rows, more) = ledger::page(&*st.store.read()?, &q)?;
    // A page with rows after it links to them: older rows (`before`), or newer ones when
    // walking forwards (`after`, which keeps its `before` bound). The other filters stay.
    let next = rows.last().filter(|_| more).map(|last| {
        let id = last.id.to_string();
        let bound = q.before.map(|b| b.to_string());
        let add: Vec<(&str, &str)> = match (&q.after, &bound) {
            (Some(_), Some(b)) => vec![("after", &id), ("before", b)],
            (Some(_), None) => vec![("after", &id)],
            (None, _) => vec![("before", &id)],
        };
        super::lists::next_page("/api/transactions", t, &["before", "after"], &add)
    });
    Ok(super::lists::with_next(Reply::of(200, &rows), next))
}

/// One movement as posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MovementBody {
    sku: String,
    // `transaction_type`, the ledger column's name, is read as `type` (one name per concept).
    #[serde(rename = "type", alias = "transaction_type")]
    kind: TxType,
    quantity: i64,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    allow_future: bool,
    #[serde(default)]
    request_id: Option<String>,
}

/// A batch as posted: all or nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    movements: Vec<Movement>,
    #[serde(default)]
    request_id: Option<String>,
}

/// The request id from the body or the `Idempotency-Key` header (they must agree).
fn request_id(req: &Request, body: Option<String>) -> Result<Option<String>> {
    let header = req.header("Idempotency-Key").map(|h| h.trim().to_string());
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(Fault::usage(
            "the Idempotency-Key header and the body's request_id differ",
        )),
        (h, b) => Ok(b.or(h)),
    }
}

/// Applies a write and renders its reply after the commit.
fn write(st: &AppState, req: WriteRequest, created: u16) -> Result<Reply> {
    let applied = st.store.write(req)?;
    let status = if applied.replayed { 200 } else { created };
    let body = match &applied.outcome {
        Outcome::Movement(m) => serde_json::json!({ "movement": m, "replayed": applied.replayed }),
        Outcome::Batch { movements } => {
            serde_json::json!({ "movements": movements, "replayed": applied.replayed })
        }
        other => serde_json::json!({ "result": other, "replayed": applied.replayed }),
    };
    let reply = Reply::json(status, &body);
    Ok(if applied.replayed {
        reply.with_header("Idempotent-Replayed", "true")
    } else {
        reply
    })
}

/// POST /api/transactions: one movement, or `{"movements": [...]}` applied all or nothing.
pub fn transactions_post(st: &AppState, req: &Request, actor: &str) -> Result<Reply> {
    let body = request::json_body(req)?;
    let value = body::object(body)?;
    let is_batch = value.get("movements").is_some();
    let (op, rid) = if is_batch {
        let b: BatchBody = body::shape(value)?;
        (
            WriteOp::Batch {
                movements: b.movements,
            },
            b.request_id,
        )
    } else {
        let m: MovementBody = body::shape(value)?;
        (
            WriteOp::Movement(Movement {
                sku: m.sku,
                kind: m.kind,
                quantity: m.quantity,
                date: m.date,
                notes: m.notes,
                allow_future: m.allow_future,
            }),
            m.request_id,
        )
    };
    let rid = request_id(req, rid)?;
    let wr = WriteRequest::with_request_id(op, rid);
    wr.validate().map_err(|e| match e.kind() {
        StoreKind::Invalid => Fault::invalid(e.message()),
        _ => e.into(),
    })?;
    write(st, wr.by(actor), 201)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductBody {
    sku: String,
    product_name: String,
    #[serde(default)]
    reorder_point: i64,
    #[serde(default)]
    initial_quantity: i64,
    #[serde(default)]
    request_id: Option<String>,
}

/// POST /api/products
pub fn products_post(st: &AppState, req: &Request, actor: &str) -> Result<Reply> {
    let body = request::json_body(req)?;
    let p: ProductBody = request::parse(body)?;
    let rid = request_id(req, p.request_id)?;
    let op = WriteOp::ProductAdd(NewProduct {
        sku: p.sku,
        product_name: p.product_name,
        reorder_point: p.reorder_point,
        initial_quantity: p.initial_quantity,
    });
    write(st, WriteRequest::with_request_id(op, rid).by(actor), 201)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorBody {
    vector: Vec<f32>,
    #[serde(default)]
    request_id: Option<String>,
}

/// GET /api/products/{sku}/vector
pub fn vector_get(st: &AppState, sku: &str) -> Result<Reply> {
    model::validate_sku(sku).map_err(bad)?;
    let v = match vectors::point_source(&*st.store.read()?, sku)? {
        None => return Err(StoreError::not_found(format!("unknown sku {sku:?}")).into()),
        Some((_, None)) => {
            return Err(StoreError::not_found(format!("product {sku} has no vector")).into())
        }
        Some((_, Some(v))) => v,
    };
    Ok(Reply::of(
        200,
        &serde_json::json!({ "sku": sku, "dims": v.len(), "vector": v }),
    ))
}

/// PUT /api/products/{sku}/vector: stores the product's own vector (for Qdrant in client mode).
pub fn vector_put(st: &AppState, req: &Request, actor: &str, sku: &str) -> Result<Reply> {
    model::validate_sku(sku).map_err(bad)?;
    let body = request::json_body(req)?;
    let b: VectorBody = request::parse(body)?;
    if let Some(size) = st.remote.as_ref().and_then(|r| r.client_vector_size()) {
        if b.vector.len() != size {
            return Err(bad(format!(
                "the vector has {} dimensions; this site's Qdrant collection takes {size}",
                b.vector.len()
            )));
        }
    }
    let rid = request_id(req, b.request_id)?;
    let op = WriteOp::ProductVector(ProductVector {
        sku: sku.to_string(),
        vector: Some(b.vector),
    });
    write(st, WriteRequest::with_request_id(op, rid).by(actor), 200)
}

/// DELETE /api/products/{sku}/vector
pub fn vector_delete(st: &AppState, req: &Request, actor: &str, sku: &str) -> Result<Reply> {
    model::validate_sku(sku).map_err(bad)?;
    let rid = request_id(req, None)?;
    let op = WriteOp::ProductVector(ProductVector {
        sku: sku.to_string(),
        vector: None,
    });
    write(st, WriteRequest::with_request_id(op, rid).by(actor), 200)
}

fn search_limit(given: Option<i64>) -> Result<usize> {
    match given {
        None => Ok(10),
        Some(n) if (1..=search::MAX_LIMIT as i64).contains(&n) => Ok(n as usize),
        Some(n) => Err(bad(format!(
            "limit must be from 1 to {}, got {n}",
            search::MAX_LIMIT
        ))),
    }
}

fn run_search(st: &AppState, query: &Query, limit: usize) -> Result<Reply> {
    let conn = st.store.read()?;
    let answer = search::run(st.remote.as_ref(), &conn, query, limit)?;
    Ok(Reply::of(200, &answer))
}

/// GET /api/search?q=TEXT[&limit=N]
pub fn search_get(st: &AppState, t: &Target) -> Result<Reply> {
    let q = t
        .param("q")
        .ok_or_else(|| bad("give the text to look for as ?q=".into()))?;
    let limit = search_limit(
        t.param("limit")
            .map(|l| model::parse_int("limit", l).map_err(bad))
            .transpose()?,
    )?;
    run_search(st, &Query::Text(q.to_string()), limit)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default)]
    limit: Option<i64>,
}

/// POST /api/search with `{"text": ...}` or `{"vector": [...]}` (and an optional `limit`).
pub fn search_post(st: &AppState, req: &Request) -> Result<Reply> {
    let body = request::json_body(req)?;
    let b: SearchBody = request::parse(body)?;
    let query = match (b.text, b.vector) {
        (Some(t), None) => Query::Text(t),
        (None, Some(v)) => Query::Vector(v),
        _ => return Err(bad("give exactly one of \"text\" and \"vector\"".into())),
    };
    run_search(st, &query, search_limit(b.limit)?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShipmentBody {
    order_number: String,
    #[serde(default)]
    ship_date: Option<String>,
    items: Vec<ShipItem>,
    #[serde(default)]
    request_id: Option<String>,
}

/// POST /api/shipments
pub fn shipments_post(st: &AppState, req: &Request, actor: &str) -> Result<Reply> {
    let body = request::json_body(req)?;
    let s: ShipmentBody = request::parse(body)?;
    let rid = request_id(req, s.request_id)?;
    let op = WriteOp::Shipment(Shipment {
        order_number: s.order_number,
        ship_date: s.ship_date,
        items: s.items,
    });
    write(st, WriteRequest::with_request_id(op, rid).by(actor), 201)
}

/// GET /api/workflows
pub fn workflows_list(st: &AppState) -> Result<Reply> {
    Ok(Reply::of(200, &workflows::list(&*st.store.read()?)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowBody {
    status: String,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    expect_version: Option<i64>,
}

/// PUT /api/workflows/{name} (`expect_version` in the body or an `If-Match: N` header)
pub fn workflow_put(st: &AppState, req: &Request, actor: &str, name: &str) -> Result<Reply> {
    let body = request::json_body(req)?;
    let w: WorkflowBody = request::parse(body)?;
    let if_match = match req.header("If-Match") {
        Some(v) => Some(model::parse_int("If-Match", v.trim().trim_matches('"')).map_err(bad)?),
        None => None,
    };
    let change = WorkflowChange {
        name: name.to_string(),
        status: w.status,
        details: w.details,
        expect_version: w.expect_version.or(if_match),
    };
    write(
        st,
        WriteRequest::new(WriteOp::WorkflowSet(change)).by(actor),
        200,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KpiBody {
    #[serde(default)]
    orders_today: Option<i64>,
    #[serde(default)]
    shipments_sent: Option<i64>,
    #[serde(default)]
    pending_uploads: Option<i64>,
    #[serde(default)]
    system_status: Option<String>,
}

/// PUT /api/kpis/{date}
pub fn kpi_put(st: &AppState, req: &Request, actor: &str, date: &str) -> Result<Reply> {
    model::validate_date("date", date).map_err(bad)?;
    let body = request::json_body(req)?;
    let k: KpiBody = request::parse(body)?;
    let rec = KpiRecord {
        snapshot_date: date.to_string(),
        orders_today: k.orders_today,
        shipments_sent: k.shipments_sent,
        pending_uploads: k.pending_uploads,
        system_status: k.system_status,
    };
    write(
        st,
        WriteRequest::new(WriteOp::KpiRecord(rec)).by(actor),
        200,
    )
}

/// GET /api/backups
pub fn backups_list(st: &AppState) -> Result<Reply> {
    let dir = &st.backup.dir;
    let list = if dir.is_dir() {
        crate::file::backup::catalog::list(dir, st.store.path())
            .map_err(|e| Error::io(format!("list {}", dir.display()), e))?
    } else {
        Vec::new()
    };
    Ok(Reply::of(200, &list))
}
