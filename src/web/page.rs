//! `GET /`: the status page. One self-contained HTML document (inline CSS and SVG, no
//! JavaScript, no external assets; it reloads itself every minute) whose first screen answers
//! "is everything all right?" twice: the database (file, integrity, backups, maintenance,
//! replica) and the warehouse (stock, workflows, KPIs), each red/amber/green with its reasons;
//! then the database, backups, maintenance and writer at a glance, low stock, workflows,
//! today's KPIs, history charts and the latest operations. It fits a 360 px phone to a 1920 px
//! desk screen. [`html`] is a pure function of [`StatusData`] (whose `now` is its clock).

use std::fmt::Write as _;

use super::charts::{self, esc};
use super::reply::Reply;
use super::server::AppState;
use super::status::{self, StatusData};
use super::style::CSS;
use super::words::{self, Meaning};
use crate::error::Result;
use crate::ops::health::Level;

/// The page, rendered now.
pub fn render(st: &AppState) -> Result<Reply> {
    Ok(Reply::html(html(&status::gather(st)?)))
}

/// Rows of the maintenance history table (after grouping repeats).
const HISTORY_ROWS: usize = 12;

fn level_class(l: Level) -> &'static str {
    match l {
        Level::Ok => "ok",
        Level::Warn => "warn",
        Level::Fail => "fail",
    }
}

/// Bytes for people: kB below a megabyte, MB above.
fn mb(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.0} kB", (bytes as f64 / 1e3).ceil())
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// The warehouse verdict: what needs a person's attention today, apart from the database.
fn attention(d: &StatusData) -> (Level, Vec<(Level, String)>) {
    let mut items = Vec::new();
    let plural = crate::model::plural;
    if d.critical > 0 {
        items.push((
            Level::Fail,
            format!(
                "{} at or below zero (critical)",
                plural(d.critical, "product is", "products are")
            ),
        ));
    }
    if d.low > 0 {
        items.push((
            Level::Warn,
            format!(
                "{} at or below the reorder point",
                plural(d.low, "product is", "products are")
            ),
        ));
    }
    let failed: Vec<&str> = d
        .workflows
        .iter()
        .filter(|w| words::meaning(&w.status) == Meaning::Failed)
        .map(|w| w.name.as_str())
        .collect();
    if !failed.is_empty() {
        items.push((
            Level::Fail,
            format!(
                "{} failed: {}",
                plural(failed.len(), "workflow", "workflows"),
                failed.join(", ")
            ),
        ));
    }
    let today = d.now.date_naive();
    if let Some(latest) = &d.kpi_latest {
        let fresh = chrono::NaiveDate::parse_from_str(latest, "%Y-%m-%d")
            .is_ok_and(|k| today.pred_opt().is_some_and(|y| k >= y));
        if !fresh {
            items.push((
                Level::Warn,
                format!(
                    "KPIs are stale: last recorded {}",
                    words::day(latest, today)
                ),
            ));
        }
    }
    let level = items
        .iter()
        .map(|(l, _)| *l)
        .max_by_key(|l| match l {
            Level::Ok => 0,
            Level::Warn => 1,
            Level::Fail => 2,
        })
        .unwrap_or(Level::Ok);
    (level, items)
}

/// The history table's rows: runs in order, consecutive runs of one kind with one result
/// merged into one row with a count, at most `rows` rows.
fn grouped(
    runs: &[crate::file::oplog::Run],
    rows: usize,
) -> Vec<(&crate::file::oplog::Run, usize)> {
    let mut out: Vec<(&crate::file::oplog::Run, usize)> = Vec::new();
    for r in runs {
        match out.last_mut() {
            Some((first, n)) if first.kind == r.kind && first.ok == r.ok && r.ok != Some(false) => {
                *n += 1
            }
            _ => {
                if out.len() == rows {
                    break;
                }
                out.push((r, 1));
            }
        }
    }
    out
}

