//! `GET /metrics`: Prometheus text format (version 0.0.4). Database and WAL size, free pages,
//! last backup age and size, last maintenance age, the last integrity result, movements
//! recorded, the warehouse's verdict (critical and low products, failed workflows, stale
//! KPIs), the writer's queue depth and commit latency histogram, HTTP requests by route and
//! status. The rendering is a pure function of a snapshot.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::reply::Reply;
use super::server::AppState;
use crate::error::Result;
use crate::store::Histogram;

/// Writes one metric family: HELP, TYPE and samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &str, v: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
        }
    }
    fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.family(name, "gauge", help);
        self.sample(name, "", v);
    }
    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let (buckets, count, sum) = h.snapshot();
        for (le, n) in buckets {
            self.sample(&format!("{name}_bucket"), &format!("le=\"{le}\""), n as f64);
        }
        self.sample(&format!("{name}_bucket"), "le=\"+Inf\"", count as f64);
        self.sample(&format!("{name}_sum"), "", sum);
        self.sample(&format!("{name}_count"), "", count as f64);
    }
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The /metrics answer: the database file, backups and maintenance, the replica, the remote
/// targets, the ledger and the writer, and the HTTP server, one family after another.
pub fn reply(st: &AppState) -> Result<Reply> {
    let h = super::health::report(st);
    let mut o = Out(String::with_capacity(4096));
    file_metrics(&mut o, &h);
    backup_metrics(&mut o, &h.facts);
    replica_metrics(&mut o, &h.facts);
    standby_metrics(&mut o, st);
    remote_metrics(&mut o, &h.facts);
    let movements = crate::store::ledger::last_id(&*st.store.read()?)?;
    o.family(
        "ora_movements_total",
        "counter",
        "Ledger movements recorded.",
    );
    o.sample("ora_movements_total", "", movements as f64);
    if let Some(w) = &h.facts.warehouse {
        warehouse_metrics(&mut o, w);
    }
    writer_metrics(&mut o, st);
    http_metrics(&mut o, st);
    Ok(Reply::text(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        o.0,
    ))
}

/// The warehouse's verdict (apart from the database's) and what it is made of.
fn warehouse_metrics(o: &mut Out, w: &crate::ops::warehouse::Assessment) {
    o.gauge(
        "ora_warehouse_verdict",
        "The warehouse's verdict on the page: 0 all good, 1 needs attention, 2 act now (each rule's level is set in [warehouse]).",
        match w.level {
            crate::ops::health::Level::Ok => 0.0,
            crate::ops::health::Level::Warn => 1.0,
            crate::ops::health::Level::Fail => 2.0,
        },
    );
    o.gauge(
        "ora_warehouse_problems",
        "Problems behind the warehouse verdict: products and workflows, each once per kind of problem.",
        w.problems() as f64,
    );
    o.gauge(
        "ora_products_critical",
        "Products at or below zero.",
        w.critical.len() as f64,
    );
    o.gauge(
        "ora_products_low",
        "Products above zero and at or below their reorder point.",
        w.low.len() as f64,
    );
    o.gauge(
        "ora_workflows_failed",
        "Workflows whose status means failed.",
        w.reason("workflow_failed").map_or(0, |r| r.count) as f64,
    );
    o.gauge(
        "ora_workflows_stuck",
        "Workflows running or waiting, unchanged for longer than [warehouse] stuck_after_hours.",
        w.reason("workflow_stuck").map_or(0, |r| r.count) as f64,
    );
    o.family(
        "ora_workflows",
        "gauge",
        "Workflows by what their status means (done, running, waiting, failed, other).",
    );
    for (m, n) in w.workflows_by_meaning() {
        o.sample(
            "ora_workflows",
            &format!("status=\"{}\"", meaning_label(m)),
            n as f64,
        );
    }
    o.gauge(
        "ora_kpis_stale",
        "1 when today's KPIs are missing by the [warehouse] rules (after kpis_due_hour, or none since before yesterday), 0 when recorded, -1 when never recorded.",
        f64::from(w.kpi_stale),
    );
    o.gauge(
        "ora_kpi_status",
        "The newest KPIs' system status: 0 green, 1 amber or other, 2 red or failed, -1 none reported (no KPIs, or status unknown).",
        f64::from(w.kpi_status),
    );
    o.gauge(
        "ora_stock_mismatches",
        "Products whose stock was changed outside ora and disagrees with their ledger.",
        w.outside.len() as f64,
    );
}

fn meaning_label(m: crate::words::Meaning) -> &'static str {
    use crate::words::Meaning;
    match m {
        Meaning::Done => "done",
        Meaning::Running => "running",
        Meaning::Waiting => "waiting",
        Meaning::Failed => "failed",
        Meaning::Other => "other",
    }
}

