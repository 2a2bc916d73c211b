//! Test helpers: a per-test sandbox directory with a database path, a runner for the real
//! `ora` binary, a tiny HTTP client, and a logical snapshot of a database for "unchanged"
//! assertions.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ORA: &str = env!("CARGO_BIN_EXE_ora");

/// A temp directory holding one database.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    /// The moment every command of this sandbox believes it is (`ORA_NOW`), if pinned.
    pub now: Option<String>,
}

impl Sandbox {
    /// An empty sandbox (no database yet).
    pub fn empty() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("ora-test-")
            .tempdir()
            .expect("create temp dir");
        let db = dir.path().join("ora.db");
        Sandbox { dir, db, now: None }
    }

    /// An initialised sandbox whose commands all run as if it were `now` (RFC 3339), the
    /// clock running on from there.
    pub fn at(now: &str) -> Sandbox {
        let s = Sandbox {
            now: Some(now.to_string()),
            ..Sandbox::empty()
        };
        s.ok(&["init"]);
        s
    }

    /// A sandbox with an initialised database.
    pub fn new() -> Sandbox {
        let s = Sandbox::empty();
        s.ok(&["init"]);
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command for the real binary, pointed at this sandbox's database, with a clean
    /// environment (no inherited DATABASE_PATH / ORA_* settings).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(ORA);
        c.arg("--db").arg(&self.db).args(args);
        clean_env(&mut c);
        if let Some(now) = &self.now {
            c.env(ora::clock::VAR, now);
        }
        c.current_dir(self.dir.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run ora")
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ora {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts exit `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "ora {args:?}: expected exit {code}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_clean_error(&stderr);
        stderr
    }

    /// Runs with `--json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// `ora --json ARGS` on ora's clock set to `at` (now when none), whatever its exit: the
    /// exit code and the JSON it printed.
    pub fn json_at(&self, args: &[&str], at: Option<&str>) -> (Option<i32>, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let mut cmd = self.cmd(&all);
        if let Some(t) = at {
            cmd.env(ora::clock::VAR, t);
        }
        let out = cmd.output().expect("run ora");
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), v)
    }

    pub fn snapshot(&self) -> String {
        snapshot(&self.db)
    }
}

pub fn clean_env(c: &mut Command) {
    for var in ora::config::ENV_VARS
        .iter()
        .chain(["HEARTBEAT_URL", "NOTIFY_SOCKET", ora::clock::VAR].iter())
    {
        c.env_remove(var);
    }
}

/// An error output must be a plain message: no panic, no Rust debug dump.
pub fn assert_clean_error(stderr: &str) {
    assert!(!stderr.contains("panicked"), "panic in stderr: {stderr}");
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "backtrace hint in stderr: {stderr}"
    );
    assert!(
        !stderr.contains("SqliteFailure"),
        "debug dump in stderr: {stderr}"
    );
    assert!(
        !stderr.contains("{ code:"),
        "debug dump in stderr: {stderr}"
    );
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with("ora: "),
        "unexpected error format: {stderr}"
    );
}

/// Every table's rows, in primary-key order, as text: equal snapshots mean equal content.
pub fn snapshot(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open for snapshot");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('ops_log', 'slow_statements') ORDER BY name")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .expect("list tables");
    tables.sort();
    let mut out = String::new();
    for t in tables {
        out.push_str(&format!("== {t}\n"));
        let mut st = conn
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1"))
            .expect("select");
        let n = st.column_count();
        let mut rows = st.query([]).expect("query");
        while let Some(r) = rows.next().expect("row") {
            let cells: Vec<String> = (0..n)
                .map(|i| format!("{:?}", r.get_ref(i).expect("cell")))
                .collect();
            out.push_str(&cells.join("|"));
            out.push('\n');
        }
    }
    out
}

/// Runs one SQL query returning a single integer.
pub fn query_i64(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row(sql, [], |r| r.get(0)).expect("query")
}

/// How many bytes of a replica file were written: up to its last nonzero byte (a log segment
/// ends with zeros allotted ahead of its records).
pub fn written_len(b: &[u8]) -> usize {
    b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, headers, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, head, raw[split + 4..].to_vec()))
}

