//! The audit trail: every change through the CLI and the API is recorded with its actor (the
//! login name or `--actor`, the API token's name), its old and new values, in the same
//! transaction as the change; `ora audit` and `GET /api/audit` filter it; bad filters and
//! unknown tokens are refused, and the trail cannot be edited with the sqlite3 shell.

use serde_json::{json, Value};

use crate::util::{call, query_i64, Sandbox, Server};

/// `ora audit --json` with these filters.
fn audit(s: &Sandbox, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit"];
    args.extend_from_slice(filters);
    s.json(&args).as_array().expect("an array of rows").clone()
}

/// Runs `ora` as if logged in as `user`.
fn as_user(s: &Sandbox, user: &str, args: &[&str]) {
    let out = s
        .cmd(args)
        .env("USER", user)
        .env_remove("SUDO_USER")
        .env_remove("LOGNAME")
        .output()
        .expect("run ora");
    assert!(
        out.status.success(),
        "ora {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_cli_change_is_recorded_with_its_actor_and_values() {
    let s = Sandbox::new();
    as_user(
        &s,
        "carol",
        &["product", "add", "A-1", "Lamp", "--initial", "5"],
    );
    as_user(
        &s,
        "carol",
        &["--actor", "dave", "stock", "ship", "A-1", "2"],
    );
    as_user(
        &s,
        "carol",
        &[
            "product",
            "update",
            "A-1",
            "--name",
            "Desk lamp",
            "--reorder-point",
            "3",
        ],
    );
    as_user(&s, "erin", &["workflow", "set", "picking", "running"]);
    as_user(
        &s,
        "erin",
        &["kpi", "record", "2026-11-30", "--orders-today", "7"],
    );
    // A stock changed behind ora's back, set back by a reconcile: the reconcile is recorded
    // with both quantities; the edit itself is not (it did not go through ora).
    let out = std::process::Command::new("sqlite3")
        .arg(&s.db)
        .arg("UPDATE inventory_current SET current_quantity = 40 WHERE sku = 'A-1'")
        .output()
        .expect("run sqlite3");
    assert!(out.status.success());
    as_user(&s, "frank", &["stock", "reconcile", "A-1"]);

    let rows = audit(&s, &[]);
    let brief: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_string(),
                r["op"].as_str().unwrap().to_string(),
                r["table"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
            )
        })
        .rev()
        .collect();
    let want = [
        ("carol", "product_add", "inventory_current", "insert"),
        ("carol", "movement", "inventory_transactions", "insert"),
        ("dave", "movement", "inventory_transactions", "insert"),
        ("carol", "product_update", "inventory_current", "update"),
        ("erin", "workflow_set", "workflows", "insert"),
        ("erin", "kpi_record", "system_kpis", "insert"),
        ("frank", "reconcile", "inventory_current", "update"),
    ];
    let want: Vec<(String, String, String, String)> = want
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(brief, want);

    // Old and new values as they were.
    let rename = &rows[3];
    assert_eq!(rename["key"], "A-1");
    assert_eq!(rename["old"]["product_name"], "Lamp");
    assert_eq!(rename["new"]["product_name"], "Desk lamp");
    assert_eq!(rename["old"]["reorder_point"], 0);
    assert_eq!(rename["new"]["reorder_point"], 3);
    let ship = &rows[4];
    assert_eq!(ship["new"]["transaction_type"], "Ship");
    assert_eq!(ship["new"]["quantity"], 2);
    assert_eq!(ship["sku"], "A-1");
    assert_eq!(
        ship["key"].as_str().unwrap().parse::<i64>().unwrap(),
        query_i64(
            &s.db,
            "SELECT id FROM inventory_transactions WHERE transaction_type = 'Ship'"
        )
    );
    let reconcile = &rows[0];
    assert_eq!(reconcile["old"]["current_quantity"], 40);
    assert_eq!(reconcile["new"]["current_quantity"], 3);

    // ORA_ACTOR names the actor; --actor beats it.
    let out = s
        .cmd(&["workflow", "set", "picking", "paused"])
        .env("ORA_ACTOR", "gina")
        .output()
        .expect("run ora");
    assert!(out.status.success());
    let out = s
        .cmd(&["--actor", "hank", "workflow", "set", "picking", "done"])
        .env("ORA_ACTOR", "gina")
        .output()
        .expect("run ora");
    assert!(out.status.success());
    let latest = audit(&s, &["--table", "workflows", "--limit", "2"]);
    assert_eq!(latest[0]["actor"], "hank");
    assert_eq!(latest[1]["actor"], "gina");
    assert_eq!(latest[1]["old"]["status"], "running");
    assert_eq!(latest[1]["new"]["status"], "paused");

    // Filters, alone and together.
    assert_eq!(audit(&s, &["--actor", "carol"]).len(), 3);
    assert_eq!(audit(&s, &["--sku", "A-1"]).len(), 5);
    assert_eq!(audit(&s, &["--table", "workflows"]).len(), 3);
    assert_eq!(
        audit(&s, &["--sku", "A-1", "--actor", "dave"])[0]["op"],
        "movement"
    );
    assert_eq!(audit(&s, &["--since", "2000-01-01"]).len(), 9);
    assert!(audit(&s, &["--since", "2999-01-01"]).is_empty());
    assert_eq!(audit(&s, &["--limit", "2"]).len(), 2);
    // The text form shows who did what.
    let text = s.ok(&["audit", "--sku", "A-1"]);
    assert!(text.contains("product_name: Lamp -> Desk lamp"), "{text}");
    assert!(text.contains("dave"), "{text}");
}

