//! Routing: method + path -> handler. Every request is checked the same way first (URL, bearer
//! token for writes), every answer is counted by route and status, and every failure becomes
//! a JSON error. Never panics on what a client sends.

use std::sync::Arc;
use std::time::Instant;

use super::fault::{Fault, Result};
use super::http::Request;
use super::reply::Reply;
use super::request::{self, Target};
use super::server::AppState;
use super::{api, health, lists, metrics, page, replication};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Page,
    Health,
    Live,
    Metrics,
    Inventory,
    InventoryItem,
    Transactions,
    Products,
    Product,
    ProductVector,
    ProductPage,
    SearchPage,
    Search,
    Shipments,
    Shipment,
    Workflows,
    Workflow,
    Kpis,
    Audit,
    Kpi,
    Backups,
    ReplStatus,
    ReplBase,
    ReplBaseChunk,
    ReplRecords,
    ReplFence,
    ReplPromote,
    OpenApi,
    Unknown,
}

impl Route {
    /// Every route, in the order a missing route's answer lists them.
    const ALL: [Route; 28] = [
        Route::Page,
        Route::OpenApi,
        Route::Health,
        Route::Live,
        Route::Metrics,
        Route::Inventory,
        Route::InventoryItem,
        Route::Transactions,
        Route::Products,
        Route::Product,
        Route::ProductVector,
        Route::ProductPage,
        Route::SearchPage,
        Route::Search,
        Route::Shipments,
        Route::Shipment,
        Route::Workflows,
        Route::Workflow,
        Route::Kpis,
        Route::Kpi,
        Route::Audit,
        Route::Backups,
        Route::ReplStatus,
        Route::ReplBase,
        Route::ReplBaseChunk,
        Route::ReplRecords,
        Route::ReplFence,
        Route::ReplPromote,
    ];

    fn of(segments: &[String]) -> Route {
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        match s.as_slice() {
            [] => Route::Page,
            ["health"] => Route::Health,
            ["health", "live"] => Route::Live,
            ["metrics"] => Route::Metrics,
            ["api", "openapi.json"] => Route::OpenApi,
            ["api", "inventory"] => Route::Inventory,
            ["api", "inventory", _] => Route::InventoryItem,
            ["api", "transactions"] => Route::Transactions,
            ["api", "products"] => Route::Products,
            ["api", "products", _] => Route::Product,
            ["products", _] => Route::ProductPage,
            ["search"] => Route::SearchPage,
            ["api", "products", _, "vector"] => Route::ProductVector,
            ["api", "search"] => Route::Search,
            ["api", "shipments"] => Route::Shipments,
            ["api", "shipments", _] => Route::Shipment,
            ["api", "workflows"] => Route::Workflows,
            ["api", "workflows", _] => Route::Workflow,
            ["api", "kpis"] => Route::Kpis,
            ["api", "audit"] => Route::Audit,
            ["api", "kpis", _] => Route::Kpi,
            ["api", "backups"] => Route::Backups,
            ["replication", "status"] => Route::ReplStatus,
            ["replication", "base"] => Route::ReplBase,
            ["replication", "base", _] => Route::ReplBaseChunk,
            ["replication", "records"] => Route::ReplRecords,
            ["replication", "fence"] => Route::ReplFence,
            ["replication", "promote"] => Route::ReplPromote,
            _ => Route::Unknown,
        }
    }