/// Why a failed run failed, and the file it was about, from its ops_log details.
fn failure(r: &crate::file::oplog::Run) -> Option<String> {
    let d = r.details.as_ref()?;
    let text = |k: &str| d.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
    let why = text("problem")
        .or_else(|| text("error"))
        .or_else(|| text("reason"))
        .map(str::to_string)
        .or_else(|| {
            let p = d.get("problems")?.as_array()?;
            let all: Vec<&str> = p.iter().filter_map(|v| v.as_str()).collect();
            (!all.is_empty()).then(|| all.join("; "))
        })?;
    Some(match text("file") {
        Some(f) if !why.contains(f) => format!("{why} ({f})"),
        _ => why,
    })
}

fn level_word(l: Level) -> &'static str {
    match l {
        Level::Ok => "ALL GOOD",
        Level::Warn => "ATTENTION",
        Level::Fail => "PROBLEM",
    }
}

/// The whole document.
pub fn html(d: &StatusData) -> String {
    let h = &d.health;
    let f = &h.facts;
    let now = d.now;
    let now_utc = now.with_timezone(&chrono::Utc);
    let ago = |hours: f64| {
        let secs = (hours * 3600.0).clamp(0.0, 1e10) as i64;
        words::when(now_utc - chrono::Duration::seconds(secs), now)
    };
    let verdict = level_word(h.verdict);
    let (house, house_items) = attention(d);
    let house_word = match (house, house_items.len()) {
        (Level::Ok, _) => "ALL GOOD".to_string(),
        (_, 1) => "1 NEEDS ATTENTION".to_string(),
        (_, n) => format!("{n} NEED ATTENTION"),
    };
    let mut s = String::with_capacity(32 * 1024);
    let _ = write!(
        s,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta http-equiv="refresh" content="60"><title>ora — {verdict}</title><style>{CSS}</style></head><body>"#
    );
    let _ = write!(
        s,
        r#"<header><h1>ora</h1><span class="db">{db}</span><div class="verdicts"><span id="verdict" class="verdict {cls}" data-verdict="{cls}">Database: {verdict}</span><span id="warehouse-verdict" class="verdict {hcls}" data-verdict="{hcls}">Warehouse: {house_word}</span></div></header><main>"#,
        db = esc(&d.database),
        cls = level_class(h.verdict),
        hcls = level_class(house),
    );
    s.push_str(r#"<ul class="reasons" id="findings"><h2>Database</h2>"#);
    for x in &h.findings {
        let _ = write!(
            s,
            r#"<li class="{}"><strong>{}</strong>: {}</li>"#,
            level_class(x.level),
            esc(x.check),
            esc(&x.message)
        );
    }
    s.push_str(r#"</ul><ul class="reasons" id="attention"><h2>Warehouse</h2>"#);
    if house_items.is_empty() {
        s.push_str(r#"<li class="ok">Nothing needs attention: stock above reorder points, no failed workflow, KPIs current.</li>"#);
    }
    for (l, text) in &house_items {
        let _ = write!(s, r#"<li class="{}">{}</li>"#, level_class(*l), esc(text));
    }
    s.push_str(r#"</ul><p class="covers">The database verdict covers the file, its integrity, backups, maintenance and the replica; the warehouse verdict covers stock levels, workflows and KPIs.</p>"#);

    // The first screen: the cards.
    s.push_str(r#"<div class="cards">"#);
    let _ = write!(
        s,
        r#"<div class="card" id="database"><h2>Database</h2><div class="big">{}</div><div class="sub">WAL {} · {:.1}% free pages · {} pages</div><div class="sub">integrity: {} — {}</div></div>"#,
        mb(f.file.size_bytes),
        mb(f.file.wal_bytes),
        f.file.free_percent,
        f.file.page_count,
        esc(&f.check_kind.replace('_', " ")),
        esc(&f.check)
    );
    let backup_card = match &f.last_backup {
        Some(b) => format!(
            r#"<div class="big">{}</div><div class="sub">{} · {}</div>"#,
            esc(&ago(b.age_hours)),
            mb(b.bytes),
            match b.verified {
                Some(true) => "restore drill passed",
                Some(false) => "restore drill FAILED",
                None => "not drilled yet",
            }
        ),
        None => {
            r#"<div class="big">none yet</div><div class="sub">run <code>ora backup</code></div>"#
                .to_string()
        }
    };
    let _ = write!(
        s,
        r#"<div class="card" id="backups-card"><h2>Last backup</h2>{backup_card}</div>"#
    );
    let maint = match &f.last_maintenance {
        Some(m) => format!(
            r#"<div class="big">{}</div><div class="sub">{} · {}</div>"#,
            esc(&ago(m.age_hours)),
            esc(&words::operation(&m.kind)),
            if m.ok { "ok" } else { "FAILED" }
        ),
        None => r#"<div class="big">never</div><div class="sub">run <code>ora maintain daily</code></div>"#.to_string(),
    };
    let _ = write!(
        s,
        r#"<div class="card" id="maintenance"><h2>Maintenance</h2>{maint}</div>"#
    );
    if let Some(r) = f.replica.as_ref().filter(|r| !r.enabled) {
        let _ = write!(
            s,
            r#"<div class="card" id="replica"><h2>Replica</h2><div class="big">none</div><div class="sub">this file is {}</div></div>"#,
            esc(r.copy.as_deref().unwrap_or("without a replica"))
        );
    }
    if let Some(r) = f.replica.as_ref().filter(|r| r.enabled) {
        let refusal = r.refusals.first().map_or_else(String::new, |n| {
            format!(
                r#"<div class="sub">refused: {} tried to write here at {}</div>"#,
                esc(&n.place.describe()),
                esc(&words::when_text(&n.at, now))
            )
        });
        let state = match (&r.problem, r.lag_commits) {
            (Some(p), _) if r.refused => format!(
                r#"<div class="big">REFUSED: NOT THE OWNER</div><div class="sub">{}</div>"#,
                esc(p)
            ),
            _ if r.foreign_tail.is_some() => format!(
                r#"<div class="big">HOLDS ANOTHER DATABASE'S COMMITS</div><div class="sub">{}</div>"#,
                esc(r.foreign_tail.as_deref().unwrap_or_default())
            ),
            (Some(p), _) => format!(
                r#"<div class="big">NOT REACHABLE</div><div class="sub">{}</div>"#,
                esc(p)
            ),
            (None, 0) => r#"<div class="big">up to date</div>"#.to_string(),
            (None, n) => format!(
                r#"<div class="big">{n} behind</div><div class="sub">{:.1} s</div>"#,
                r.lag_seconds
            ),
        };
        let point = |p: &Option<String>| {
            p.as_deref()
                .map_or_else(|| "-".to_string(), |t| words::when_text(t, now))
        };
        let _ = write!(
            s,
            r#"<div class="card" id="replica"><h2>Replica ({})</h2>{state}{refusal}<div class="sub">{} · restorable from {} to {} · check: {}</div></div>"#,
            esc(&r.mode),
            esc(&r.dir),
            esc(&point(&r.oldest_point)),
            esc(&point(&r.newest_point)),
            match r.last_verify_ok {
                Some(true) => "passed",
                Some(false) => "FAILED",
                None => "never run",
            }
        );
    }
    let _ = write!(
        s,
        r#"<div class="card" id="ledger"><h2>Ledger</h2><div class="big">{} movements</div><div class="sub">{} products · writer: {} queued, {} commits, {} refused · up {} min</div></div>"#,
        d.movements,
        d.products,
        d.writer.0,
        d.writer.1,
        d.writer.3,
        d.uptime_seconds / 60
    );
    s.push_str("</div>");

    // Low stock.
    s.push_str(r#"<section id="low-stock"><h2>Low stock</h2>"#);
    if d.low_stock.is_empty() {
        s.push_str(r#"<p class="empty">No product is at or below its reorder point.</p>"#);
    } else {
        s.push_str(r#"<div class="scroll"><table class="stack"><thead><tr><th>SKU</th><th>Product</th><th class="num">Stock</th><th class="num">Reorder at</th><th class="num">Short by</th><th>Level</th></tr></thead><tbody>"#);
        for p in &d.low_stock {
            let _ = write!(
                s,
                r#"<tr><td data-label="SKU">{}</td><td data-label="Product">{}</td><td class="num" data-label="Stock">{}</td><td class="num" data-label="Reorder at">{}</td><td class="num" data-label="Short by">{}</td><td data-label="Level"><span class="tag {l}">{l}</span></td></tr>"#,
                esc(&p.sku),
                esc(&p.product_name),
                p.current_quantity,
                p.reorder_point,
                p.shortage,
                l = esc(&p.alert_level)
            );
        }
        s.push_str("</tbody></table></div>");
    }
    s.push_str("</section>");

    // Workflows and KPIs side by side.
    s.push_str(r#"<div class="grid2"><section id="workflows"><h2>Workflows</h2>"#);
    if d.workflows.is_empty() {
        s.push_str(r#"<p class="empty">No workflows recorded.</p>"#);
    } else {
        s.push_str(r#"<div class="scroll"><table class="stack"><thead><tr><th>Name</th><th>Status</th><th>Updated</th></tr></thead><tbody>"#);
        for w in &d.workflows {
            let details = w
                .details
                .as_deref()
                .filter(|t| !t.is_empty())
                .map_or_else(String::new, |t| {
                    format!(r#"<div class="details">{}</div>"#, esc(t))
                });
            let _ = write!(
                s,
                r#"<tr><td data-label="Name">{}{details}</td><td data-label="Status"><span class="tag {c}" data-meaning="{c}">{}</span></td><td data-label="Updated" class="when">{}<div class="details">version {}</div></td></tr>"#,
                esc(&w.name),
                esc(&w.status),
                esc(&words::when_text(&w.updated_at, now)),
                w.version,
                c = words::meaning(&w.status).class()
            );
        }
        s.push_str("</tbody></table></div>");
    }
    s.push_str(r#"</section><section id="kpis"><h2>Today's KPIs</h2>"#);
    match &d.kpi_today {
        Some(k) => {
            let _ = write!(
                s,
                r#"<table><tbody><tr><td>Orders today</td><td class="num">{}</td></tr><tr><td>Shipments sent</td><td class="num">{}</td></tr><tr><td>Pending uploads</td><td class="num">{}</td></tr><tr><td>System status</td><td class="num">{}</td></tr></tbody></table>"#,
                k.orders_today,
                k.shipments_sent,
                k.pending_uploads,
                esc(&k.system_status)
            );
        }
        None => {
            let last = d.kpi_latest.as_deref().map_or_else(String::new, |l| {
                format!(" (last: {})", words::day(l, now.date_naive()))
            });
            let _ = write!(
                s,
                r#"<p class="empty">No KPIs recorded today{}.</p>"#,
                esc(&last)
            );
        }
    }
    s.push_str(r#"</section></div>"#);
    s.push_str(r#"<section id="remotes"><h2>Remote proxies</h2>"#);
    if f.remotes.is_empty() {
        s.push_str(r#"<p class="empty">None configured.</p>"#);
    } else {
        s.push_str(r#"<div class="scroll"><table><thead><tr><th>Target</th><th>State</th><th class="num">Behind</th><th class="num">Lag</th><th>Last delivery</th><th>Last error</th></tr></thead><tbody>"#);
        for r in &f.remotes {
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td><span class="tag {c}">{w}</span></td><td class="num">{}</td><td class="num">{:.0} s</td><td>{}</td><td>{}</td></tr>"#,
                esc(&r.target),
                r.lag_rows,
                r.lag_seconds,
                esc(&r
                    .last_ok
                    .as_deref()
                    .map_or_else(|| "never".to_string(), |t| words::when_text(t, now))),
                esc(r.last_error.as_deref().unwrap_or("")),
                c = if r.up { "ok" } else { "fail" },
                w = if r.up { "up" } else { "down" }
            );
        }
        s.push_str("</tbody></table></div>");
        let _ = write!(
            s,
            r#"<p class="sub">{} changes wait in the outbox.</p>"#,
            f.outbox_rows
        );
    }
    s.push_str("</section>");

    // History.
    s.push_str(r#"<section id="charts"><h2>History</h2><div class="grid2">"#);
    s.push_str(&charts::line(
        "Database size, at each backup",
        &d.size_series,
        " MB",
    ));
    s.push_str(&charts::bars(
        "Movements per day, last 30 days",
        &d.per_day,
        "",
    ));
    s.push_str(&charts::bars("Backup sizes", &d.backup_sizes, " MB"));
    s.push_str("</div></section>");

    // This month.
    if let Some(m) = &d.month {
        let runs = |r: &crate::ops::report::Runs| {
            if r.failed > 0 {
                format!(
                    "{} ok, <strong class=\"why\">{} failed</strong>",
                    r.ok, r.failed
                )
            } else {
                format!("{} ok", r.ok)
            }
        };
        let growth = m.growth_bytes_per_day.map_or_else(
            || "not known yet (fewer than two backups this month)".to_string(),
            |g| format!("{} per day", mb(g.max(0.0) as u64)),
        );
        let busiest: Vec<String> = m
            .busiest_skus
            .iter()
            .map(|b| format!("{} ({})", esc(&b.sku), b.movements))
            .collect();
        let _ = write!(
            s,
            r#"<section id="month"><h2>This month ({})</h2><div class="scroll"><table><tbody><tr><td>Movements</td><td class="num">{}</td></tr><tr><td>Database growth</td><td class="num">{}</td></tr><tr><td>Backups</td><td class="num">{}</td></tr><tr><td>Restore drills</td><td class="num">{}</td></tr><tr><td>Daily / weekly maintenance</td><td class="num">{} / {}</td></tr><tr><td>Integrity checks</td><td class="num">{}</td></tr><tr><td>Busiest skus</td><td class="num">{}</td></tr></tbody></table></div><p class="sub">The whole review, with table and index sizes: <code>ora report monthly</code>.</p></section>"#,
            esc(&m.month),
            m.movements,
            esc(&growth),
            runs(&m.backups),
            runs(&m.drills),
            runs(&m.daily_maintenance),
            runs(&m.weekly_maintenance),
            runs(&m.integrity_checks),
            if busiest.is_empty() {
                "-".to_string()
            } else {
                busiest.join(", ")
            },
        );
    }

    // Backups and operations.
    s.push_str(r#"<div class="grid2"><section id="backups"><h2>Backups</h2>"#);
    if d.backups.is_empty() {
        s.push_str(r#"<p class="empty">No backups yet.</p>"#);
    } else {
        s.push_str(r#"<div class="scroll"><table class="stack"><thead><tr><th>Taken</th><th class="num">Size</th><th>Checksum</th></tr></thead><tbody>"#);
        for b in &d.backups {
            let _ = write!(
                s,
                r#"<tr><td data-label="Taken">{}<div class="details">{}</div></td><td class="num" data-label="Size">{}</td><td data-label="Checksum">{}</td></tr>"#,
                esc(&words::when(b.taken, now)),
                esc(&b.name),
                mb(b.bytes),
                if b.has_checksum { "yes" } else { "missing" }
            );
        }
        s.push_str("</tbody></table></div>");
    }
    s.push_str(r#"</section><section id="history"><h2>Maintenance history</h2>"#);
    if d.runs.is_empty() {
        s.push_str(r#"<p class="empty">Nothing has run yet.</p>"#);
    } else {
        s.push_str(r#"<div class="scroll"><table class="stack"><thead><tr><th>Operation</th><th>When</th><th>Result</th></tr></thead><tbody>"#);
        for (r, n) in grouped(&d.runs, HISTORY_ROWS) {
            let (cls, word) = match r.ok {
                Some(true) => ("ok", "ok"),
                Some(false) => ("fail", "failed"),
                None => ("run", "running"),
            };
            let times = if n > 1 {
                format!(r#" <span class="details">× {n}, latest shown</span>"#)
            } else {
                String::new()
            };
            let why = match (r.ok, failure(r)) {
                (Some(false), Some(w)) => format!(r#"<div class="why">{}</div>"#, esc(&w)),
                _ => String::new(),
            };
            let _ = write!(
                s,
                r#"<tr><td data-label="Operation">{}{times}{why}</td><td data-label="When" class="when">{}</td><td data-label="Result"><span class="tag {cls}">{word}</span></td></tr>"#,
                esc(&words::operation(&r.kind)),
                esc(&words::when_text(&r.started, now))
            );
        }
        s.push_str("</tbody></table></div>");
    }
    let _ = write!(
        s,
        r#"</section></div><footer id="generated">generated {} ({}) · reloads every minute · times are local, {} · <a href="/health">/health</a> · <a href="/metrics">/metrics</a></footer></main></body></html>"#,
        esc(&now.format("%Y-%m-%d %H:%M:%S").to_string()),
        esc(&words::zone(&now)),
        esc(&words::zone(&now)),
    );
    s
}