fn file_metrics(o: &mut Out, h: &crate::ops::health::HealthReport) {
    let f = &h.facts;
    o.gauge("ora_up", "1 while the server runs.", 1.0);
    o.gauge(
        "ora_healthy",
        "1 unless the health verdict is fail.",
        f64::from(h.verdict != crate::ops::health::Level::Fail),
    );
    o.gauge(
        "ora_database_bytes",
        "Size of the database file.",
        f.file.size_bytes as f64,
    );
    o.gauge(
        "ora_wal_bytes",
        "Size of the WAL file.",
        f.file.wal_bytes as f64,
    );
    o.gauge(
        "ora_pages",
        "Pages in the database.",
        f.file.page_count as f64,
    );
    o.gauge(
        "ora_free_pages",
        "Pages on the freelist.",
        f.file.freelist_count as f64,
    );
    o.gauge(
        "ora_integrity_ok",
        "1 when the last integrity check found no problem, 0 when it found damage, -1 when none has run yet.",
        if f.check_kind == "none" {
            -1.0
        } else {
            f64::from(f.check == "ok")
        },
    );
}

fn backup_metrics(o: &mut Out, f: &crate::ops::health::Facts) {
    if let Some(b) = &f.last_backup {
        o.gauge(
            "ora_last_backup_age_seconds",
            "Age of the newest backup.",
            b.age_hours * 3600.0,
        );
        o.gauge(
            "ora_last_backup_bytes",
            "Size of the newest backup.",
            b.bytes as f64,
        );
        o.gauge("ora_last_backup_verified", "1 when the newest backup passed a restore drill, 0 when it failed, -1 when never drilled.", b.verified.map_or(-1.0, f64::from));
    }
    if let Some(s) = &f.backup_space {
        o.gauge(
            "ora_backup_free_bytes",
            "Free space on the backup directory's disk.",
            s.free_bytes as f64,
        );
        o.gauge(
            "ora_backup_full_in_days",
            "Days until the nightly backups fill their disk at the current rate, under the retention rules; -1 when not within 60 days.",
            s.full_in_days.map_or(-1.0, f64::from),
        );
    }
    if let Some(m) = &f.last_maintenance {
        o.gauge(
            "ora_last_maintenance_age_seconds",
            "Age of the last maintenance run.",
            m.age_hours * 3600.0,
        );
    }
}

fn replica_metrics(o: &mut Out, f: &crate::ops::health::Facts) {
    if let Some(r) = &f.replica {
        o.gauge(
            "ora_replica_up",
            "1 when the last attempt to reach the replica succeeded.",
            f64::from(r.up && r.problem.is_none()),
        );
        o.gauge(
            "ora_replica_lag_seconds",
            "Age of the oldest commit not yet on the replica (0 when none).",
            r.lag_seconds,
        );
        o.gauge(
            "ora_replica_lag_commits",
            "Commits made locally and not yet on the replica.",
            r.lag_commits as f64,
        );
        o.gauge(
            "ora_replica_lag_bytes",
            "Bytes of changes waiting locally for the replica.",
            r.lag_bytes as f64,
        );
        o.gauge(
            "ora_replica_last_verify_ok",
            "1 when the last replica verify passed, 0 when it failed, -1 when never run.",
            r.last_verify_ok.map_or(-1.0, f64::from),
        );
        o.gauge(
            "ora_replica_owned",
            "1 when this database owns its replica, 0 when the replica refuses it (a copy, a moved file, a replaced box).",
            f64::from(u8::from(!r.refused)),
        );
        o.gauge(
            "ora_replica_refused_others",
            "Other databases that tried to write to this replica and were refused (notes of the last 7 days).",
            r.refusals.len() as f64,
        );
        o.gauge(
            "ora_replica_foreign_tail",
            "1 when the replica's newest point is another database's commit, not this one's.",
            f64::from(u8::from(r.foreign_tail.is_some())),
        );
    }
}

/// The remote targets, from the same (cached) facts as /health.
fn remote_metrics(o: &mut Out, f: &crate::ops::health::Facts) {
    o.gauge(
        "ora_outbox_rows",
        "Changes waiting in the outbox for a remote target.",
        f.outbox_rows as f64,
    );
    if !f.remotes.is_empty() {
        o.family(
            "ora_remote_up",
            "gauge",
            "1 when the last delivery to the target succeeded (or none was tried yet), else 0.",
        );
        for r in &f.remotes {
            o.sample(
                "ora_remote_up",
                &format!("target=\"{}\"", label(&r.target)),
                if r.up { 1.0 } else { 0.0 },
            );
        }
        o.family(
            "ora_remote_lag_rows",
            "gauge",
            "Changes not yet delivered to the target.",
        );
        for r in &f.remotes {
            o.sample(
                "ora_remote_lag_rows",
                &format!("target=\"{}\"", label(&r.target)),
                r.lag_rows as f64,
            );
        }
        o.family(
            "ora_remote_lag_seconds",
            "gauge",
            "Age of the oldest change not yet delivered to the target.",
        );
        for r in &f.remotes {
            o.sample(
                "ora_remote_lag_seconds",
                &format!("target=\"{}\"", label(&r.target)),
                r.lag_seconds,
            );
        }
    }
}