    /// The label metrics count this route under (never the raw path).
    fn label(self) -> &'static str {
        match self {
            Route::Page => "/",
            Route::Health => "/health",
            Route::Live => "/health/live",
            Route::Metrics => "/metrics",
            Route::Inventory => "/api/inventory",
            Route::InventoryItem => "/api/inventory/{sku}",
            Route::Transactions => "/api/transactions",
            Route::Products => "/api/products",
            Route::Product => "/api/products/{sku}",
            Route::ProductVector => "/api/products/{sku}/vector",
            Route::ProductPage => "/products/{sku}",
            Route::SearchPage => "/search",
            Route::Search => "/api/search",
            Route::Shipments => "/api/shipments",
            Route::Shipment => "/api/shipments/{order}",
            Route::Kpis => "/api/kpis",
            Route::Audit => "/api/audit",
            Route::Workflows => "/api/workflows",
            Route::Workflow => "/api/workflows/{name}",
            Route::Kpi => "/api/kpis/{date}",
            Route::Backups => "/api/backups",
            Route::ReplStatus => "/replication/status",
            Route::ReplBase => "/replication/base",
            Route::ReplBaseChunk => "/replication/base/{id}",
            Route::ReplRecords => "/replication/records",
            Route::ReplFence => "/replication/fence",
            Route::ReplPromote => "/replication/promote",
            Route::OpenApi => "/api/openapi.json",
            Route::Unknown => "other",
        }
    }

    /// The routes of standbys and promotion, under their own token.
    fn replication(self) -> bool {
        matches!(
            self,
            Route::ReplStatus
                | Route::ReplBase
                | Route::ReplBaseChunk
                | Route::ReplRecords
                | Route::ReplFence
                | Route::ReplPromote
        )
    }

    /// The query parameters the route takes with `GET` (other methods take none): any other
    /// is refused before the handler runs, so that a typo (`?skuu=`) is an error, never an
    /// unfiltered answer.
    fn params(self) -> &'static [&'static str] {
        match self {
            Route::Inventory => &["low", "as_of", "sku", "limit", "after", "format"],
            Route::Transactions => &["sku", "since", "limit", "before", "after", "format"],
            Route::Products => &["low", "limit", "after", "format"],
            Route::Product | Route::ProductPage => &["before", "limit"],
            Route::SearchPage => &["q"],
            Route::Search => &["q", "limit"],
            Route::Shipments => &["since", "limit", "order", "after", "format"],
            Route::Kpis => &["days", "before", "format"],
            Route::Audit => &[
                "sku", "table", "actor", "since", "limit", "before", "format",
            ],
            Route::Workflows => &["format"],
            Route::ReplBaseChunk => &["offset"],
            Route::ReplRecords => &["after", "hash", "wait_ms", "max_bytes"],
            _ => &[],
        }
    }

    fn allowed(self) -> &'static str {
        match self {
            Route::Transactions
            | Route::Backups
            | Route::Search
            | Route::Products
            | Route::Shipments => "GET, POST",
            Route::ProductVector => "GET, PUT, DELETE",
            Route::Kpi => "GET, PUT",
            Route::Workflow => "PUT",
            Route::ReplBase | Route::ReplFence | Route::ReplPromote => "POST",
            Route::ReplBaseChunk => "GET, DELETE",
            _ => "GET",
        }
    }
}

