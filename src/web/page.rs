//! `GET /`: the status page. One self-contained HTML document (inline CSS and SVG, no
//! JavaScript, no external assets; it reloads itself every minute) that leads with the
//! warehouse: what needs doing now, each line naming its products or workflows (linked to
//! them) with the next step; then the database's verdict, one line when all is well; then the
//! warehouse's lists (low stock, one line per product, collapsed beyond a few; workflows;
//! today's KPIs) and, after them, the database's own part (cards, remote proxies, charts, the
//! month, backups, maintenance history). It fits a 360 px phone to a 1920 px wall screen, in
//! light and dark, and prints with its cards whole. [`html`] is a pure function of
//! [`StatusData`] (whose `now` is its clock), built with `maud`: every value is escaped by
//! construction, and each section of the page is its own function.

use chrono::{DateTime, Local};
use maud::{html, Markup};

use super::charts;
use super::frame::{level_class, level_word, product_href, rich, verdict_pills, Frame};
use super::reply::Reply;
use super::server::AppState;
use super::status::{self, StatusData};
use crate::error::Result;
use crate::ops::health::Level;
use crate::ops::warehouse::Reason;
use crate::words;

/// The page, rendered now.
pub fn render(st: &AppState) -> Result<Reply> {
    Ok(Reply::html(html(&status::gather(st)?)))
}

/// Rows of the maintenance history table (after grouping repeats).
const HISTORY_ROWS: usize = 12;

/// Bytes for people: kB below a megabyte, MB above.
fn mb(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.0} kB", (bytes as f64 / 1e3).ceil())
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// Low-stock rows shown before "show all".
const LOW_SHOWN: usize = 8;

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

/// The whole document.
pub fn html(d: &StatusData) -> String {
    let h = &d.health;
    let w = &d.warehouse;
    let house_word = match (w.level, w.problems()) {
        (Level::Ok, _) => "ALL GOOD".to_string(),
        (_, 1) => "1 NEEDS ATTENTION".to_string(),
        (_, n) => format!("{n} NEED ATTENTION"),
    };
    let standby = d
        .role_line
        .as_ref()
        .is_some_and(|(l, _)| l.starts_with("STANDBY"));
    let verdicts = verdict_pills(w.level, &house_word, h.verdict);
    let main = html! {
        @if let Some((line, level)) = &d.role_line {
            p id="role" class={"verdict " (level_class(*level))} { (rich(line)) }
        }
        @if let Some(line) = &d.plain_http {
            p id="plain-http" class={"verdict " (level_class(Level::Warn))} { (rich(line)) }
        }
        (todo(d))
        (database_line(d))
        div.grid2 { (low_stock(d)) (kpis(d)) }
        section id="shift" {
            h2 { "The last 30 days" }
            div.grid2 {
                (charts::pairs("Units received and shipped per day", &d.flow, ("received", "shipped")))
                (charts::pairs("Orders and shipments sent per day (KPIs)", &d.kpi_history, ("orders", "shipments sent")))
            }
        }
        (workflows(d))
        div id="admin" {
            h2.part { "The database" }
            (cards(d))
            (remotes(d))
            section id="charts" {
                h2 { "History" }
                div.grid2 {
                    (charts::line("Database size, at each backup", &d.size_series, " MB"))
                    (charts::bars("Movements per day, last 30 days", &d.per_day, ""))
                    (charts::bars("Backup sizes", &d.backup_sizes, " MB"))
                }
            }
            (month(d))
            div.grid2 { (backups(d)) (history(d)) }
        }
    };
    // The tab and its icon carry the worse of the two verdicts: a tab in the background still
    // says when either the database or the warehouse needs someone.
    Frame {
        title: "",
        worst: h.verdict.max(w.level),
        role: if standby { "STANDBY — " } else { "" },
        site: d.site.as_deref().unwrap_or(&d.database),
        verdicts,
        refresh: true,
        query: "",
        now: d.now,
    }
    .render(main)
}

/// Where a reason's subject links to: a product's page, or the workflow's row.
fn subject_href(kind: &str, key: &str) -> String {
    if kind == "product" {
        product_href(key)
    } else {
        format!("#wf-{}", super::frame::percent(key))
    }
}