fn writer_metrics(o: &mut Out, st: &AppState) {
    if let Ok(w) = st.store.writer() {
        let s = w.stats();
        o.gauge(
            "ora_writer_queue_depth",
            "Write requests waiting for the writer.",
            s.queued.load(Ordering::Relaxed).max(0) as f64,
        );
        o.family("ora_writer_commits_total", "counter", "Group commits.");
        o.sample(
            "ora_writer_commits_total",
            "",
            s.commits.load(Ordering::Relaxed) as f64,
        );
        o.family(
            "ora_writer_requests_total",
            "counter",
            "Write requests answered, by result.",
        );
        o.sample(
            "ora_writer_requests_total",
            "result=\"applied\"",
            s.applied.load(Ordering::Relaxed) as f64,
        );
        o.sample(
            "ora_writer_requests_total",
            "result=\"refused\"",
            s.refused.load(Ordering::Relaxed) as f64,
        );
        o.family(
            "ora_writer_failed_commits_total",
            "counter",
            "Group commits that failed (every request in them was refused).",
        );
        o.sample(
            "ora_writer_failed_commits_total",
            "",
            s.failed_commits.load(Ordering::Relaxed) as f64,
        );
        o.histogram(
            "ora_writer_commit_seconds",
            "Time from BEGIN to COMMIT of a group.",
            &s.commit_seconds,
        );
        o.histogram(
            "ora_writer_sync_seconds",
            "Time of a group's COMMIT alone: its WAL frames written and synced to the disk.",
            &s.sync_seconds,
        );
        o.histogram(
            "ora_writer_capture_seconds",
            "Time of recording a group for the continuous replica just before its COMMIT.",
            &s.capture_seconds,
        );
    }
}

fn http_metrics(o: &mut Out, st: &AppState) {
    o.family(
        "ora_http_requests_total",
        "counter",
        "HTTP requests answered, by route and status.",
    );
    if let Ok(m) = st.http.by_route.lock() {
        for ((route, status), n) in m.iter() {
            o.sample(
                "ora_http_requests_total",
                &format!("route=\"{}\",status=\"{status}\"", label(route)),
                *n as f64,
            );
        }
    }
    o.histogram(
        "ora_http_request_seconds",
        "Time to answer an HTTP request.",
        &st.http.seconds,
    );
    o.gauge(
        "ora_uptime_seconds",
        "Seconds since the server started.",
        st.started.elapsed().as_secs_f64(),
    );
}

/// This box's role, its standbys (a primary) or its lag (a standby).
fn standby_metrics(o: &mut Out, st: &AppState) {
    let Ok(n) = st.node.status(&st.store) else {
        return;
    };
    o.gauge(
        "ora_standby_role",
        "This box's role: 0 primary, 1 standby, 2 an old primary fenced off by a promotion.",
        if n.role == "standby" {
            1.0
        } else if n.fenced.is_empty() {
            0.0
        } else {
            2.0
        },
    );
    o.gauge(
        "ora_standby_epoch",
        "The epoch of the lineage this box is in (a promotion starts the next).",
        n.epoch as f64,
    );
    if let Some(f) = &n.follower {
        o.gauge(
            "ora_standby_lag_records",
            "Records the primary has committed that this standby has not applied yet.",
            f.lag_records as f64,
        );
        o.gauge(
            "ora_standby_lag_seconds",
            "How old the last applied record is while records are missing (0 when caught up).",
            f.lag_ms as f64 / 1e3,
        );
        o.gauge(
            "ora_standby_following",
            "1 while this standby follows its primary, 0 while it cannot (unreachable, failing, taking a base).",
            f64::from(u8::from(f.state == "following")),
        );
    }
    if let Some(f) = &n.feed {
        o.gauge(
            "ora_feed_standbys",
            "Standbys that polled this primary within the last minute.",
            f.standbys
                .iter()
                .filter(|s| crate::clock::now().timestamp_millis() - s.last_ms < 60_000)
                .count() as f64,
        );
        o.gauge(
            "ora_feed_sync_fallback",
            "1 while sync mode acknowledges at the local commit because no standby confirmed in time.",
            f64::from(u8::from(f.fallback_since_ms.is_some())),
        );
        o.gauge(
            "ora_feed_behind_records",
            "Records the furthest-behind recent standby has not acknowledged.",
            f.standbys
                .iter()
                .map(|s| (f.last_commit - s.acked).max(0))
                .max()
                .unwrap_or(0) as f64,
        );
    }
}
