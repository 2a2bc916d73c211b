//! `GET /search?q=TEXT`: the search box's answer, a page of products whose name or sku is
//! near the text (the local trigram index, typo-tolerant; Qdrant when configured), each
//! linked to its page. A plain form submission: works without JavaScript. Reads only.

use maud::html;

use super::fault::{Fault, Result};
use super::frame::product_href;
use super::reply::Reply;
use super::request::Target;
use super::server::AppState;
use crate::remote::search::{self, Query};

/// Products listed at most.
const HITS: usize = 30;

pub fn page(st: &AppState, t: &Target) -> Result<Reply> {
    let q = t.param("q").unwrap_or("").trim();
    if q.chars().count() > 200 {
        return Err(Fault::invalid(
            "q must be at most 200 characters".to_string(),
        ));
    }
    let conn = st.store.read()?;
    // An exact sku (in any case) goes straight to its page.
    if let Some(p) = crate::store::products::get_nocase(&conn, q)? {
        return Ok(Reply::text(303, "text/plain; charset=utf-8", String::new())
            .with_header("Location", product_href(&p.sku)));
    }
    let hits = if q.is_empty() {
        Vec::new()
    } else {
        search::run(st.remote.as_ref(), &conn, &Query::Text(q.to_string()), HITS)?.hits
    };
    drop(conn);
    let main = html! {
        p.crumbs { a href="/" { "← Status" } }
        section id="results" {
            h2 { "Products like “" (q) "”" }
            @if hits.is_empty() {
                p.empty { @if q.is_empty() { "Type a product's name or SKU." } @else { "No product's name or SKU is near that." } }
            } @else {
                ul.stock {
                    @for h in &hits {
                        li.stockline { a.sku href=(product_href(&h.sku)) { (h.sku) } span.name { (h.product_name) } }
                    }
                }
            }
        }
    };
    Ok(Reply::html(super::status::sub_page(st, "search", q, main)))
}