/// What needs doing now: the warehouse's reasons, worst first, each with its subjects and
/// the next step.
fn todo(d: &StatusData) -> Markup {
    let w = &d.warehouse;
    html! {
        section id="attention" class={"todo " (level_class(w.level))} {
            h2 { "Needs doing now" }
            @if w.reasons.is_empty() {
                p.ok { "Nothing: stock above reorder points, no failed or stuck workflow, KPIs current and green." }
            }
            @for r in &w.reasons {
                (reason(r))
            }
        }
    }
}

fn reason(r: &Reason) -> Markup {
    let more = r.count.saturating_sub(r.subjects.len());
    let all = if r.code.starts_with("stock_") {
        "#low-stock"
    } else {
        "#workflows"
    };
    html! {
        div class={"reason " (level_class(r.level))} data-code=(r.code) {
            p.headline { span class={"tag " (level_class(r.level))} { (level_word(r.level)) } " " strong { (r.headline) } }
            @if !r.subjects.is_empty() {
                ul.subjects {
                    @for s in &r.subjects {
                        li { a href=(subject_href(s.kind, &s.key)) { (s.key) } " " span.details { (s.detail) } }
                    }
                    @if more > 0 {
                        li { a href=(all) { "and " (more) " more" } }
                    }
                }
            }
            p.next { "Next: " (rich(&r.next)) }
        }
    }
}

/// The database's verdict: one line when all is well, its findings otherwise.
fn database_line(d: &StatusData) -> Markup {
    let h = &d.health;
    let bad: Vec<_> = h.findings.iter().filter(|f| f.level != Level::Ok).collect();
    let checked: Vec<&str> = h.findings.iter().map(|f| f.check).collect();
    html! {
        @if bad.is_empty() {
            p id="findings" class="dbline" {
                strong { "Database: all good" } " — " (checked.join(", ")) " checked; details below."
            }
        } @else {
            ul.reasons id="findings" {
                h2 { "Database" }
                @for x in &bad {
                    li class=(level_class(x.level)) { strong { (x.check) } ": " (rich(&x.message)) }
                }
            }
        }
    }
}

/// "3 h ago" for an age in hours, on the page's clock.
fn ago(now: DateTime<Local>, hours: f64) -> String {
    let secs = (hours * 3600.0).clamp(0.0, 1e10) as i64;
    words::when(
        now.with_timezone(&chrono::Utc) - chrono::Duration::seconds(secs),
        now,
    )
}

/// The worst level the database's findings give these checks (a card's colour).
fn check_level(d: &StatusData, checks: &[&str]) -> Level {
    d.health
        .findings
        .iter()
        .filter(|f| checks.contains(&f.check))
        .map(|f| f.level)
        .max()
        .unwrap_or(Level::Ok)
}

