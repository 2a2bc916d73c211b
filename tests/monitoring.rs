//! The monitoring files in `contrib/`: the alert rules pass `promtool check rules` and their
//! unit tests; every metric the rules, the Grafana dashboard and `METRICS.md` name is served by
//! a real `ora serve` (a primary with a replica, a remote target and a sync standby, and that
//! standby), and `METRICS.md` lists every metric family they serve.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{call, free_port, gauge, have, http, settles, skip, Sandbox};

const TOKEN: &str = "monitoring-token-0123456789";

fn contrib(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(p)
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    if !have("promtool") {
        return skip(
            "the_alert_rules_pass_promtool_and_their_unit_tests",
            "no promtool (Debian package prometheus)",
        );
    }
    for args in [
        vec!["check", "rules", "ora-alerts.yml"],
        vec!["test", "rules", "ora-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(contrib("prometheus"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(sb: &Sandbox, cfg: &Path, args: &[&str], addr: &str) -> Killed {
    let mut a = vec!["--config", cfg.to_str().unwrap()];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--bind", addr]);
    let child = sb
        .cmd(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(addr, "GET", "/health/live", &[], b"").is_err() {
        assert!(Instant::now() < deadline, "ora {args:?} did not answer");
        std::thread::sleep(Duration::from_millis(20));
    }
    Killed(child)
}

/// (sample names, family names) of a `/metrics` answer.
fn served(addr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (code, _, body) = http(addr, "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body).to_string();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    (samples, families)
}

/// The `ora_*` names a text mentions.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("ora_") {
        let start = i + at;
        let before = start.checked_sub(1).map(|j| b[j]);
        let mut end = start + 4;
        while end < b.len() && (b[end].is_ascii_lowercase() || b[end] == b'_') {
            end += 1;
        }
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

#[test]
fn the_rules_dashboard_and_metric_list_name_only_served_metrics() {
    let p = Sandbox::new();
    let rep = p.path("replica");
    std::fs::create_dir(&rep).unwrap();
    p.ok(&["replica", "init", rep.to_str().unwrap()]);
    p.ok(&["backup"]);
    p.ok(&["maintain", "daily"]);
    let pcfg = p.path("ora.toml");
    std::fs::write(
        &pcfg,
        format!("[standby]\ntoken = \"{TOKEN}\"\nmode = \"sync\"\n[remote]\nsite_id = \"x\"\n[remote.postgres]\nurl = \"postgresql://u:p@127.0.0.1:1/db\"\n"),
    )
    .unwrap();
    let paddr = format!("127.0.0.1:{}", free_port());
    let _p = start(&p, &pcfg, &["serve"], &paddr);
    let s = Sandbox::empty();
    let scfg = s.path("ora.toml");
    std::fs::write(&scfg, format!("[standby]\ntoken = \"{TOKEN}\"\n")).unwrap();
    let saddr = format!("127.0.0.1:{}", free_port());
    let from = format!("http://{paddr}");
    let _s = start(&s, &scfg, &["standby", "--from", &from], &saddr);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = call(&saddr, "GET", "/replication/status", Some(TOKEN), None);
        if v["follower"]["state"] == "following" {
            break;
        }
        assert!(Instant::now() < deadline, "the standby never followed: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut samples, mut families) = served(&paddr);
    let (s2, f2) = served(&saddr);
    samples.extend(s2);
    families.extend(f2);

    let rules = std::fs::read_to_string(contrib("prometheus/ora-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(contrib("prometheus/ora-alerts.test.yml")).unwrap();
    let dashboard = std::fs::read_to_string(contrib("grafana/ora-dashboard.json")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    for (what, text) in [
        ("rules", &rules),
        ("rule tests", &tests),
        ("dashboard", &dashboard),
    ] {
        let unknown: Vec<_> = named(text)
            .into_iter()
            .filter(|n| !samples.contains(n))
            .collect();
        assert!(
            unknown.is_empty(),
            "the {what} name metrics ora does not serve: {unknown:?}"
        );
    }
    let list = std::fs::read_to_string(contrib("prometheus/METRICS.md")).unwrap();
    let listed = named(&list);
    let unknown: Vec<_> = listed.difference(&families).collect();
    assert!(
        unknown.is_empty(),
        "METRICS.md lists metrics not served: {unknown:?}"
    );
    let missing: Vec<_> = families.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "METRICS.md lacks served metrics: {missing:?}"
    );
}

// The warehouse gauges follow the warehouse: a product at zero and a failed workflow make the
// verdict 2 (what OraWarehouseActNow fires on); receiving stock and rerunning the workflow
// bring it back to 0; KPIs never recorded read -1, recorded today 0.
#[test]
fn the_warehouse_gauges_follow_the_warehouse() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "W-1", "Lamp", "--reorder-point", "5"]);
    s.ok(&[
        "product",
        "add",
        "W-2",
        "Shade",
        "--reorder-point",
        "5",
        "--initial",
        "3",
    ]);
    s.ok(&["workflow", "set", "label-printing", "failed"]);
    let cfg = s.path("ora.toml");
    std::fs::write(&cfg, "").unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _srv = start(&s, &cfg, &["serve"], &addr);
    assert_eq!(gauge(&addr, "ora_warehouse_verdict"), 2.0);
    assert_eq!(gauge(&addr, "ora_products_critical"), 1.0);
    assert_eq!(gauge(&addr, "ora_products_low"), 1.0);
    assert_eq!(gauge(&addr, "ora_workflows_failed"), 1.0);
    assert_eq!(gauge(&addr, "ora_kpis_stale"), -1.0);
    // /health carries the same verdict with its reasons, and its status stays the database's.
    let (code, h) = call(&addr, "GET", "/health", None, None);
    assert_ne!(
        code, 503,
        "the warehouse turned /health into a failure: {h}"
    );
    assert_eq!(h["warehouse"]["verdict"], "fail", "{h}");
    let reasons = h["warehouse"]["reasons"].to_string();
    assert!(
        reasons.contains("at or below zero") && reasons.contains("label-printing"),
        "{reasons}"
    );
    s.ok(&["stock", "receive", "W-1", "10"]);
    s.ok(&["stock", "receive", "W-2", "10"]);
    s.ok(&["workflow", "set", "label-printing", "done"]);
    s.ok(&["kpi", "record", &ora::model::today(), "--orders-today", "3"]);
    settles(&addr, "ora_warehouse_verdict", 0.0);
    assert_eq!(gauge(&addr, "ora_products_critical"), 0.0);
    assert_eq!(gauge(&addr, "ora_workflows_failed"), 0.0);
    assert_eq!(gauge(&addr, "ora_kpis_stale"), 0.0);
}

/// The alerts the shipped rules fire on what a real server serves now: its `/metrics`, each
/// sample held for two hours, run through `promtool test rules` against the rules in
/// `contrib/`; asserts that exactly `want` (of the rules named `Ora...`, `OraDown` aside, which
/// needs `up`) are firing at the end. Without promtool, a skip (which strict mode fails).
pub fn assert_fires(addr: &str, dir: &Path, want: &[&str]) {
    if !have("promtool") {
        return skip("alerts from a real server's metrics", "no promtool");
    }
    let (_, _, body) = http(addr, "GET", "/metrics", &[], b"").unwrap();
    let mut series = String::new();
    for line in String::from_utf8_lossy(&body).lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        // Counters and gauges alike, held at the value served (a counter that does not grow
        // is what `increase` sees as no new failures).
        if value.parse::<f64>().is_ok_and(f64::is_finite) {
            series.push_str(&format!(
                "      - series: '{}'\n        values: '{value}x130'\n",
                name.replace('\'', "''")
            ));
        }
    }
    let mut expected = String::new();
    for a in want {
        expected.push_str(&format!(
            "          - labels: '{{alertname=\"{a}\"}}'\n            value: 1\n"
        ));
    }
    let expected = if want.is_empty() {
        "        exp_samples: []\n".to_string()
    } else {
        format!("        exp_samples:\n{expected}")
    };
    let test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    promql_expr_test:\n      - expr: 'count by (alertname) (ALERTS{{alertstate=\"firing\", alertname!=\"OraDown\"}})'\n        eval_time: 130m\n{expected}",
        contrib("prometheus/ora-alerts.yml").display()
    );
    let file = dir.join("alerts-now.test.yml");
    std::fs::write(&file, &test).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the alerts firing on the served metrics are not {want:?}: {}{}\n{test}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