/// A running `ora serve` child; killed on drop.
pub struct Server {
    pub child: std::process::Child,
    pub addr: String,
}

impl Server {
    /// Starts `ora serve` in `dir` on a free port and waits until /health answers (200 or
    /// 503). Its stderr is a pipe nobody reads: a server that logged a line per request would
    /// block once the pipe is full.
    pub fn start(sandbox: &Sandbox, extra: &[&str]) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--bind", addr.as_str()];
        args.extend_from_slice(extra);
        let child = sandbox
            .cmd(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ora serve");
        let mut server = Server { child, addr };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&mut self) {
        for _ in 0..300 {
            // Answering is ready: 503 is a verdict (a sample file never backed up fails it).
            if let Ok((200 | 503, _, _)) = http(&self.addr, "GET", "/health", &[], b"") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(e) = self.child.stderr.as_mut() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("ora serve exited with {status}: {err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ora serve did not answer /health within 15 s");
    }

    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("wait for serve")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when the tests run as root (needed for runuser and tmpfs mounts).
pub fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// A tiny deterministic PRNG (xorshift) for reproducible "random" choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Sends raw bytes and reads the whole answer (the server closes or `Connection: close`).
pub fn raw(addr: &str, bytes: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(bytes)?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, text))
}

/// JSON request helper: (status, parsed body or Null).
pub fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, _, resp) = http(addr, method, path, &headers, &bytes).expect("http");
    (
        status,
        serde_json::from_slice(&resp).unwrap_or(serde_json::Value::Null),
    )
}

/// One gauge's value in a `/metrics` answer.
pub fn gauge(addr: &str, name: &str) -> f64 {
    let (_, _, body) = http(addr, "GET", "/metrics", &[], b"").unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Waits (up to 10 s) for a gauge to read `want` after a change: the server reuses its
/// verdict for a second.
pub fn settles(addr: &str, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(addr, name) != want {
        assert!(Instant::now() < deadline, "{name} never read {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether missing tools or privileges fail the test instead of skipping it
/// (`ORA_TEST_STRICT=1`, which scripts/test.sh and CI set).
pub fn strict() -> bool {
    std::env::var("ORA_TEST_STRICT").is_ok_and(|v| v == "1")
}

/// Reports a test that cannot run here: a loud SKIP line on a developer's machine, a failure
/// under `ORA_TEST_STRICT=1`.
pub fn skip(test: &str, why: &str) {
    if strict() {
        panic!("{test} cannot run here ({why}) and ORA_TEST_STRICT=1 forbids skipping it");
    }
    eprintln!("SKIP {test}: {why}");
}

/// Whether a command is on PATH.
pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// SQL that runs `update` on the ledger of `db` behind ora's back: its append-only guard
/// dropped for the statement and put back as it was, so that nothing but the edit shows.
pub fn behind_the_guard(db: &Path, update: &str) -> String {
    let guard: String = rusqlite::Connection::open(db)
        .expect("open")
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'inventory_transactions_no_update'",
            [],
            |r| r.get(0),
        )
        .expect("the ledger's guard");
    format!("DROP TRIGGER inventory_transactions_no_update; {update}; {guard};")
}

/// A small tmpfs mounted at a new directory (a full disk for a test), unmounted on drop.
/// Root only.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("create the mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount a tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A database as an older ora left it: the first `version` migrations, with one product and
/// its movement.
pub fn older_database(path: &Path, version: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    for sql in &ora::store::schema::MIGRATIONS[..version] {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch(&format!(
        "PRAGMA user_version = {version}; PRAGMA application_id = {};
         INSERT INTO inventory_current (sku, product_name, current_quantity, reorder_point, last_updated)
              VALUES ('A-1', 'Lamp', 4, 0, '2026-11-01T00:00:00.000Z');
         INSERT INTO inventory_transactions (date, sku, transaction_type, quantity, created_at)
              VALUES ('2026-11-01', 'A-1', 'Receive', 4, '2026-11-01T00:00:00.000Z');",
        ora::store::schema::APPLICATION_ID
    ))
    .unwrap();
}