/// The first screen's cards: the database, the last backup, maintenance, the replica, the
/// ledger.
fn cards(d: &StatusData) -> Markup {
    let f = &d.health.facts;
    html! {
        div.cards {
            div id="database" class={"card " (level_class(check_level(d, &["file", "integrity"])))} {
                h2 { "Database" }
                div.big { (mb(f.file.size_bytes)) }
                div.sub { "WAL " (mb(f.file.wal_bytes)) " · " (format!("{:.1}", f.file.free_percent)) "% free pages · " (f.file.page_count) " pages" }
                div.sub { "integrity: " (f.check_kind.replace('_', " ")) " — " (f.check) }
            }
            div id="backups-card" class={"card " (level_class(check_level(d, &["backup", "backup_space"])))} {
                h2 { "Last backup" }
                @match &f.last_backup {
                    _ if f.backups_missing.is_some() => {
                        div.big { "MISSING" }
                        div.sub { (rich(f.backups_missing.as_deref().unwrap_or_default())) }
                    }
                    // A day old or more: its age in hours, as the finding says it.
                    Some(b) if b.age_hours >= 24.0 => {
                        div.big { (format!("{:.0} h old", b.age_hours)) }
                        div.sub { (ago(d.now, b.age_hours)) " · " (mb(b.bytes)) " · " (match b.verified {
                            Some(true) => "restore drill passed",
                            Some(false) => "restore drill FAILED",
                            None => "not drilled yet",
                        }) }
                    }
                    Some(b) => {
                        div.big { (ago(d.now, b.age_hours)) }
                        div.sub { (mb(b.bytes)) " · " (match b.verified {
                            Some(true) => "restore drill passed",
                            Some(false) => "restore drill FAILED",
                            None => "not drilled yet",
                        }) }
                    }
                    None => { div.big { "none yet" } div.sub { "run " code { "ora backup" } } }
                }
            }
            div id="maintenance" class={"card " (level_class(check_level(d, &["maintenance"])))} {
                h2 { "Maintenance" }
                @match &f.last_maintenance {
                    Some(m) => {
                        div.big { (ago(d.now, m.age_hours)) }
                        div.sub { (crate::file::oplog::describe(&m.kind)) " · " (if m.ok { "ok" } else { "FAILED" }) }
                    }
                    None => { div.big { "never" } div.sub { "run " code { "ora maintain daily" } } }
                }
            }
            (replica_card(d))
            div.card id="ledger" {
                h2 { "Ledger" }
                div.big { (d.movements) " movements" }
                div.sub { (d.products) " products · writer: " (d.writer.0) " queued, " (d.writer.1) " commits, " (d.writer.3) " refused · up " (d.uptime_seconds / 60) " min" }
            }
        }
    }
}

/// The replica's card: none (a copy says so), refused, holding another database's commits,
/// not reachable, up to date or behind.
fn replica_card(d: &StatusData) -> Markup {
    let Some(r) = &d.health.facts.replica else {
        return html! {};
    };
    if !r.enabled {
        return html! {
            div.card id="replica" {
                h2 { "Replica" }
                div.big { "none" }
                div.sub { "this file is " (r.copy.as_deref().unwrap_or("without a replica")) }
            }
        };
    }
    let now = d.now;
    let point = |p: &Option<String>| {
        p.as_deref()
            .map_or_else(|| "-".to_string(), |t| words::when_text(t, now))
    };
    html! {
        div id="replica" class={"card " (level_class(check_level(d, &["replica"])))} {
            h2 { "Replica (" (r.mode) ")" }
            @match (&r.problem, r.lag_commits) {
                (Some(p), _) if r.refused => { div.big { "REFUSED: NOT THE OWNER" } div.sub { (p) } }
                _ if r.foreign_tail.is_some() => {
                    div.big { "HOLDS ANOTHER DATABASE'S COMMITS" }
                    div.sub { (r.foreign_tail.as_deref().unwrap_or_default()) }
                }
                (Some(p), _) => {
                    div.big { (match r.condition {
                        Some("missing") => "DIRECTORY MISSING",
                        Some("disk_full") => "REPLICA DISK FULL",
                        Some("read_only") => "NOT WRITABLE",
                        Some("damaged") => "DAMAGED",
                        _ => "NOT REACHABLE",
                    }) }
                    div.sub { (rich(p)) }
                }
                (None, 0) => { div.big { "up to date" } }
                (None, n) => { div.big { (n) " behind" } div.sub { (format!("{:.1}", r.lag_seconds)) " s" } }
            }
            @if let Some(n) = r.refusals.first() {
                div.sub { "refused: " (n.place.describe()) " tried to write here at " (words::when_text(&n.at, now)) }
            }
            div.sub {
                (r.dir) " · restorable from " (point(&r.oldest_point)) " to " (point(&r.newest_point)) " · check: "
                (match r.last_verify_ok {
                    Some(true) => "passed",
                    Some(false) => "FAILED",
                    None => "never run",
                })
            }
        }
    }
}