/// Answers one request.
pub fn handle(st: &Arc<AppState>, req: &Request) -> Reply {
    let started = Instant::now();
    let checked = request::check_host(req, st.server.bind, &st.server.hosts)
        .and_then(|()| request::target(&req.target));
    let (label, reply) = match checked {
        Ok(t) => {
            let route = Route::of(&t.segments);
            let checked =
                known_params(route, &req.method, &t).and_then(|()| as_asked(req, route, &t));
            // A search is a read even when its query comes as a POST body.
            let csv = matches!(checked, Ok(true));
            let answer = if let Err(e) = checked {
                Err(e)
            } else if route.replication() {
                super::replication::authorize(st, req)
                    .and_then(|()| dispatch(st, req, route, &t, "standby"))
            } else if request::is_write(&req.method) && route != Route::Search {
                request::authorize(req, &st.server.tokens)
                    .and_then(|actor| dispatch(st, req, route, &t, actor))
            } else {
                dispatch(st, req, route, &t, crate::config::SINGLE_TOKEN_NAME)
            };
            let answer = match answer {
                Ok(r) if csv => Ok(super::csv::convert(route.label(), r)),
                a => a,
            };
            let reply = answer.unwrap_or_else(|e| {
                let r = Reply::error(&e);
                if matches!(e, Fault::MethodNotAllowed(_)) {
                    r.with_header("Allow", route.allowed())
                } else {
                    r
                }
            });
            (route.label(), reply)
        }
        Err(e) => ("other", Reply::error(&e)),
    };
    // A standby's refusal of a write names where writes go.
    let reply = if reply.status == 503 && st.store.gate().is_standby() {
        match st.node.status(&st.store) {
            Ok(n) if !n.primary_url.is_empty() => reply.with_header("X-Ora-Primary", n.primary_url),
            _ => reply,
        }
    } else {
        reply
    };
    // A failing /health is a verdict, not a server error: a monitor polling it must not fill
    // the journal with one warning per probe.
    if reply.status >= 500 && label != "/health" {
        log::warn!(
            "{} {label} -> {}: {}",
            req.method,
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    } else {
        log::debug!("{} {label} -> {}", req.method, reply.status);
    }
    if let Ok(mut m) = st.http.by_route.lock() {
        *m.entry((label, reply.status)).or_default() += 1;
    }
    st.http.seconds.observe(started.elapsed().as_secs_f64());
    reply
}

impl Route {
    /// What the route is for, in a line (the OpenAPI document's summary).
    fn summary(self) -> &'static str {
        match self {
            Route::Page => "The status page (HTML): what needs doing now, then the database",
            Route::OpenApi => "This document",
            Route::Health => "The database's verdict (503 when failing) and the warehouse's",
            Route::Live => "Liveness: the process takes and answers requests",
            Route::Metrics => "Prometheus metrics",
            Route::Inventory => {
                "Products with their stock, or the stock at the end of a past day (as_of)"
            }
            Route::InventoryItem => "One product's stock",
            Route::Transactions => {
                "The ledger, paged by id (GET); record a movement or a batch (POST)"
            }
            Route::Products => "Products, most urgent first (GET); add a product (POST)",
            Route::Product => "One product with its movements, running balance and days of cover",
            Route::ProductVector => "A product's own embedding for Qdrant",
            Route::ProductPage => "A product's page (HTML)",
            Route::SearchPage => "The search box's answer (HTML)",
            Route::Search => "Find products by name (typos welcome) or by vector",
            Route::Shipments => "Orders shipped, newest first (GET); record an order (POST)",
            Route::Shipment => "One order with its items",
            Route::Workflows => "Workflows and their states",
            Route::Workflow => "Set a workflow's status",
            Route::Kpis => "The most recent days' KPIs",
            Route::Kpi => "One day's KPIs (GET); record them (PUT)",
            Route::Audit => "Who changed what, newest first",
            Route::Backups => "Backup files (GET); take a backup now (POST)",
            Route::ReplStatus => "Replication: this box's role and its standbys",
            Route::ReplBase => "Replication: start a base copy for a standby",
            Route::ReplBaseChunk => "Replication: a base copy's bytes (GET); done with it (DELETE)",
            Route::ReplRecords => "Replication: committed records after a position",
            Route::ReplFence => "Replication: fence this box (a newer primary exists)",
            Route::ReplPromote => "Replication: make this standby the primary",
            Route::Unknown => "",
        }
    }
}

/// Every route as the OpenAPI document describes it.
fn described() -> Vec<super::openapi::Described> {
    Route::ALL
        .iter()
        .map(|r| super::openapi::Described {
            path: r.label(),
            methods: r.allowed(),
            params: r.params(),
            summary: r.summary(),
            token: if r.replication() { "standby" } else { "writes" },
        })
        .collect()
}

/// Refuses a query parameter the route does not take, or one given twice, naming the ones
/// it takes.
fn known_params(route: Route, method: &str, t: &Target) -> Result<()> {
    if route == Route::Unknown {
        return Ok(());
    }
    let takes: &[&str] = if matches!(method, "GET" | "HEAD") {
        route.params()
    } else {
        &[]
    };
    let said = |what: String| {
        let list = if takes.is_empty() {
            "none".to_string()
        } else {
            takes.join(", ")
        };
        Fault::usage(format!(
            "{what}; {method} {} takes these query parameters: {list}",
            route.label(),
            method = crate::model::clip(method)
        ))
    };
    for (i, (k, _)) in t.query.iter().enumerate() {
        if !takes.contains(&k.as_str()) {
            return Err(said(format!(
                "unknown query parameter {:?}",
                crate::model::clip(k)
            )));
        }
        if t.query[..i].iter().any(|(j, _)| j == k) {
            return Err(said(format!("the query parameter {k:?} is given twice")));
        }
    }
    Ok(())
}

/// Whether a list's answer goes out as CSV (`?format=csv`, `Accept: text/csv`); a bad
/// `format` is refused before the route runs.
fn as_asked(req: &Request, route: Route, t: &Target) -> Result<bool> {
    if !route.params().contains(&"format") || !matches!(req.method.as_str(), "GET" | "HEAD") {
        return Ok(false);
    }
    super::csv::wanted(req, t)
}

