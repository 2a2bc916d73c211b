//! What every HTML page of ora shares: the head (a title that leads with the worse verdict,
//! an icon in its colour, the inline stylesheet), the header (ora, the site's name, the two
//! verdicts, a search box that is a plain form, so it works without JavaScript), the footer,
//! and [`rich`], which shows a message's `code` as code. Pure functions of their arguments;
//! every value is escaped by construction (maud). Never reads the database.

use chrono::{DateTime, Local};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::style::CSS;
use crate::model::Level;
use crate::words;

pub fn level_class(l: Level) -> &'static str {
    match l {
        Level::Ok => "ok",
        Level::Warn => "warn",
        Level::Fail => "fail",
    }
}

pub fn level_word(l: Level) -> &'static str {
    match l {
        Level::Ok => "ALL GOOD",
        Level::Warn => "ATTENTION",
        Level::Fail => "PROBLEM",
    }
}

/// The two verdict pills of the header: the warehouse's (in `house_word`) and the database's.
pub fn verdict_pills(house: Level, house_word: &str, database: Level) -> Markup {
    html! {
        span id="warehouse-verdict" class={"verdict " (level_class(house))}
            data-verdict=(level_class(house)) { "Warehouse: " (house_word) }
        span id="verdict" class={"verdict " (level_class(database))}
            data-verdict=(level_class(database)) { "Database: " (level_word(database)) }
    }
}

/// A round tab icon in the verdict's colour, inline (the page loads nothing else).
fn favicon(l: Level) -> String {
    let colour = match l {
        Level::Ok => "%231a7f37",
        Level::Warn => "%23b35900",
        Level::Fail => "%23c62828",
    };
    format!("data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><circle cx='8' cy='8' r='7' fill='{colour}'/></svg>")
}

/// A page's frame around its `main`.
pub struct Frame<'a> {
    /// The tab title after the verdict word ("" for the status page).
    pub title: &'a str,
    /// The worse of the two verdicts: the tab's word and icon.
    pub worst: Level,
    /// "STANDBY — " and the like, before the verdict word.
    pub role: &'a str,
    /// The site's name, or the database's path.
    pub site: &'a str,
    /// The verdict pills at the right of the header.
    pub verdicts: Markup,
    /// Whether the page reloads itself every minute.
    pub refresh: bool,
    /// What the search box holds.
    pub query: &'a str,
    pub now: DateTime<Local>,
}

impl Frame<'_> {
    pub fn render(&self, main: Markup) -> String {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width,initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    @if self.refresh { meta http-equiv="refresh" content="60"; }
                    title {
                        "ora — " (self.role) (level_word(self.worst))
                        @if !self.title.is_empty() { " — " (self.title) }
                    }
                    link rel="icon" href=(favicon(self.worst));
                    style { (PreEscaped(CSS)) }
                }
                body {
                    header {
                        h1 { a href="/" { "ora" } }
                        span.db { (self.site) }
                        form.search action="/search" method="get" role="search" {
                            input type="search" name="q" value=(self.query) maxlength="200"
                                placeholder="Find a product: name or SKU" aria-label="Find a product";
                            button type="submit" { "Find" }
                        }
                        div.verdicts { (self.verdicts) }
                    }
                    main { (main) (footer(self.now)) }
                    script { (PreEscaped(super::script::SUGGEST)) }
                }
            }
        }
        .into_string()
    }
}

fn footer(now: DateTime<Local>) -> Markup {
    let zone = words::zone(&now);
    html! {
        footer id="generated" {
            "generated " (now.format("%Y-%m-%d %H:%M:%S").to_string()) " (" (zone) ") · reloads every minute · times are local, " (zone) " · "
            a href="/health" { "/health" } " · " a href="/metrics" { "/metrics" } " · " a href="/api/openapi.json" { "API" }
        }
    }
}

/// A message as text, its `quoted` parts as code (a message says `ora stock reconcile X`;
/// the page shows the command as a command, never the backticks).
pub fn rich(text: &str) -> Markup {
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

/// The link to a product's page.
pub fn product_href(sku: &str) -> String {
    format!("/products/{}", percent(sku))
}

/// Percent-encodes everything but unreserved characters (a sku may hold `/` and `.`).
pub fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_renders_as_code_and_is_escaped() {
        let m = rich("run `ora stock reconcile <A>` then `x`").into_string();
        assert_eq!(
            m,
            "run <code>ora stock reconcile &lt;A&gt;</code> then <code>x</code>"
        );
        assert_eq!(rich("no code").into_string(), "no code");
        assert_eq!(product_href("A/1 b"), "/products/A%2F1%20b");
    }
}