/// Low stock, one line per product, the first few shown and the rest behind "show all"
/// (a `details` element: no JavaScript).
fn low_stock(d: &StatusData) -> Markup {
    let w = &d.warehouse;
    let all: Vec<&crate::store::products::Product> = w.critical.iter().chain(&w.low).collect();
    let line = |p: &crate::store::products::Product| {
        html! {
            li class={"stockline " (p.alert_level)} {
                a.sku href=(product_href(&p.sku)) { (p.sku) }
                span.name { (p.product_name) }
                span.qty { strong { (p.current_quantity) } " / " (p.reorder_point) }
                span class={"tag " (p.alert_level)} { (p.alert_level) }
            }
        }
    };
    html! {
        section id="low-stock" {
            h2 { "Low stock" @if !all.is_empty() { " (" (all.len()) ")" } }
            @if all.is_empty() {
                p.empty { "No product is at or below its reorder point." }
            } @else {
                p.sub { "SKU · product · stock / reorder at" }
                ul.stock { @for p in all.iter().take(LOW_SHOWN) { (line(p)) } }
                @if all.len() > LOW_SHOWN {
                    details {
                        summary { "Show all " (all.len()) }
                        ul.stock { @for p in all.iter().skip(LOW_SHOWN) { (line(p)) } }
                    }
                }
                p.sub { a href="/api/inventory?low=1&format=csv" { "Download as CSV" } }
            }
        }
    }
}