#[test]
fn a_refused_write_leaves_no_audit_row() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Lamp", "--initial", "1"]);
    let trail = |s: &Sandbox| audit(s, &[]).len();
    let before = trail(&s);
    // Not enough stock: refused, nothing recorded.
    s.fails(&["stock", "ship", "A-1", "5"], 1);
    // An import whose second row fails: the first is rolled back with its audit row.
    let csv = s.path("in.csv");
    std::fs::write(&csv, "sku,type,quantity\nA-1,Receive,3\nNOPE,Receive,1\n").unwrap();
    let out = s.run(&["stock", "import", csv.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(trail(&s), before);
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        1
    );
}

#[test]
fn the_trail_cannot_be_edited_behind_oras_back() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Lamp", "--initial", "1"]);
    for sql in [
        "UPDATE audit_log SET actor = 'nobody'",
        "DELETE FROM audit_log",
        "UPDATE inventory_transactions SET actor = 'nobody'",
    ] {
        let out = std::process::Command::new("sqlite3")
            .arg(&s.db)
            .arg(sql)
            .output()
            .expect("run sqlite3");
        assert!(!out.status.success(), "{sql} was allowed");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("append-only"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(audit(&s, &[]).len(), 2);
}

#[test]
fn bad_audit_filters_and_actors_are_refused() {
    let s = Sandbox::new();
    for (args, says) in [
        (
            vec!["audit", "--table", "sqlite_schema"],
            "no audited table",
        ),
        (vec!["audit", "--since", "last tuesday"], "not a date"),
        (vec!["audit", "--since", "2026-13-01"], "not a date"),
        (vec!["audit", "--limit", "0"], "limit"),
        (vec!["audit", "--limit", "99999999"], "limit"),
        (vec!["audit", "--sku", "a b\u{1}"], "sku"),
        (vec!["--actor", "", "product", "add", "A-1", "x"], "actor"),
        (
            vec!["--actor", "bad\u{7}name", "product", "add", "A-1", "x"],
            "control character",
        ),
    ] {
        let err = s.fails(&args, 2);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let long = "x".repeat(65);
    let err = s.fails(&["--actor", &long, "product", "add", "A-1", "x"], 2);
    assert!(err.contains("longer than 64"), "{err}");
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_current"),
        0
    );
}

#[test]
fn api_writes_are_recorded_under_their_tokens_name() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Lamp", "--initial", "5"]);
    let cfg = s.path("ora.toml");
    let (scanner, office, single) = (
        "scanner-token-0123456789",
        "office-token-0123456789",
        "single-token-0123456789",
    );
    std::fs::write(
        &cfg,
        format!(
            "[server]\ntoken = \"{single}\"\ntokens = {{ scanner-1 = \"{scanner}\", office = \"{office}\" }}\n"
        ),
    )
    .unwrap();
    let srv = Server::start(&s, &["--config", cfg.to_str().unwrap()]);
    let a = srv.addr.as_str();
    let mv = json!({"sku": "A-1", "type": "Receive", "quantity": 1});
    for (token, expect) in [(scanner, 201), (office, 201), (single, 201)] {
        let (st, v) = call(a, "POST", "/api/transactions", Some(token), Some(&mv));
        assert_eq!(st, expect, "{v}");
    }
    let (st, v) = call(
        a,
        "PUT",
        "/api/workflows/packing",
        Some(office),
        Some(&json!({"status": "paused"})),
    );
    assert_eq!(st, 200, "{v}");
    // An unknown token writes nothing and leaves no row.
    let before = query_i64(&s.db, "SELECT count(*) FROM audit_log")
        + query_i64(&s.db, "SELECT count(*) FROM inventory_transactions");
    let (st, v) = call(
        a,
        "POST",
        "/api/transactions",
        Some("unknown-token-0123456789"),
        Some(&mv),
    );
    assert_eq!((st, v["code"].as_str()), (401, Some("unauthorized")));
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM audit_log")
            + query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        before
    );

    let (st, v) = call(
        a,
        "GET",
        "/api/audit?table=inventory_transactions&limit=3",
        None,
        None,
    );
    assert_eq!(st, 200, "{v}");
    let actors: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["api", "office", "scanner-1"]);
    let (st, v) = call(a, "GET", "/api/audit?actor=office", None, None);
    assert_eq!(st, 200);
    let ops: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["workflow_set", "movement"]);
    let (st, v) = call(a, "GET", "/api/audit?sku=A-1&since=2000-01-01", None, None);
    assert_eq!(st, 200);
    assert_eq!(v.as_array().unwrap().len(), 5, "{v}");
    for bad in [
        "/api/audit?table=secrets",
        "/api/audit?since=soon",
        "/api/audit?limit=0",
        "/api/audit?limit=x",
        "/api/audit?actor=%07",
    ] {
        let (st, v) = call(a, "GET", bad, None, None);
        assert_eq!(st, 422, "{bad}: {v}");
        assert!(v["error"].as_str().is_some(), "{bad}: {v}");
    }
}

#[test]
fn token_names_and_duplicate_tokens_are_refused_in_the_configuration() {
    let s = Sandbox::new();
    let cfg = s.path("ora.toml");
    for (text, says) in [
        (
            "[server]\ntokens = { \"scanner 1\" = \"token-0123456789abcdef\" }\n",
            "must be 1-64 letters",
        ),
        (
            "[server]\ntokens = { a = \"token-0123456789abcdef\", b = \"token-0123456789abcdef\" }\n",
            "the same token",
        ),
        (
            "[server]\ntoken = \"token-0123456789abcdef\"\ntokens = { api = \"other-0123456789abcdef\" }\n",
            "named twice",
        ),
        ("[server]\ntokens = { a = \"short\" }\n", "at least 16"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let err = s.fails(&["--config", cfg.to_str().unwrap(), "stock", "list"], 2);
        assert!(err.contains(says), "{text}: {err}");
    }
}
