//! Standbys: two real `ora` processes on two files over loopback. A standby follows its
//! primary commit by commit; `ora promote` makes it the primary; in sync mode no acknowledged
//! movement is lost when the primary is SIGKILLed at any moment; an old primary is fenced and
//! rejoins with the list of what the new primary lacks; a standby that was away catches up,
//! or takes a new base when its position is gone; a damaged feed changes nothing.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{call, free_port, http, query_i64, Rng, Sandbox};

const TOKEN: &str = "standby-token-0123456789";

/// One box: its own directory, database, configuration and port.
struct Node {
    sb: Sandbox,
    cfg: PathBuf,
    addr: String,
    child: Option<Child>,
}

impl Node {
    fn new(extra: &str) -> Node {
        let sb = Sandbox::empty();
        let cfg = sb.path("ora.toml");
        std::fs::write(&cfg, format!("[standby]\ntoken = \"{TOKEN}\"\n{extra}\n")).unwrap();
        Node {
            sb,
            cfg,
            addr: format!("127.0.0.1:{}", free_port()),
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["--config", self.cfg.to_str().unwrap()];
        a.extend_from_slice(rest);
        a
    }

    fn spawn(&mut self, rest: &[&str]) -> std::process::Output {
        let args = self.args(rest);
        let mut child = self
            .sb
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(&self.addr, "GET", "/health/live", &[], b"").is_err() {
            if let Ok(Some(s)) = child.try_wait() {
                let mut out = String::new();
                let _ = child.stdout.take().unwrap().read_to_string(&mut out);
                panic!("ora {rest:?} exited with {s}: {out}");
            }
            assert!(Instant::now() < deadline, "ora {rest:?} did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        std::process::Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(0),
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    fn serve(&mut self) {
        let addr = self.addr.clone();
        self.spawn(&["serve", "--bind", &addr]);
    }

    fn standby(&mut self, from: &str, rejoin: bool) {
        let addr = self.addr.clone();
        let mut a = vec!["standby", "--from", from, "--bind", &addr];
        if rejoin {
            a.push("--rejoin");
        }
        self.spawn(&a);
    }

    /// What the server printed on stdout so far (after it was killed).
    fn stdout(&mut self) -> String {
        let mut out = String::new();
        if let Some(c) = self.child.as_mut() {
            if let Some(mut s) = c.stdout.take() {
                let _ = s.read_to_string(&mut out);
            }
        }
        out
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn status(&self) -> serde_json::Value {
        let (code, v) = call(&self.addr, "GET", "/replication/status", Some(TOKEN), None);
        assert_eq!(code, 200, "{v}");
        v
    }

    /// Waits until this standby follows and has applied everything up to `seq`.
    fn caught_up(&self, seq: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status();
            let f = &s["follower"];
            if f["state"] == "following" && s["seq"].as_i64().unwrap_or(-1) >= seq {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the standby did not catch up: {s}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn promote(&self) {
        let out = self.sb.run(&self.args(&["promote", "--url", &self.url()]));
        assert!(
            out.status.success(),
            "promote failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Why the file says this box is fenced (empty: it does not).
    fn fence_in_file(&self) -> String {
        let conn = rusqlite::Connection::open(&self.sb.db).unwrap();
        conn.query_row("SELECT fenced FROM replica_state WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap()
    }

    fn request_ids(&self) -> BTreeSet<String> {
        let conn = rusqlite::Connection::open(&self.sb.db).unwrap();
        let mut st = conn
            .prepare("SELECT request_id FROM inventory_transactions WHERE request_id IS NOT NULL")
            .unwrap();
        let ids = st
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        ids
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn post(addr: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    match http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    ) {
        Ok((s, _, b)) => (s, serde_json::from_slice(&b).unwrap_or_default()),
        Err(_) => (0, serde_json::Value::Null),
    }
}

fn movement(addr: &str, id: &str) -> u16 {
    post(
        addr,
        "/api/transactions",
        serde_json::json!({"sku": "SKU-1", "type": "Receive", "quantity": 1, "request_id": id}),
    )
    .0
}

/// Posts movements (ids `tag-N`) to `n` until it refuses them as `not_primary` (503), within
/// `limit`.
fn until_fenced(n: &Node, tag: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    for i in 1.. {
        let (code, v) = post(
            &n.addr,
            "/api/transactions",
            serde_json::json!({"sku": "SKU-1", "type": "Receive", "quantity": 1, "request_id": format!("{tag}-{i}")}),
        );
        if code == 503 && v["code"] == "not_primary" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the old primary was never fenced: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn seq_of(n: &Node) -> i64 {
    n.status()["seq"].as_i64().unwrap()
}

/// Writers that post movements to whichever address is current until stopped; the request
/// ids of acknowledged ones are collected.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    fn start(addr: &str, tag: &str, n: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..n)
            .map(|t| {
                let (addr, tag, stop, acked) = (
                    addr.to_string(),
                    tag.to_string(),
                    stop.clone(),
                    acked.clone(),
                );
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let id = format!("{tag}-{t}-{i}");
                        i += 1;
                        if movement(&addr, &id) == 201 {
                            acked.lock().unwrap().push(id);
                        }
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acked,
            threads,
        }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let v = self.acked.lock().unwrap().clone();
        v
    }
}

/// A primary with one product and a standby following it.
fn pair(mode: &str) -> (Node, Node) {
    let mut p = Node::new(&format!("mode = \"{mode}\"\nsync_timeout_ms = 3000"));
    let mut s = Node::new(&format!("mode = \"{mode}\"\nsync_timeout_ms = 3000"));
    p.serve();
    s.standby(&p.url(), false);
    let (code, v) = post(
        &p.addr,
        "/api/products",
        serde_json::json!({"sku": "SKU-1", "product_name": "Bolt"}),
    );
    assert_eq!(code, 201, "{v}");
    s.caught_up(seq_of(&p));
    (p, s)
}

#[test]
fn sync_mode_loses_no_acknowledged_movement_when_the_primary_is_killed() {
    let (mut a, mut b) = pair("sync");
    let mut rng = Rng(0x5eed_2026);
    let mut all_acked = BTreeSet::new();
    for cycle in 0..20 {
        let writers = Writers::start(&a.addr, &format!("c{cycle}"), 16);
        // Let some commits through, then pull the plug at a different moment each round.
        let until = Instant::now() + Duration::from_millis(50 + rng.below(250));
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        a.signal(libc::SIGKILL);
        let acked = writers.finish();
        a.kill();
        b.promote();
        // The promoted box takes writes at once, though its own standby is not back yet.
        assert_eq!(movement(&b.addr, &format!("promoted-{cycle}")), 201);
        all_acked.insert(format!("promoted-{cycle}"));
        let on_b = b.request_ids();
        let missing: Vec<_> = acked.iter().filter(|id| !on_b.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: acknowledged but not on the promoted standby: {missing:?}"
        );
        all_acked.extend(acked);
        let on_b: BTreeSet<String> = on_b
            .into_iter()
            .filter(|id| !id.starts_with("promoted-"))
            .collect();
        // Each movement once: the ledger has as many rows as distinct request ids.
        let rows = query_i64(
            &b.sb.db,
            "SELECT count(*) FROM inventory_transactions WHERE request_id IS NOT NULL AND request_id NOT LIKE 'promoted-%'",
        );
        assert_eq!(rows as usize, on_b.len());
        // The promoted box takes writes at once; the old one follows it.
        a.standby(&b.url(), true);
        a.caught_up(seq_of(&b));
        assert_eq!(movement(&b.addr, &format!("after-{cycle}")), 201);
        all_acked.insert(format!("after-{cycle}"));
        std::mem::swap(&mut a, &mut b);
    }
    let last = a.request_ids();
    assert!(all_acked.iter().all(|id| last.contains(id)));
    assert!(
        all_acked.len() > 20,
        "too few writes got through: {}",
        all_acked.len()
    );
}

#[test]
fn async_promotion_lacks_only_what_was_in_flight_and_rejoin_lists_exactly_that() {
    let (mut p, mut s) = pair("async");
    for i in 0..20 {
        assert_eq!(movement(&p.addr, &format!("seen-{i}")), 201);
    }
    s.caught_up(seq_of(&p));
    // The standby stops; the primary acknowledges more, then dies; the standby's file is
    // promoted without its server, then served.
    s.kill();
    let unseen: BTreeSet<String> = (0..7).map(|i| format!("unseen-{i}")).collect();
    for id in &unseen {
        assert_eq!(movement(&p.addr, id), 201);
    }
    p.signal(libc::SIGKILL);
    p.kill();
    let out = s.sb.run(&s.args(&["promote"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.serve();
    let on_s = s.request_ids();
    assert!((0..20).all(|i| on_s.contains(&format!("seen-{i}"))));
    assert!(unseen.iter().all(|id| !on_s.contains(id)));
    assert_eq!(movement(&s.addr, "new-primary-1"), 201);
    // The old primary rejoins: it lists exactly the movements the new primary lacks.
    p.standby(&s.url(), true);
    p.caught_up(seq_of(&s));
    p.kill();
    let out = p.stdout();
    let listed: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.split("(request ").nth(1))
        .map(|r| r.trim_end_matches(')').to_string())
        .collect();
    assert_eq!(listed, unseen, "rejoin printed:\n{out}");
    let csv = std::fs::read_dir(p.sb.dir.path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains("rejoin-"))
        .expect("the rejoin CSV");
    let text = std::fs::read_to_string(csv.path()).unwrap();
    assert_eq!(text.lines().count(), 1 + unseen.len());
    // The old primary's file now holds the new primary's history.
    let on_p = p.request_ids();
    assert!(on_p.contains("new-primary-1") && unseen.iter().all(|id| !on_p.contains(id)));
}

#[test]
fn a_standby_away_catches_up_and_one_whose_position_is_gone_takes_a_new_base() {
    let mut p = Node::new("keep_records = 100");
    let mut s = Node::new("");
    p.serve();
    s.standby(&p.url(), false);
    assert_eq!(
        post(
            &p.addr,
            "/api/products",
            serde_json::json!({"sku": "SKU-1", "product_name": "Bolt"})
        )
        .0,
        201
    );
    s.caught_up(seq_of(&p));
    // Away for a while: the records it needs are still kept.
    s.kill();
    for i in 0..50 {
        assert_eq!(movement(&p.addr, &format!("a-{i}")), 201);
    }
    s.serve();
    s.caught_up(seq_of(&p));
    let st = s.status();
    assert_eq!(
        st["follower"]["bases"], 0,
        "caught up with a new base: {st}"
    );
    // Away past what the primary keeps: it takes a new base and says why.
    s.kill();
    for i in 0..400 {
        assert_eq!(movement(&p.addr, &format!("b-{i}")), 201);
    }
    s.serve();
    s.caught_up(seq_of(&p));
    let st = s.status();
    assert_eq!(st["follower"]["bases"], 1, "{st}");
    let why = st["follower"]["last_base_reason"].as_str().unwrap();
    assert!(why.contains("no longer keeps"), "{why}");
    assert_eq!(s.request_ids(), p.request_ids());
}

#[test]
fn an_old_primary_stopped_during_the_promotion_acknowledges_nothing_in_sync_mode() {
    let (p, s) = pair("sync");
    assert_eq!(movement(&p.addr, "before"), 201);
    p.signal(libc::SIGSTOP);
    s.promote();
    p.signal(libc::SIGCONT);
    // Every write the old primary is asked for now is refused: no standby acknowledges it.
    for i in 0..3 {
        let code = movement(&p.addr, &format!("late-{i}"));
        assert_eq!(code, 503, "the old primary acknowledged late-{i}");
    }
    assert!(!s.request_ids().iter().any(|id| id.starts_with("late-")));
    // It is told of the new epoch, and says why it refuses.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = post(
            &p.addr,
            "/api/transactions",
            serde_json::json!({"sku": "SKU-1", "type": "Receive", "quantity": 1}),
        );
        if v["code"] == "not_primary" {
            assert!(v["error"].as_str().unwrap().contains("epoch 2"), "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "never fenced: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let h = call(&p.addr, "GET", "/health", None, None).1;
    assert!(h["role"]["fenced"].as_str().unwrap().contains("promoted"));
}

#[test]
fn an_old_primary_in_async_mode_refuses_writes_once_it_sees_the_new_epoch() {
    let (p, s) = pair("async");
    p.signal(libc::SIGSTOP);
    s.promote();
    p.signal(libc::SIGCONT);
    until_fenced(&p, "x", Duration::from_secs(30));
    // Restarted, it still refuses. The status says fenced from the moment writes are
    // refused; the restart needs the fence in the file, read here as the restart reads it.
    assert!(!p.status()["fenced"].as_str().unwrap_or("").is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.fence_in_file().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the fence never reached the file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut p = p;
    p.kill();
    p.serve();
    assert_eq!(movement(&p.addr, "after-restart"), 503);
}

// The old primary comes back only after the promoted box restarted (so nothing held in
// memory tells it): each box kept the other's address beside its database, so the old
// primary asks and fences itself (or is told), and refuses writes naming the new primary.
#[test]
fn an_old_primary_back_after_the_promoted_box_restarted_refuses_writes() {
    let (mut p, mut s) = pair("async");
    let knows = |n: &Node, url: String| {
        n.status()["peers"]
            .as_array()
            .is_some_and(|a| a.iter().any(|u| u.as_str() == Some(url.as_str())))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !knows(&p, s.url()) {
        assert!(
            Instant::now() < deadline,
            "the primary never kept its standby's address"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        knows(&s, p.url()),
        "the standby keeps its primary's address"
    );
    p.kill();
    s.promote();
    s.kill();
    s.serve();
    assert_eq!(movement(&s.addr, "on-the-new-primary"), 201);
    p.serve();
    until_fenced(&p, "back", Duration::from_secs(60));
    // From the moment it refuses, its status names the box that replaced it.
    let fenced = p.status()["fenced"].as_str().unwrap_or("").to_string();
    assert!(fenced.contains(&s.url()), "{fenced}");
}

#[test]
fn a_standby_serves_reads_refuses_writes_and_its_nightly_jobs_do_not_diverge_it() {
    let (p, s) = pair("async");
    for i in 0..5 {
        assert_eq!(movement(&p.addr, &format!("m-{i}")), 201);
    }
    s.caught_up(seq_of(&p));
    let (code, v) = call(&s.addr, "GET", "/api/inventory/SKU-1", None, None);
    assert_eq!((code, v["current_quantity"].as_i64()), (200, Some(5)));
    let (code, head, body) = http(
        &s.addr,
        "POST",
        "/api/transactions",
        &[("Content-Type", "application/json")],
        br#"{"sku":"SKU-1","type":"Receive","quantity":1}"#,
    )
    .unwrap();
    let head = head.to_ascii_lowercase();
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert!(head.contains("retry-after: 5"), "{head}");
    assert!(
        head.contains(&format!("x-ora-primary: {}", p.url())),
        "{head}"
    );
    let (_, _, page) = http(&s.addr, "GET", "/", &[], b"").unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("STANDBY of"), "the page does not say STANDBY");
    let h = call(&s.addr, "GET", "/health", None, None).1;
    assert_eq!(h["role"]["role"], "standby");
    assert_eq!(h["role"]["primary"], p.url());
    let (_, _, m) = http(&s.addr, "GET", "/metrics", &[], b"").unwrap();
    assert!(String::from_utf8_lossy(&m).contains("ora_standby_role 1"));
    // The nightly jobs on the standby: they read, or refuse; the standby keeps following.
    for job in [
        &["verify"][..],
        &["maintain", "daily"],
        &["maintain", "weekly"],
        &["backup"],
    ] {
        let _ = s.sb.run(&s.args(job));
    }
    let refused = s.sb.run(&s.args(&["stock", "receive", "SKU-1", "3"]));
    assert_eq!(
        refused.status.code(),
        Some(3),
        "a write on a standby must be refused"
    );
    for i in 0..5 {
        assert_eq!(movement(&p.addr, &format!("n-{i}")), 201);
    }
    s.caught_up(seq_of(&p));
    assert_eq!(
        s.status()["follower"]["bases"],
        1,
        "the jobs made the standby diverge"
    );
    assert_eq!(s.request_ids(), p.request_ids());
}

#[test]
fn the_replication_routes_need_the_token() {
    let (p, _s) = pair("async");
    for (m, path) in [
        ("GET", "/replication/status"),
        ("POST", "/replication/base"),
        ("GET", "/replication/records?after=0&hash=00"),
        ("POST", "/replication/promote"),
    ] {
        assert_eq!(call(&p.addr, m, path, None, None).0, 401, "{m} {path}");
        assert_eq!(
            call(&p.addr, m, path, Some("wrong-token-0123456789"), None).0,
            401
        );
    }
    // Hostile parameters are refused before anything is read.
    for q in [
        "after=-1&hash=00",
        "after=1&hash=zz",
        "after=99999999999999999999&hash=00",
        "after=1&hash=0000000000000000000000000000000000000000000000000000000000000000&wait_ms=99999999",
    ] {
        let (code, v) = call(
            &p.addr,
            "GET",
            &format!("/replication/records?{q}"),
            Some(TOKEN),
            None,
        );
        assert_eq!(code, 400, "{q}: {v}");
    }
}

/// A change a proxy makes to a records answer's body.
type Mutation = fn(&mut Vec<u8>);

/// A proxy between a standby and its primary that damages every records answer with
/// `mutate` (the body after the HTTP head).
fn damaging_proxy(to: String, mutate: Mutation) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let to = to.clone();
            std::thread::spawn(move || {
                let _ = relay(c, &to, mutate);
            });
        }
    });
    addr
}

fn relay(mut c: TcpStream, to: &str, mutate: Mutation) -> std::io::Result<()> {
    let mut req = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
        if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if req.len() >= end + 4 + len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&req).into_owned();
    let text = text.replacen("Connection: keep-alive", "Connection: close", 1);
    let mut up = TcpStream::connect(to)?;
    let mut sent = text.into_bytes();
    if !String::from_utf8_lossy(&sent)
        .to_ascii_lowercase()
        .contains("connection: close")
    {
        let at = sent.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        sent.splice(at..at, b"\r\nConnection: close".iter().copied());
    }
    up.write_all(&sent)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    if String::from_utf8_lossy(&req).starts_with("GET /replication/records") {
        if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut body = resp.split_off(end + 4);
            if body.len() > 20 {
                mutate(&mut body);
                let head = String::from_utf8_lossy(&resp).into_owned();
                let head: String = head
                    .lines()
                    .filter(|l| !l.to_ascii_lowercase().starts_with("content-length"))
                    .map(|l| format!("{l}\r\n"))
                    .collect::<String>();
                resp = format!(
                    "{}Content-Length: {}\r\n\r\n",
                    head.trim_end_matches("\r\n").to_string() + "\r\n",
                    body.len()
                )
                .into_bytes();
            }
            resp.extend_from_slice(&body);
        }
    }
    c.write_all(&resp)
}

#[test]
fn a_damaged_feed_changes_nothing_on_the_standby() {
    let mutations: [(&str, Mutation); 4] = [
        ("bit flip", |b| {
            let i = b.len() / 2;
            b[i] ^= 0x10;
        }),
        ("truncated", |b| {
            let n = b.len() - 9;
            b.truncate(n);
        }),
        ("duplicated", |b| {
            // The first frame twice: the magic line is 11 bytes, then the frames.
            let frame_len = u32::from_be_bytes([b[11], b[12], b[13], b[14]]) as usize + 4;
            let frame = b[11..11 + frame_len].to_vec();
            b.splice(11..11, frame);
        }),
        ("oversized length", |b| {
            b[11..15].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
        }),
    ];
    for (k, (name, mutate)) in mutations.into_iter().enumerate() {
        let mut p = Node::new("");
        p.serve();
        let (code, _) = post(
            &p.addr,
            "/api/products",
            serde_json::json!({"sku": "SKU-1", "product_name": "Bolt"}),
        );
        assert_eq!(code, 201);
        let proxy = damaging_proxy(p.addr.clone(), mutate);
        let mut s = Node::new("");
        s.standby(&format!("http://{proxy}"), false);
        s.caught_up(seq_of(&p));
        let before = crate::util::snapshot(&s.sb.db);
        for i in 0..3 {
            assert_eq!(movement(&p.addr, &format!("d{k}-{i}")), 201);
        }
        // The standby keeps asking and refusing: its data stay as they were.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = s.status();
            let err = st["follower"]["last_error"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if !err.is_empty() {
                assert!(
                    err.contains("damaged") || err.contains("cut short") || err.contains("larger"),
                    "{name}: {err}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{name}: no refusal: {st}");
            std::thread::sleep(Duration::from_millis(20));
        }
        s.kill();
        assert_eq!(
            crate::util::snapshot(&s.sb.db),
            before,
            "{name} changed the standby"
        );
    }
}

// Both boxes carry the same `[remote.postgres]`: the standby forwards nothing while it
// follows; promoted, it forwards its own writes at once (no restart), and the mirror holds
// every movement of both epochs exactly once.
#[test]
fn a_promoted_box_forwards_to_postgres_without_a_restart() {
    let Some(pg) =
        crate::pg::PgCluster::start("a_promoted_box_forwards_to_postgres_without_a_restart")
    else {
        return;
    };
    let remote = format!(
        "[remote]\nsite_id = \"north\"\n[remote.postgres]\nurl = {:?}\n",
        pg.url()
    );
    let mut p = Node::new(&remote);
    let mut s = Node::new(&remote);
    p.serve();
    s.standby(&p.url(), false);
    let (code, v) = post(
        &p.addr,
        "/api/products",
        serde_json::json!({"sku": "SKU-1", "product_name": "Bolt"}),
    );
    assert_eq!(code, 201, "{v}");
    for i in 0..20 {
        assert_eq!(movement(&p.addr, &format!("a-{i}")), 201);
    }
    s.caught_up(seq_of(&p));
    let mirrored = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let sql = "SELECT count(*) || ' ' || count(DISTINCT request_id) FROM ora.inventory_transactions WHERE site_id = 'north'";
        loop {
            if pg.psql(sql) == format!("{n} {n}") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the mirror never held {n} movements once each: {}",
                pg.psql(sql)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    mirrored(20);
    p.kill();
    s.promote();
    for i in 0..10 {
        assert_eq!(movement(&s.addr, &format!("b-{i}")), 201);
    }
    mirrored(30);
    assert_eq!(
        pg.psql("SELECT count(*) FROM ora.inventory_transactions WHERE request_id LIKE 'b-%'"),
        "10"
    );
}