/// Runs the route; `actor` is the name a write is recorded under (its token's).
fn dispatch(
    st: &Arc<AppState>,
    req: &Request,
    route: Route,
    t: &Target,
    actor: &str,
) -> Result<Reply> {
    let m = req.method.as_str();
    let get = matches!(m, "GET" | "HEAD");
    let seg = |i: usize| t.segments.get(i).map(String::as_str).unwrap_or("");
    match route {
        Route::Page if get => Ok(page::render(st)?),
        Route::OpenApi if get => Ok(Reply::json(200, &super::openapi::document(&described()))),
        Route::Health if get => Ok(health::reply(st)),
        // The process can take, parse and answer a request (the watchdog's probe); says
        // nothing about the database, which /health judges.
        Route::Live if get => Ok(Reply::json(200, &serde_json::json!({"status": "live"}))),
        Route::Metrics if get => Ok(metrics::reply(st)?),
        Route::Inventory if get => api::inventory_list(st, t),
        Route::InventoryItem if get => api::inventory_get(st, seg(2)),
        Route::Transactions if get => api::transactions_list(st, t),
        Route::Transactions if m == "POST" => api::transactions_post(st, req, actor),
        Route::Products if get => lists::products(st, t, "/api/products"),
        Route::Product if get => super::product::json(st, seg(2), t),
        Route::ProductPage if get => super::product::page(st, seg(1), t),
        Route::SearchPage if get => super::find::page(st, t),
        Route::Products if m == "POST" => api::products_post(st, req, actor),
        Route::ProductVector if get => api::vector_get(st, seg(2)),
        Route::ProductVector if m == "PUT" => api::vector_put(st, req, actor, seg(2)),
        Route::ProductVector if m == "DELETE" => api::vector_delete(st, req, actor, seg(2)),
        Route::Search if get => api::search_get(st, t),
        Route::Search if m == "POST" => api::search_post(st, req),
        Route::Shipments if get => lists::shipments_list(st, t),
        Route::Shipments if m == "POST" => api::shipments_post(st, req, actor),
        Route::Shipment if get => lists::shipment(st, seg(2)),
        Route::Kpis if get => lists::kpis_list(st, t),
        Route::Audit if get => lists::audit(st, t),
        Route::Kpi if get => lists::kpi(st, seg(2)),
        Route::Workflows if get => api::workflows_list(st),
        Route::Workflow if m == "PUT" => api::workflow_put(st, req, actor, seg(2)),
        Route::Kpi if m == "PUT" => api::kpi_put(st, req, actor, seg(2)),
        Route::Backups if get => api::backups_list(st),
        Route::Backups if m == "POST" => backup_now(st),
        Route::ReplStatus if get => replication::status(st),
        Route::ReplBase if m == "POST" => replication::base_new(st),
        Route::ReplBaseChunk if get => replication::base_chunk(st, seg(2), t),
        Route::ReplBaseChunk if m == "DELETE" => Ok(replication::base_done(st, seg(2))),
        Route::ReplRecords if get => replication::records(st, req, t),
        Route::ReplFence if m == "POST" => replication::fence(st, req),
        Route::ReplPromote if m == "POST" => replication::promote(st),
        Route::Unknown => Err(Fault::NoRoute(format!(
            "no route for {} {}; the routes are: {}",
            crate::model::clip(m),
            crate::model::clip(&req.target),
            Route::ALL
                .iter()
                .map(|r| format!("{} {}", r.allowed(), r.label()))
                .collect::<Vec<_>>()
                .join("; ")
        ))),
        _ => Err(Fault::MethodNotAllowed(format!(
            "{} is not allowed on {}; use {}",
            crate::model::clip(m),
            route.label(),
            route.allowed()
        ))),
    }
}

/// POST /api/backups: takes a backup now (one at a time) and answers with its report.
fn backup_now(st: &Arc<AppState>) -> Result<Reply> {
    use std::sync::atomic::Ordering;
    if st.backup_running.swap(true, Ordering::SeqCst) {
        return Err(crate::store::StoreError::conflict(
            "a backup is already running; try again when it is done",
        )
        .into());
    }
    let result = crate::file::backup::run(
        st.store.path(),
        &st.backup,
        &crate::file::progress::Progress::hidden(),
    );
    st.backup_running.store(false, Ordering::SeqCst);
    st.invalidate_health();
    Ok(Reply::of(201, &result?))
}
