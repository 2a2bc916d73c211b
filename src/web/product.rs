//! One product: `GET /products/{sku}` (its page) and `GET /api/products/{sku}` (the same as
//! JSON): stock, reorder point, days of cover at the recent ship rate, a chart of its stock
//! over the last 90 days, and its movements newest first with the running balance, who
//! recorded each and its order or lot, paged by cursor (`before`). Every read is an index walk
//! of that sku's rows. Reads only.

use maud::{html, Markup};
use serde::Serialize;

use super::charts;
use super::fault::{Fault, Result};
use super::frame::{product_href, rich};
use super::reply::Reply;
use super::request::Target;
use super::server::AppState;
use crate::model;
use crate::store::ledger::{self, LedgerQuery, LedgerRow};
use crate::store::products::{self, Product};

/// Movements on one page.
const PAGE_ROWS: u32 = 50;
/// Days the ship rate is taken over.
const RATE_DAYS: i64 = 28;
/// Days the stock chart covers.
const CHART_DAYS: i64 = 90;

/// A movement with the stock it left behind.
#[derive(Debug, Serialize)]
struct Line {
    #[serde(flatten)]
    row: LedgerRow,
    /// The sku's stock by its ledger after this movement.
    balance: i64,
}

/// What the page and the JSON show.
#[derive(Debug, Serialize)]
struct View {
    product: Product,
    /// Units shipped per day over the last 28 days.
    ship_rate: f64,
    /// How many days the stock lasts at that rate (none without shipments).
    days_of_cover: Option<f64>,
    movements: Vec<Line>,
    /// The cursor of the next (older) page, when there is one.
    next_before: Option<i64>,
    #[serde(skip)]
    chart: Vec<(String, f64)>,
}

fn signed(r: &LedgerRow) -> i64 {
    if r.kind == "Receive" || r.kind == "Adjust Up" {
        r.quantity
    } else {
        -r.quantity
    }
}

fn read(st: &AppState, sku: &str, t: &Target) -> Result<View> {
    model::validate_sku(sku).map_err(Fault::invalid)?;
    let before = match t.param("before") {
        Some(v) => Some(model::parse_int("before", v).map_err(Fault::invalid)?),
        None => None,
    };
    let limit = match t.param("limit") {
        Some(v) => ledger::history_limit(model::parse_int("limit", v).map_err(Fault::invalid)?)
            .map_err(Fault::invalid)?,
        None => PAGE_ROWS,
    };
    let conn = st.store.read()?;
    let product = products::get(&conn, sku)?.ok_or_else(|| {
        products::unknown(
            &conn,
            sku,
            "find it with the search box or GET /api/search?q=",
        )
    })?;
    let (rows, more) = ledger::page(
        &conn,
        &LedgerQuery {
            sku: Some(sku.to_string()),
            limit,
            before,
            ..LedgerQuery::default()
        },
    )?;
    let total = ledger::balance_before(&conn, sku, None)?;
    // The balance after the page's newest row: on the first page that row is the sku's
    // newest, so its balance is the total already read.
    let mut balance = match (rows.first(), before) {
        (Some(_), None) => total,
        (Some(r), Some(_)) => ledger::balance_before(&conn, sku, Some(r.id.saturating_add(1)))?,
        (None, _) => 0,
    };
    let next_before = rows.last().map(|r| r.id).filter(|_| more);
    let movements = rows
        .into_iter()
        .map(|row| {
            let line = Line { balance, row };
            balance -= signed(&line.row);
            line
        })
        .collect();
    let today = crate::clock::local_now().date_naive();
    let first = today - chrono::Duration::days(CHART_DAYS - 1);
    let days = ledger::sku_days(&conn, sku, &first.format("%Y-%m-%d").to_string())?;
    let rate_from = (today - chrono::Duration::days(RATE_DAYS - 1))
        .format("%Y-%m-%d")
        .to_string();
    let shipped: i64 = days
        .iter()
        .filter(|d| d.date >= rate_from)
        .map(|d| d.shipped)
        .sum();
    let ship_rate = shipped as f64 / RATE_DAYS as f64;
    Ok(View {
        days_of_cover: (ship_rate > 0.0)
            .then(|| (product.current_quantity.max(0) as f64 / ship_rate * 10.0).round() / 10.0),
        chart: stock_series(&days, total, first, today),
        product,
        ship_rate: (ship_rate * 100.0).round() / 100.0,
        movements,
        next_before,
    })
}

