//! Routing: method + path -> handler. Checks every request the same way first (URL, header
//! flood, bearer token for writes), then answers now or queues the write; requests with a
//! large body are read on a thread of their own. Every failure becomes a JSON error.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use tiny_http::{Method, Request};

use super::api::{self, Handled};
use super::reply::Reply;
use super::request::{self, Target};
use super::server::{self, AppState, Pending};
use super::{health, metrics, page};
use crate::error::{Error, Result};

/// The routes, as (label, methods) for metrics and 405 answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Page,
    Health,
    Metrics,
    Inventory,
    InventoryItem,
    Transactions,
    Products,
    Shipments,
    Workflows,
    Workflow,
    Kpi,
    Backups,
    Unknown,
}

impl Route {
    fn of(segments: &[String]) -> Route {
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        match s.as_slice() {
            [] => Route::Page,
            ["health"] => Route::Health,
            ["metrics"] => Route::Metrics,
            ["api", "inventory"] => Route::Inventory,
            ["api", "inventory", _] => Route::InventoryItem,
            ["api", "transactions"] => Route::Transactions,
            ["api", "products"] => Route::Products,
            ["api", "shipments"] => Route::Shipments,
            ["api", "workflows"] => Route::Workflows,
            ["api", "workflows", _] => Route::Workflow,
            ["api", "kpis", _] => Route::Kpi,
            ["api", "backups"] => Route::Backups,
            _ => Route::Unknown,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Page => "/",
            Route::Health => "/health",
            Route::Metrics => "/metrics",
            Route::Inventory => "/api/inventory",
            Route::InventoryItem => "/api/inventory/{sku}",
            Route::Transactions => "/api/transactions",
            Route::Products => "/api/products",
            Route::Shipments => "/api/shipments",
            Route::Workflows => "/api/workflows",
            Route::Workflow => "/api/workflows/{name}",
            Route::Kpi => "/api/kpis/{date}",
            Route::Backups => "/api/backups",
            Route::Unknown => "other",
        }
    }

    fn allowed(self) -> &'static str {
        match self {
            Route::Transactions | Route::Backups => "GET, POST",
            Route::Products | Route::Shipments => "POST",
            Route::Workflow | Route::Kpi => "PUT",
            _ => "GET",
        }
    }
}

fn is_get(m: &Method) -> bool {
    matches!(m, Method::Get | Method::Head)
}

/// Answers one request; never panics, never leaves it unanswered.
pub fn handle(st: &Arc<AppState>, req: Request, answers: &Sender<Pending>) {
    let started = Instant::now();
    let target = match request::target(req.url()) {
        Ok(t) => t,
        Err(e) => return server::send(st, req, "other", Reply::error(&e), started),
    };
    let route = Route::of(&target.segments);
    let checked = request::check_headers(&req).and_then(|()| {
        if request::is_write(req.method()) {
            request::authorize(&req, st.server.token.as_deref())
        } else {
            Ok(())
        }
    });
    if let Err(e) = checked {
        return server::send(st, req, route.label(), Reply::error(&e), started);
    }
    let chunked = request::header(&req, "Transfer-Encoding").is_some();
    let large = chunked || request::content_length(&req).is_some_and(|n| n > server::SMALL_BODY);
    if large && request::is_write(req.method()) {
        return server::on_body_thread(
            st,
            req,
            route.label(),
            started,
            answers,
            move |st, req, tx| execute(st, req, route, &target, tx, started),
        );
    }
    execute(st, req, route, &target, answers, started);
}

fn execute(
    st: &Arc<AppState>,
    mut req: Request,
    route: Route,
    t: &Target,
    answers: &Sender<Pending>,
    started: Instant,
) {
    let label = route.label();
    match dispatch(st, &mut req, route, t) {
        Ok(Handled::Now(reply)) => server::send(st, req, label, reply, started),
        Ok(Handled::Later(ticket, render)) => {
            let pending = Pending {
                req,
                route: label,
                ticket,
                render,
                started,
            };
            if let Err(mpsc_err) = answers.send(pending) {
                let p = mpsc_err.0;
                let reply = (p.render)(p.ticket.wait());
                server::send(st, p.req, label, reply, started);
            }
        }
        Err(e) => {
            let mut reply = Reply::error(&e);
            if matches!(e, Error::MethodNotAllowed(_)) {
                reply = reply.with_header("Allow", route.allowed());
            }
            server::send(st, req, label, reply, started)
        }
    }
}

fn dispatch(st: &Arc<AppState>, req: &mut Request, route: Route, t: &Target) -> Result<Handled> {
    let m = req.method().clone();
    let wrong = || {
        Err(Error::MethodNotAllowed(format!(
            "{m} is not allowed on {}; use {}",
            route.label(),
            route.allowed()
        )))
    };
    let seg = |i: usize| t.segments.get(i).map(String::as_str).unwrap_or("");
    Ok(match route {
        Route::Page if is_get(&m) => page::render(st)?.into(),
        Route::Health if is_get(&m) => health::reply(st).into(),
        Route::Metrics if is_get(&m) => metrics::reply(st)?.into(),
        Route::Inventory if is_get(&m) => api::inventory_list(st, t)?.into(),
        Route::InventoryItem if is_get(&m) => api::inventory_get(st, seg(2))?.into(),
        Route::Transactions if is_get(&m) => api::transactions_list(st, t)?.into(),
        Route::Transactions if m == Method::Post => api::transactions_post(st, req)?,
        Route::Products if m == Method::Post => api::products_post(st, req)?,
        Route::Shipments if m == Method::Post => api::shipments_post(st, req)?,
        Route::Workflows if is_get(&m) => api::workflows_list(st)?.into(),
        Route::Workflow if m == Method::Put => api::workflow_put(st, req, seg(2))?,
        Route::Kpi if m == Method::Put => api::kpi_put(st, req, seg(2))?,
        Route::Backups if is_get(&m) => api::backups_list(st)?.into(),
        Route::Backups if m == Method::Post => backup_now(st)?.into(),
        Route::Unknown => {
            return Err(Error::NoRoute(format!(
                "no route for {m} {}; see the README for the API",
                crate::model::clip(req.url())
            )))
        }
        _ => return wrong(),
    })
}

/// POST /api/backups: takes a backup now (one at a time) and answers with its report.
fn backup_now(st: &Arc<AppState>) -> Result<Reply> {
    use std::sync::atomic::Ordering;
    if st.backup_running.swap(true, Ordering::SeqCst) {
        return Err(crate::store::StoreError::Conflict(
            "a backup is already running; try again when it is done".into(),
        )
        .into());
    }
    let result = crate::ops::backup::run(
        st.store.path(),
        &st.backup,
        &crate::ops::progress::Progress::hidden(),
    );
    st.backup_running.store(false, Ordering::SeqCst);
    Ok(Reply::of(201, &result?))
}