fn workflows(d: &StatusData) -> Markup {
    html! {
        section id="workflows" {
            h2 { "Workflows" }
            @if d.warehouse.workflows.is_empty() {
                p.empty { "No workflows recorded." }
            } @else {
                div.scroll { table.stack {
                    thead { tr { th { "Name" } th { "Status" } th { "Updated" } } }
                    tbody {
                        @for w in &d.warehouse.workflows {
                            @let c = words::meaning(&w.status).class();
                            tr id={"wf-" (super::frame::percent(&w.name))} {
                                td data-label="Name" {
                                    (w.name)
                                    @if let Some(t) = w.details.as_deref().filter(|t| !t.is_empty()) {
                                        div.details { (t) }
                                    }
                                }
                                td data-label="Status" { span class={"tag " (c)} data-meaning=(c) { (w.status) } }
                                td.when data-label="Updated" {
                                    (words::when_text(&w.updated_at, d.now))
                                    div.details { "version " (w.version) }
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn kpis(d: &StatusData) -> Markup {
    html! {
        section id="kpis" {
            h2 { "Today's KPIs" }
            @match &d.kpi_today {
                Some(k) => {
                    table { tbody {
                        tr { td { "Orders today" } td.num { (k.orders_today) } }
                        tr { td { "Shipments sent" } td.num { (k.shipments_sent) } }
                        tr { td { "Pending uploads" } td.num { (k.pending_uploads) } }
                        tr { td { "System status" } td.num { (k.system_status) } }
                    } }
                }
                None => {
                    p.empty {
                        "No KPIs recorded today"
                        @if let Some(k) = d.warehouse.kpi_latest.as_ref() {
                            " (last: " (words::day(&k.snapshot_date, d.now.date_naive())) ")"
                        }
                        "."
                    }
                }
            }
        }
    }
}

fn remotes(d: &StatusData) -> Markup {
    let f = &d.health.facts;
    html! {
        section id="remotes" {
            h2 { "Remote proxies" }
            @if f.remotes.is_empty() {
                p.empty { "None configured." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Target" } th { "State" } th.num { "Behind" } th.num { "Lag" } th { "Last delivery" } th { "Last error" } } }
                    tbody {
                        @for r in &f.remotes {
                            tr {
                                td { (r.target) }
                                td { span class={"tag " (if r.up { "ok" } else { "fail" })} { (if r.up { "up" } else { "down" }) } }
                                td.num { (r.lag_rows) }
                                td.num { (format!("{:.0}", r.lag_seconds)) " s" }
                                td { (r.last_ok.as_deref().map_or_else(|| "never".to_string(), |t| words::when_text(t, d.now))) }
                                td { (r.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                } }
                p.sub { (f.outbox_rows) " changes wait in the outbox." }
            }
        }
    }
}

/// "2 ok", or "2 ok, 1 failed" with the failures marked.
fn runs(r: &crate::file::oplog::Runs) -> Markup {
    html! {
        (r.ok) " ok"
        @if r.failed > 0 { ", " strong.why { (r.failed) " failed" } }
    }
}

fn month(d: &StatusData) -> Markup {
    let Some(m) = &d.month else {
        return html! {};
    };
    let growth = m.growth_bytes_per_day.map_or_else(
        || "not known yet (this month's backups span less than a week)".to_string(),
        |g| format!("{} per day", mb(g.max(0.0) as u64)),
    );
    let busiest: Vec<String> = m
        .busiest_skus
        .iter()
        .map(|b| format!("{} ({})", b.sku, b.movements))
        .collect();
    html! {
        section id="month" {
            h2 { "This month (" (m.month) ")" }
            div.scroll { table { tbody {
                tr { td { "Movements" } td.num { (m.movements) } }
                tr { td { "Database growth" } td.num { (growth) } }
                tr { td { "Backups" } td.num { (runs(&m.backups)) } }
                tr { td { "Restore drills" } td.num { (runs(&m.drills)) } }
                tr { td { "Daily / weekly maintenance" } td.num { (runs(&m.daily_maintenance)) " / " (runs(&m.weekly_maintenance)) } }
                tr { td { "Integrity checks" } td.num { (runs(&m.integrity_checks)) } }
                tr { td { "Busiest skus" } td.num { (if busiest.is_empty() { "-".to_string() } else { busiest.join(", ") }) } }
            } } }
            p.sub { "The whole review, with table and index sizes: " code { "ora report monthly" } "." }
        }
    }
}

fn backups(d: &StatusData) -> Markup {
    html! {
        section id="backups" {
            h2 { "Backups" }
            @if d.backups.is_empty() {
                p.empty { "No backups yet." }
            } @else {
                div.scroll { table.stack {
                    thead { tr { th { "Taken" } th.num { "Size" } th { "Checksum" } } }
                    tbody {
                        @for b in &d.backups {
                            tr {
                                td data-label="Taken" { (words::when(b.taken, d.now)) div.details { (b.name) } }
                                td.num data-label="Size" { (mb(b.bytes)) }
                                td data-label="Checksum" { (if b.has_checksum { "yes" } else { "missing" }) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn history(d: &StatusData) -> Markup {
    html! {
        section id="history" {
            h2 { "Maintenance history" }
            @if d.runs.is_empty() {
                p.empty { "Nothing has run yet." }
            } @else {
                div.scroll { table.stack {
                    thead { tr { th { "Operation" } th { "When" } th { "Result" } } }
                    tbody {
                        @for (r, n) in grouped(&d.runs, HISTORY_ROWS) {
                            @let (cls, word) = match r.ok {
                                Some(true) => ("ok", "ok"),
                                Some(false) => ("fail", "failed"),
                                None => ("run", "running"),
                            };
                            tr {
                                td data-label="Operation" {
                                    (crate::file::oplog::describe(&r.kind))
                                    @if n > 1 { " " span.details { "× " (n) ", latest shown" } }
                                    @if let (Some(false), Some(w)) = (r.ok, failure(r)) { div.why { (w) } }
                                }
                                td.when data-label="When" { (words::when_text(&r.started, d.now)) }
                                td data-label="Result" { span class={"tag " (cls)} { (word) } }
                            }
                        }
                    }
                } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::health::{Facts, Finding, HealthReport};
    use crate::ops::warehouse::{self, Rules};

    fn lamp() -> crate::store::products::Product {
        crate::store::products::Product {
            sku: "A-1".into(),
            product_name: "<b>Lamp</b>".into(),
            current_quantity: 0,
            reorder_point: 5,
            alert_level: "critical".into(),
            last_updated: "x".into(),
            shortage: 5,
        }
    }

    fn dock() -> crate::store::workflows::Workflow {
        crate::store::workflows::Workflow {
            name: "<script>x</script>".into(),
            status: "failed".into(),
            details: Some("printer \"jammed\"".into()),
            version: 2,
            updated_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    /// The warehouse as `assess` would make it of these products and workflows.
    fn house(
        critical: Vec<crate::store::products::Product>,
        workflows: Vec<crate::store::workflows::Workflow>,
        now: chrono::DateTime<chrono::Local>,
    ) -> warehouse::Assessment {
        let (level, reasons) = warehouse::verdict(
            &Rules::default(),
            &warehouse::Inputs {
                critical: &critical,
                low: &[],
                workflows: &workflows,
                kpi_latest: None,
                outside: &[],
                outside_more: 0,
                now,
            },
        );
        warehouse::Assessment {
            level,
            reasons,
            critical,
            low: Vec::new(),
            workflows,
            kpi_latest: None,
            outside: Vec::new(),
            kpi_stale: -1,
            kpi_status: -1,
        }
    }

    fn data() -> StatusData {
        let now = chrono::Local::now();
        StatusData {
            role_line: None,
            plain_http: None,
            database: "/var/lib/ora/<ora>.db".into(),
            site: None,
            health: HealthReport {
                verdict: Level::Warn,
                findings: vec![Finding {
                    level: Level::Warn,
                    check: "backup",
                    message: "no backup yet & <nothing> drilled: run `ora backup`".into(),
                }],
                database: "x".into(),
                facts: Facts::default(),
                seconds: 0.0,
            },
            products: 1,
            movements: 2,
            warehouse: house(vec![lamp()], vec![dock()], now),
            month: None,
            now,
            kpi_today: None,
            backups: Vec::new(),
            runs: Vec::new(),
            size_series: Vec::new(),
            per_day: Vec::new(),
            flow: Vec::new(),
            kpi_history: Vec::new(),
            backup_sizes: Vec::new(),
            writer: (0, 0, 0, 0),
            uptime_seconds: 0,
        }
    }

    // Every value from the database is escaped where it lands, whatever section shows it;
    // a message's `code` is code.
    #[test]
    fn values_are_escaped_by_construction() {
        let page = html(&data());
        // (The page's own search script is the one `<script>` it may hold.)
        assert_eq!(page.matches("<script").count(), 1);
        for raw in ["<script>x", "<b>Lamp", "<nothing>", "<ora>", "`ora backup`"] {
            assert!(!page.contains(raw), "{raw} reached the page unescaped");
        }
        for escaped in [
            "&lt;script&gt;x&lt;/script&gt;",
            "&lt;b&gt;Lamp&lt;/b&gt;",
            "no backup yet &amp; &lt;nothing&gt; drilled",
            "printer &quot;jammed&quot;",
            "<code>ora backup</code>",
        ] {
            assert!(page.contains(escaped), "{escaped} missing");
        }
    }

    // The tab title and icon take the worse verdict: a database that only warns beside a
    // warehouse with stock at zero reads PROBLEM, red.
    #[test]
    fn the_tab_carries_the_worse_verdict() {
        let mut d = data();
        let page = html(&d);
        assert!(page.contains("<title>ora — PROBLEM</title>"), "{page}");
        assert!(page.contains("%23c62828"));
        d.warehouse = house(Vec::new(), Vec::new(), d.now);
        let page = html(&d);
        assert!(page.contains("<title>ora — ATTENTION</title>"));
        assert!(page.contains("%23b35900"));
    }

    // The page leads with what needs doing, each product linked to its page, before the
    // database; counts count problems; a copy says it has no replica.
    #[test]
    fn the_sections_say_what_the_data_says() {
        let mut d = data();
        let page = html(&d);
        let todo = page.find(r#"id="attention""#).unwrap();
        let db = page.find(r#"id="findings""#).unwrap();
        let admin = page.find(r#"id="admin""#).unwrap();
        assert!(todo < db && db < admin, "warehouse first");
        assert!(
            page.contains(r#"<a href="/products/A-1">A-1</a>"#),
            "{page}"
        );
        assert!(page.contains("Warehouse: 2 NEED ATTENTION"));
        d.health.facts.replica = Some(crate::replica::status::ReplicaReport {
            copy: Some("a copy made by `ora restore`".into()),
            ..Default::default()
        });
        let card = replica_card(&d).into_string();
        assert!(card.contains("none") && card.contains("this file is a copy made by"));
        let r = runs(&crate::file::oplog::Runs { ok: 2, failed: 1 }).into_string();
        assert_eq!(r, r#"2 ok, <strong class="why">1 failed</strong>"#);
    }
}