/// The stock at the end of each of the chart's days, walked back from today's ledger total
/// through each day's net change (future-dated rows are in the total but on no day shown).
fn stock_series(
    days: &[ledger::SkuDay],
    total: i64,
    first: chrono::NaiveDate,
    today: chrono::NaiveDate,
) -> Vec<(String, f64)> {
    let today_key = today.format("%Y-%m-%d").to_string();
    let net: std::collections::HashMap<&str, i64> =
        days.iter().map(|d| (d.date.as_str(), d.net)).collect();
    let later: i64 = days
        .iter()
        .filter(|d| d.date > today_key)
        .map(|d| d.net)
        .sum();
    let mut end = total - later;
    let mut out = Vec::new();
    let mut day = today;
    while day >= first {
        let key = day.format("%Y-%m-%d").to_string();
        out.push((day.format("%-d %b").to_string(), end as f64));
        end -= net.get(key.as_str()).copied().unwrap_or(0);
        match day.pred_opt() {
            Some(d) => day = d,
            None => break,
        }
    }
    out.reverse();
    out
}

/// GET /api/products/{sku}[?before=ID][&limit=N]
pub fn json(st: &AppState, sku: &str, t: &Target) -> Result<Reply> {
    let v = read(st, sku, t)?;
    let mut reply = Reply::of(200, &v);
    if let Some(b) = v.next_before {
        reply = reply.with_header(
            "Link",
            format!("<{}?before={b}>; rel=\"next\"", api_href(&v.product.sku)),
        );
    }
    Ok(reply)
}

fn api_href(sku: &str) -> String {
    format!("/api{}", product_href(sku))
}

/// GET /products/{sku}[?before=ID]: the product's page.
pub fn page(st: &AppState, sku: &str, t: &Target) -> Result<Reply> {
    let v = read(st, sku, t)?;
    let p = &v.product;
    let main = html! {
        p.crumbs { a href="/" { "← Status" } }
        section id="product" {
            h2 { (p.sku) }
            p.big { (p.product_name) }
            div.cards {
                div.card { h2 { "Stock" } div.big { (p.current_quantity) } div.sub { span class={"tag " (p.alert_level)} { (p.alert_level) } } }
                div.card { h2 { "Reorder at" } div.big { (p.reorder_point) } div.sub { "short by " (p.shortage) } }
                div.card {
                    h2 { "Days of cover" }
                    div.big { (v.days_of_cover.map_or_else(|| "—".to_string(), |d| format!("{d:.1}"))) }
                    div.sub { (format!("{:.2}", v.ship_rate)) " shipped per day over the last " (RATE_DAYS) " days" }
                }
            }
            (charts::line(&format!("Stock at the end of each day, last {CHART_DAYS} days"), &v.chart, ""))
        }
        (movements(&v))
    };
    Ok(Reply::html(super::status::sub_page(st, &p.sku, "", main)))
}

fn movements(v: &View) -> Markup {
    let sku = &v.product.sku;
    html! {
        section id="movements" {
            h2 { "Movements, newest first" }
            @if v.movements.is_empty() {
                p.empty { "No movements." }
            } @else {
                div.scroll { table.stack {
                    thead { tr { th { "Date" } th { "Type" } th.num { "Quantity" } th.num { "Balance" } th { "By" } th { "Order / lot / note" } } }
                    tbody {
                        @for l in &v.movements {
                            @let r = &l.row;
                            tr id={"m" (r.id)} {
                                td data-label="Date" { (r.date) }
                                td data-label="Type" { (r.kind) }
                                td.num data-label="Quantity" { (format!("{:+}", signed(r))) }
                                td.num data-label="Balance" { (l.balance) }
                                td data-label="By" { (r.actor.as_deref().unwrap_or("—")) }
                                td data-label="Order / lot / note" {
                                    @if let Some(o) = &r.order { "order " (o) " " }
                                    @if let Some(lot) = &r.lot { "lot " (lot) " " }
                                    @if let Some(n) = &r.notes { span.details { (rich(n)) } }
                                }
                            }
                        }
                    }
                } }
            }
            p.sub {
                @if let Some(b) = v.next_before {
                    a rel="next" href={(product_href(sku)) "?before=" (b)} { "Older movements →" } " · "
                }
                a href={"/api/transactions?sku=" (super::frame::percent(sku)) "&format=csv&limit=10000"} { "Download as CSV" }
            }
        }
    }
}
