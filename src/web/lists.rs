//! The API's read-only listings of what can be written: products, shipments (with their items
//! and lots), KPIs, and the audit trail of who changed them. Reads only, through the reader pool; every parameter is checked before
//! any query runs.

use super::fault::{Fault, Result};
use super::reply::Reply;
use super::request::Target;
use super::server::AppState;
use crate::model;
use crate::store::shipments::{self, MAX_LISTED_ORDERS};
use crate::store::{kpis, products, StoreError};

fn bad(e: String) -> Fault {
    Fault::invalid(e)
}

/// A whole-number parameter within `range`, or `default` when absent.
fn number(
    t: &Target,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64> {
    match t.param(name) {
        None => Ok(default),
        Some(v) => {
            let n = model::parse_int(name, v).map_err(bad)?;
            if range.contains(&n) {
                Ok(n)
            } else {
                Err(bad(format!(
                    "{name} must be from {} to {}, got {n}",
                    range.start(),
                    range.end()
                )))
            }
        }
    }
}

/// GET /api/audit[?sku=][&table=][&actor=][&since=][&limit=N][&before=CURSOR]: the audit
/// trail, newest first; a full page links to the next with `Link: <...>; rel="next"`.
pub fn audit(st: &AppState, t: &Target) -> Result<Reply> {
    let limit = number(t, "limit", 1..=crate::store::audit::MAX_LIMIT as i64, 100)?;
    let before = t
        .param("before")
        .map(str::parse)
        .transpose()
        .map_err(|e: String| bad(format!("before: {e}")))?;
    let filter = crate::store::audit::Filter {
        sku: t.param("sku").map(str::to_string),
        table: t.param("table").map(str::to_string),
        actor: t.param("actor").map(str::to_string),
        since: t.param("since").map(str::to_string),
        before,
        limit: usize::try_from(limit).unwrap_or(100),
    };
    let trail = crate::store::audit::list(&*st.store.read()?, &filter)?;
    let next = trail
        .next
        .map(|c| next_page("/api/audit", t, &["before"], &[("before", &c.to_string())]));
    Ok(with_next(Reply::of(200, &trail.entries), next))
}

/// GET /api/products[?low=1][&limit=N][&after=SKU] (and /api/inventory the same): products
/// with their stock, most urgent first; all of them without `limit`, else a page that links
/// to the next (after its last product) with `Link: <...>; rel="next"`.
pub fn products(st: &AppState, t: &Target, path: &str) -> Result<Reply> {
    let low = super::request::flag(t, "low")?;
    let limit = number(t, "limit", 1..=MAX_LISTED_PRODUCTS, 0)?;
    let conn = st.store.read()?;
    let after = t.param("after");
    if let Some(sku) = after {
        model::validate_sku(sku).map_err(|e| bad(format!("after: {e}")))?;
        if products::get(&conn, sku)?.is_none() {
            return Err(bad(format!("after: no product {:?}", model::clip(sku))));
        }
    }
    let page = if limit == 0 { i64::MAX } else { limit };
    let rows = products::list_after(&conn, low, after, page)?;
    let next = rows
        .last()
        .filter(|_| limit > 0 && rows.len() as i64 == limit)
        .map(|p| next_page(path, t, &["after"], &[("after", &p.sku)]));
    Ok(with_next(Reply::of(200, &rows), next))
}

/// The longest page of products.
const MAX_LISTED_PRODUCTS: i64 = 10_000;

/// GET /api/shipments[?since=DATE][&order=NUMBER][&limit=N][&after=NUMBER]: orders, newest
/// first, paged by the last order of the page before.
pub fn shipments_list(st: &AppState, t: &Target) -> Result<Reply> {
    let since = t.param("since");
    if let Some(d) = since {
        model::validate_date("since", d).map_err(bad)?;
    }
    let limit = number(t, "limit", 1..=i64::from(MAX_LISTED_ORDERS), 100)?;
    let conn = st.store.read()?;
    if let Some(order) = t.param("order") {
        model::validate_label("order", order, model::MAX_SKU_LEN).map_err(bad)?;
        let one: Vec<shipments::Order> = shipments::get(&conn, order)?
            .map(|d| d.order)
            .filter(|o| since.is_none_or(|s| o.ship_date.as_str() >= s))
            .into_iter()
            .collect();
        return Ok(Reply::of(200, &one));
    }
    let limit = u32::try_from(limit).unwrap_or(MAX_LISTED_ORDERS);
    // `after=ORDER`: the page after that order (one of an earlier page).
    let cursor =
        match t.param("after") {
            Some(o) => {
                model::validate_label("after", o, model::MAX_SKU_LEN).map_err(bad)?;
                Some(shipments::get(&conn, o)?.map(|d| d.order).ok_or_else(|| {
                    bad(format!("after: no order {:?} was recorded", model::clip(o)))
                })?)
            }
            None => None,
        };
    let rows = shipments::list_after(&conn, since, cursor.as_ref(), limit)?;
    let next = rows
        .last()
        .filter(|_| rows.len() == limit as usize)
        .map(|o| {
            let mut q = format!(
                "/api/shipments?limit={limit}&after={}",
                super::frame::percent(&o.order_number)
            );
            if let Some(s) = since {
                q.push_str(&format!("&since={s}"));
            }
            q
        });
    Ok(with_next(Reply::of(200, &rows), next))
}

/// GET /api/shipments/{order}: one order with its items (sku, lot, quantity, ledger id).
pub fn shipment(st: &AppState, order: &str) -> Result<Reply> {
    model::validate_label("order", order, model::MAX_SKU_LEN).map_err(bad)?;
    let d = shipments::get(&*st.store.read()?, order)?.ok_or_else(|| {
        StoreError::not_found(format!("no order {:?} was recorded", model::clip(order)))
    })?;
    Ok(Reply::of(200, &d))
}

/// GET /api/kpis[?days=N][&before=DATE]: the most recent days (before DATE), newest first
/// (14 by default); a full page links to the next with `Link: <...>; rel="next"`.
pub fn kpis_list(st: &AppState, t: &Target) -> Result<Reply> {
    let days = number(t, "days", 1..=3660, 14)?;
    let days = u32::try_from(days).unwrap_or(14);
    let before = t.param("before");
    if let Some(d) = before {
        model::validate_date("before", d).map_err(bad)?;
    }
    let rows = kpis::before(&*st.store.read()?, before, days)?;
    let next = rows
        .last()
        .filter(|_| rows.len() == days as usize)
        .map(|k| format!("/api/kpis?days={days}&before={}", k.snapshot_date));
    Ok(with_next(Reply::of(200, &rows), next))
}

/// The next page's address: this request's query without the `drop` keys, then `add`.
pub fn next_page(path: &str, t: &Target, drop: &[&str], add: &[(&str, &str)]) -> String {
    let q: Vec<String> = t
        .query
        .iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(add.iter().copied())
        .map(|(k, v)| format!("{k}={}", super::frame::percent(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// The answer with a `Link` to its next page, when there is one.
pub fn with_next(reply: Reply, next: Option<String>) -> Reply {
    match next {
        Some(n) => reply.with_header("Link", format!("<{n}>; rel=\"next\"")),
        None => reply,
    }
}

/// GET /api/kpis/{date}: one day's KPIs.
pub fn kpi(st: &AppState, date: &str) -> Result<Reply> {
    model::validate_date("date", date).map_err(bad)?;
    let k = kpis::get(&*st.store.read()?, date)?
        .ok_or_else(|| StoreError::not_found(format!("no KPIs recorded for {date}")))?;
    Ok(Reply::of(200, &k))
}
