//! `GET /`: the status page. One self-contained HTML document (inline CSS and SVG, no
//! JavaScript, no external assets) whose first screen answers "is everything all right?":
//! a red/amber/green verdict with its reasons, then the database, backups, maintenance and
//! writer at a glance, low stock, workflows, today's KPIs, history charts and the latest
//! operations. [`html`] is a pure function of [`StatusData`].

use std::fmt::Write as _;

use super::charts::{self, esc};
use super::reply::Reply;
use super::server::AppState;
use super::status::{self, StatusData};
use crate::error::Result;
use crate::ops::health::Level;

/// The page, rendered now.
pub fn render(st: &AppState) -> Result<Reply> {
    Ok(Reply::html(html(&status::gather(st)?)))
}

const CSS: &str = r#"
:root{--ok:#1a7f37;--warn:#b7791f;--fail:#c62828;--ink:#1f2933;--muted:#66788a;--line:#e3e8ee;--bg:#f6f8fa}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{display:flex;align-items:center;gap:16px;padding:14px 24px;background:#fff;border-bottom:1px solid var(--line)}
header h1{font-size:20px;margin:0}header .db{color:var(--muted);font-size:13px}
.verdict{margin-left:auto;padding:6px 16px;border-radius:999px;color:#fff;font-weight:700;letter-spacing:.04em}
.verdict.ok{background:var(--ok)}.verdict.warn{background:var(--warn)}.verdict.fail{background:var(--fail)}
main{max-width:1180px;margin:0 auto;padding:18px 24px 40px}
.reasons{margin:0 0 16px;padding:12px 16px;border-radius:8px;background:#fff;border:1px solid var(--line)}
.reasons li{margin:2px 0}.reasons .fail{color:var(--fail)}.reasons .warn{color:var(--warn)}.reasons .ok{color:var(--ok)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(250px,1fr));gap:14px;margin-bottom:18px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 16px}
.card h2,section h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);margin:0 0 8px}
.big{font-size:26px;font-weight:650}.sub{color:var(--muted);font-size:13px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin-bottom:18px}
table{border-collapse:collapse;width:100%;font-size:14px}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.tag{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600;color:#fff}
.tag.critical,.tag.fail,.tag.failed{background:var(--fail)}.tag.low,.tag.warn{background:var(--warn)}.tag.ok,.tag.done{background:var(--ok)}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px}
figure.chart{margin:0}figcaption{font-size:13px;color:var(--muted);margin-bottom:4px}
svg{width:100%;height:auto}svg .axis{stroke:#9aa5b1;stroke-width:1}svg .grid{stroke:var(--line);stroke-dasharray:3 3}
svg .line{fill:none;stroke:#2563eb;stroke-width:2}svg .dot{fill:#2563eb}svg .bar{fill:#60a5fa}svg .tick{font-size:11px;fill:var(--muted)}
.nodata{color:var(--muted);padding:30px 0;text-align:center;border:1px dashed var(--line);border-radius:6px}
.empty{color:var(--muted)}footer{color:var(--muted);font-size:12px;text-align:center}
"#;

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

fn age(hours: f64) -> String {
    if hours < 1.0 {
        format!("{:.0} min ago", hours * 60.0)
    } else if hours < 48.0 {
        format!("{hours:.1} h ago")
    } else {
        format!("{:.0} days ago", hours / 24.0)
    }
}

/// The whole document.
pub fn html(d: &StatusData) -> String {
    let h = &d.health;
    let f = &h.facts;
    let verdict = match h.verdict {
        Level::Ok => "ALL GOOD",
        Level::Warn => "ATTENTION",
        Level::Fail => "PROBLEM",
    };
    let mut s = String::with_capacity(32 * 1024);
    let _ = write!(
        s,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>ora — {verdict}</title><style>{CSS}</style></head><body>"#
    );
    let _ = write!(
        s,
        r#"<header><h1>ora</h1><span class="db">{db}</span><span id="verdict" class="verdict {cls}" data-verdict="{cls}">{verdict}</span></header><main>"#,
        db = esc(&d.database),
        cls = level_class(h.verdict)
    );
    s.push_str(r#"<ul class="reasons" id="findings">"#);
    for x in &h.findings {
        let _ = write!(
            s,
            r#"<li class="{}"><strong>{}</strong>: {}</li>"#,
            level_class(x.level),
            esc(x.check),
            esc(&x.message)
        );
    }
    s.push_str("</ul>");

    // The first screen: four cards.
    s.push_str(r#"<div class="cards">"#);
    let _ = write!(
        s,
        r#"<div class="card" id="database"><h2>Database</h2><div class="big">{}</div><div class="sub">WAL {} · {:.1}% free pages · {} pages</div><div class="sub">integrity: {} — {}</div></div>"#,
        mb(f.file.size_bytes),
        mb(f.file.wal_bytes),
        f.file.free_percent,
        f.file.page_count,
        esc(&f.check_kind),
        esc(&f.check)
    );
    let backup_card = match &f.last_backup {
        Some(b) => format!(
            r#"<div class="big">{}</div><div class="sub">{} · {}</div>"#,
            esc(&age(b.age_hours)),
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
            esc(&age(m.age_hours)),
            esc(&m.kind),
            if m.ok { "ok" } else { "FAILED" }
        ),
        None => r#"<div class="big">never</div><div class="sub">run <code>ora maintain daily</code></div>"#.to_string(),
    };
    let _ = write!(
        s,
        r#"<div class="card" id="maintenance"><h2>Maintenance</h2>{maint}</div>"#
    );
    if let Some(r) = &f.replica {
        let state = match (&r.problem, r.lag_commits) {
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
        let _ = write!(
            s,
            r#"<div class="card" id="replica"><h2>Replica ({})</h2>{state}<div class="sub">{} · restorable {} to {} · verify: {}</div></div>"#,
            esc(&r.mode),
            esc(&r.dir),
            esc(r.oldest_point.as_deref().unwrap_or("-")),
            esc(r.newest_point.as_deref().unwrap_or("-")),
            match r.last_verify_ok {
                Some(true) => "passed",
                Some(false) => "FAILED",
                None => "never",
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
        s.push_str(r#"<table><thead><tr><th>SKU</th><th>Product</th><th class="num">Stock</th><th class="num">Reorder at</th><th>Level</th></tr></thead><tbody>"#);
        for p in &d.low_stock {
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td><span class="tag {l}">{l}</span></td></tr>"#,
                esc(&p.sku),
                esc(&p.product_name),
                p.current_quantity,
                p.reorder_point,
                l = esc(&p.alert_level)
            );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>");

    // Workflows and KPIs side by side.
    s.push_str(r#"<div class="grid2"><section id="workflows"><h2>Workflows</h2>"#);
    if d.workflows.is_empty() {
        s.push_str(r#"<p class="empty">No workflows recorded.</p>"#);
    } else {
        s.push_str(r#"<table><thead><tr><th>Name</th><th>Status</th><th class="num">Version</th><th>Updated</th></tr></thead><tbody>"#);
        for w in &d.workflows {
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td><span class="tag {c}">{}</span></td><td class="num">{}</td><td>{}</td></tr>"#,
                esc(&w.name),
                esc(&w.status),
                w.version,
                esc(&w.updated_at),
                c = esc(&w.status.to_ascii_lowercase())
            );
        }
        s.push_str("</tbody></table>");
    }
    let _ = write!(
        s,
        r#"</section><section id="kpis"><h2>Today's KPIs ({})</h2>"#,
        esc(&d.today)
    );
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
        None => s.push_str(r#"<p class="empty">No KPIs recorded today.</p>"#),
    }
    s.push_str(r#"</section></div>"#);
    s.push_str(r#"<section id="remotes"><h2>Remote proxies</h2>"#);
    if f.remotes.is_empty() {
        s.push_str(r#"<p class="empty">None configured.</p>"#);
    } else {
        s.push_str(r#"<table><thead><tr><th>Target</th><th>State</th><th class="num">Behind</th><th class="num">Lag</th><th>Last delivery</th><th>Last error</th></tr></thead><tbody>"#);
        for r in &f.remotes {
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td><span class="tag {c}">{w}</span></td><td class="num">{}</td><td class="num">{:.0} s</td><td>{}</td><td>{}</td></tr>"#,
                esc(&r.target),
                r.lag_rows,
                r.lag_seconds,
                esc(r.last_ok.as_deref().unwrap_or("never")),
                esc(r.last_error.as_deref().unwrap_or("")),
                c = if r.up { "ok" } else { "fail" },
                w = if r.up { "up" } else { "down" }
            );
        }
        s.push_str("</tbody></table>");
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
        "Database size (MB), at each backup",
        &d.size_series,
        " MB",
    ));
    s.push_str(&charts::bars(
        "Movements per day, last 30 days",
        &d.per_day,
        "",
    ));
    s.push_str(&charts::bars("Backup sizes (MB)", &d.backup_sizes, " MB"));
    s.push_str("</div></section>");

    // Backups and operations.
    s.push_str(r#"<div class="grid2"><section id="backups"><h2>Backups</h2>"#);
    if d.backups.is_empty() {
        s.push_str(r#"<p class="empty">No backups yet.</p>"#);
    } else {
        s.push_str(r#"<table><thead><tr><th>File</th><th class="num">Size</th><th>Checksum</th></tr></thead><tbody>"#);
        for b in &d.backups {
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                esc(&b.name),
                mb(b.bytes),
                if b.has_checksum { "yes" } else { "missing" }
            );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str(r#"</section><section id="history"><h2>Maintenance history</h2>"#);
    if d.runs.is_empty() {
        s.push_str(r#"<p class="empty">Nothing has run yet.</p>"#);
    } else {
        s.push_str(r#"<table><thead><tr><th>Operation</th><th>Started (UTC)</th><th>Result</th></tr></thead><tbody>"#);
        for r in &d.runs {
            let (cls, word) = match r.ok {
                Some(true) => ("ok", "ok"),
                Some(false) => ("failed", "failed"),
                None => ("warn", "running"),
            };
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td>{}</td><td><span class="tag {cls}">{word}</span></td></tr>"#,
                esc(&r.kind),
                esc(r.started.get(..19).unwrap_or(&r.started))
            );
        }
        s.push_str("</tbody></table>");
    }
    let _ = write!(
        s,
        r#"</section></div><footer>generated {} · <a href="/health">/health</a> · <a href="/metrics">/metrics</a></footer></main></body></html>"#,
        esc(&d.generated)
    );
    s
}
