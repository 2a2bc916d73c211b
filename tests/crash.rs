//! Crash safety: a child `ora stock apply` writes continuously and answers each movement only
//! after its commit; the test SIGKILLs it at a different moment each round, reopens the file,
//! and finds every acknowledged movement. Resending the whole stream afterwards (the client's
//! retry) applies each movement exactly once.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::util::{query_i64, Rng, Sandbox};

fn line(round: u64, n: u64) -> String {
    let kind = if n % 4 == 3 { "Ship" } else { "Receive" };
    format!(
        "{{\"sku\":\"SKU-{}\",\"type\":\"{kind}\",\"quantity\":1,\"request_id\":\"r{round}-{n}\"}}\n",
        n % 5
    )
}

#[test]
fn sigkill_never_loses_an_acknowledged_movement() {
    let s = Sandbox::new();
    for i in 0..5 {
        s.ok(&[
            "product",
            "add",
            &format!("SKU-{i}"),
            "Widget",
            "--initial",
            "100",
        ]);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut expected_rows = 5;
    for round in 0..20u64 {
        // Kill after a random number of acknowledgements (1..=1500): a different moment each
        // round, chosen by progress rather than by the clock.
        let kill_after = 1 + rng.below(1_500);
        let mut child = s
            .cmd(&["stock", "apply"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apply");
        let mut stdin = child.stdin.take().expect("stdin");
        let stop = Arc::new(AtomicBool::new(false));
        let feeder_stop = Arc::clone(&stop);
        let feeder = std::thread::spawn(move || {
            let mut sent = 0u64;
            while !feeder_stop.load(Ordering::Relaxed) {
                if stdin.write_all(line(round, sent).as_bytes()).is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        });
        let mut acked = Vec::new();
        let stdout = child.stdout.take().expect("stdout");
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            let v: serde_json::Value = serde_json::from_str(&l).expect("answer is JSON");
            assert_eq!(v["ok"], true, "round {round}: {l}");
            acked.push(v["movement"]["id"].as_i64().expect("id"));
            if acked.len() as u64 == kill_after {
                child.kill().expect("SIGKILL");
                break;
            }
        }
        child.wait().expect("reap");
        stop.store(true, Ordering::Relaxed);
        let sent = feeder.join().expect("feeder");

        // Every acknowledged movement is in the reopened file, with its request id.
        let conn = rusqlite::Connection::open(&s.db).expect("reopen");
        for id in &acked {
            let rid: String = conn
                .query_row(
                    "SELECT request_id FROM inventory_transactions WHERE id = ?1",
                    [id],
                    |r| r.get(0),
                )
                .unwrap_or_else(|e| panic!("round {round}: acknowledged movement {id} lost: {e}"));
            assert!(
                rid.starts_with(&format!("r{round}-")),
                "round {round}: id {id} has {rid}"
            );
        }
        drop(conn);
        s.ok(&["verify"]);

        // The client retries everything it sent: each movement lands exactly once.
        let mut retry = s
            .cmd(&["stock", "apply"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn retry");
        let mut stdin = retry.stdin.take().expect("stdin");
        let all: String = (0..sent).map(|n| line(round, n)).collect();
        let writer = std::thread::spawn(move || stdin.write_all(all.as_bytes()));
        let out = retry.wait_with_output().expect("retry");
        writer.join().expect("writer").expect("write retry input");
        assert!(
            out.status.success(),
            "round {round}: retry failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        expected_rows += sent as i64;
        assert_eq!(
            query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
            expected_rows,
            "round {round}"
        );
    }
    s.ok(&["verify"]);
}
