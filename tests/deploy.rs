//! Deployment: the systemd units verify, the scripts pass shellcheck, install.sh is idempotent
//! with the intended modes, restore.sh works end to end against a real server (with a stand-in
//! for systemctl that really stops and starts it), readiness and watchdog notifications reach
//! NOTIFY_SOCKET, and the heartbeat reaches a real HTTP listener.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{clean_env, free_port, http, query_i64, Sandbox, ORA};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn install_into(dest: &Path) -> std::process::Output {
    Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .args(["--binary", ORA])
        .env("DESTDIR", dest)
        .output()
        .expect("run install.sh")
}

/// (path, mode, content digest) of every entry under `root`.
fn tree(root: &Path) -> BTreeMap<String, (u32, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, u64)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let digest = if meta.is_file() {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).unwrap().hash(&mut h);
                h.finish()
            } else {
                0
            };
            out.insert(rel, (meta.permissions().mode() & 0o7777, digest));
            if meta.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

// install.sh into a DESTDIR twice gives the same tree, with the intended modes, and never
// overwrites an existing configuration.
#[test]
fn install_is_idempotent_with_the_intended_modes() {
    let dir = tempfile::tempdir().unwrap();
    let out = install_into(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = tree(dir.path());
    let mode = |p: &str| {
        first
            .get(p)
            .unwrap_or_else(|| panic!("{p} not installed"))
            .0
    };
    assert_eq!(mode("usr/local/bin/ora"), 0o755);
    assert_eq!(mode("usr/local/lib/ora/ora-job"), 0o755);
    assert_eq!(mode("usr/local/lib/ora/restore.sh"), 0o755);
    assert_eq!(mode("etc/ora/ora.toml"), 0o640);
    assert_eq!(mode("etc/ora/ora.env"), 0o640);
    assert_eq!(mode("var/lib/ora"), 0o750);
    assert_eq!(mode("var/backups/ora"), 0o750);
    for unit in [
        "ora.service",
        "ora-backup.timer",
        "ora-backup.service",
        "ora-weekly.timer",
        "ora-health.timer",
        "ora-archive.timer",
        "ora-replica-verify.timer",
        "ora-replica-verify.service",
    ] {
        assert_eq!(mode(&format!("etc/systemd/system/{unit}")), 0o644, "{unit}");
    }
    let out = install_into(dir.path());
    assert!(out.status.success());
    assert_eq!(tree(dir.path()), first, "a second install changed the tree");
    // An operator's configuration survives a re-install.
    let conf = dir.path().join("etc/ora/ora.toml");
    std::fs::write(&conf, "[database]\npath = \"/srv/ora.db\"\n").unwrap();
    let out = install_into(dir.path());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("keeping the existing /etc/ora/ora.toml"));
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "[database]\npath = \"/srv/ora.db\"\n"
    );
}

// Every unit passes `systemd-analyze verify` (with its paths pointed at a staged install).
#[test]
fn units_pass_systemd_analyze_verify() {
    let units: Vec<PathBuf> = std::fs::read_dir(repo().join("systemd"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "service" || e == "timer")
        })
        .collect();
    assert_eq!(units.len(), 11);
    // The lint that runs everywhere: the hardening and the timer settings the design asks for.
    for u in &units {
        let text = std::fs::read_to_string(u).unwrap();
        if u.extension().is_some_and(|e| e == "timer") {
            assert!(
                text.contains("Persistent=true") && text.contains("OnCalendar="),
                "{u:?}"
            );
        } else {
            for key in [
                "User=ora",
                "ProtectSystem=strict",
                "ProtectHome=true",
                "PrivateTmp=true",
                "NoNewPrivileges=true",
                "CapabilityBoundingSet=\n",
                "ReadWritePaths=",
                "InaccessiblePaths=-/dev/shm",
            ] {
                assert!(text.contains(key), "{u:?} lacks {key}");
            }
        }
    }
    let main = std::fs::read_to_string(repo().join("systemd/ora.service")).unwrap();
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "--config /etc/ora/ora.toml serve",
    ] {
        assert!(main.contains(key), "ora.service lacks {key}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::util::skip(
            "systemd-analyze verify",
            "systemd-analyze is not installed (scripts/test.sh installs it)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(install_into(dir.path()).status.success());
    let sys = dir.path().join("etc/systemd/system");
    let staged_prefix = format!("{}/usr/local/", dir.path().display());
    let mut names = Vec::new();
    for e in std::fs::read_dir(&sys).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path())
            .unwrap()
            .replace("/usr/local/", &staged_prefix);
        std::fs::write(e.path(), text).unwrap();
        names.push(e.path());
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(&*sys.display().to_string()) || l.contains("ora"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{err}"
    );
}

// Every script passes `bash -n` and shellcheck.
#[test]
fn scripts_pass_shellcheck() {
    let scripts: Vec<PathBuf> = std::fs::read_dir(repo().join("scripts"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .chain([repo().join(".ci/run"), repo().join("tests/systemd/boot.sh")])
        .collect();
    assert!(scripts.len() >= 5);
    for s in &scripts {
        let st = Command::new("bash").arg("-n").arg(s).status().unwrap();
        assert!(st.success(), "bash -n {s:?}");
    }
    match Command::new("shellcheck")
        .args(["-x", "-S", "style"])
        .args(&scripts)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "shellcheck:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => crate::util::skip(
            "shellcheck",
            "not installed (scripts/test.sh installs it); bash -n passed",
        ),
    }
}

/// A stand-in for systemctl that really stops and starts `ora serve` for one database.
fn fake_systemctl(bin: &Path, state: &Path, db: &Path, addr: &str) {
    let script = format!(
        r#"#!/usr/bin/env bash
# test stand-in for systemctl: start/stop one `ora serve`
set -u
pidfile={state}/ora.pid
case "$1" in
  start)
    nohup {ora} --db {db} serve --bind {addr} >>{state}/serve.log 2>&1 &
    echo $! > "$pidfile"; echo start >> {state}/calls ;;
  stop)
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile"); kill -TERM "$pid" 2>/dev/null
      while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
      rm -f "$pidfile"
    fi
    echo stop >> {state}/calls ;;
  *) echo "fake systemctl: $*" >&2; exit 1 ;;
esac
"#,
        state = state.display(),
        ora = ORA,
        db = db.display(),
        addr = addr
    );
    let path = bin.join("systemctl");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn marker(db: &Path) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT status FROM workflows WHERE name = 'marker'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

// restore.sh end to end: a good backup replaces the database and the server comes back
// healthy; a damaged one leaves the old database serving.
#[test]
fn restore_script_replaces_the_database_or_leaves_the_old_one_serving() {
    if Command::new("curl").arg("--version").output().is_err() {
        crate::util::skip(
            "restore.sh end to end",
            "curl is not installed (scripts/test.sh installs it)",
        );
        return;
    }
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Widget", "--initial", "5"]);
    s.ok(&["workflow", "set", "marker", "from-backup"]);
    let backup = s.json(&["backup"])["file"].as_str().unwrap().to_string();
    s.ok(&["workflow", "set", "marker", "live"]);
    s.ok(&["stock", "receive", "A-1", "100"]);
    let bin = s.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    fake_systemctl(&bin, s.dir.path(), &s.db, &addr);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config = s.path("ora.toml");
    std::fs::write(
        &config,
        format!("[database]\npath = {:?}\n", s.db.display().to_string()),
    )
    .unwrap();
    let run_script = |file: &str| {
        let mut c = Command::new("bash");
        clean_env(&mut c);
        c.arg(repo().join("scripts/restore.sh"))
            .arg(file)
            .env("PATH", &path)
            .env("ORA_BIN", ORA)
            .env("ORA_CONFIG", &config)
            .env("ORA_HEALTH_URL", format!("http://{addr}/health"))
            .env("ORA_WAIT_SECONDS", "30")
            .output()
            .unwrap()
    };
    // The service is running on the live database.
    let st = Command::new(bin.join("systemctl"))
        .arg("start")
        .status()
        .unwrap();
    assert!(st.success());
    wait_up(&addr);

    // A missing file: exit 2 and a message that ends where the sentence does (it used to end
    // with the exit code: "... `ora backups list` 2").
    let out = run_script(s.path("nope.db.gz").to_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.trim_end().ends_with("`ora backups list`"), "{err}");

    // A damaged backup: refused before anything stops; the old database keeps serving.
    let damaged = s.path("damaged.db.gz");
    let mut bytes = std::fs::read(&backup).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    std::fs::copy(
        format!("{backup}.sha256"),
        format!("{}.sha256", damaged.display()),
    )
    .unwrap();
    let out = run_script(damaged.to_str().unwrap());
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("keeps running"));
    let (st, _, _) = http(&addr, "GET", "/health", &[], b"").unwrap();
    assert_eq!(st, 200);
    assert_eq!(marker(&s.db), "live");

    // A good backup: stop, restore, start, healthy.
    let out = run_script(&backup);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("health: \"status\":"), "{stdout}");
    assert!(stdout.contains("the previous one is kept as"), "{stdout}");
    let (st, _, _) = http(&addr, "GET", "/health", &[], b"").unwrap();
    assert_eq!(st, 200);
    assert_eq!(marker(&s.db), "from-backup");
    assert_eq!(
        query_i64(&s.db, "SELECT current_quantity FROM inventory_current"),
        5
    );
    let calls = std::fs::read_to_string(s.dir.path().join("calls")).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["start", "stop", "start"]
    );
    let st = Command::new(bin.join("systemctl"))
        .arg("stop")
        .status()
        .unwrap();
    assert!(st.success());
}

fn wait_up(addr: &str) {
    for _ in 0..200 {
        if let Ok((200, _, _)) = http(addr, "GET", "/health", &[], b"") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server did not come up at {addr}");
}

// READY=1 once the database is open and the port bound, WATCHDOG=1 while serving,
// STOPPING=1 on SIGTERM, all on the socket systemd would pass in NOTIFY_SOCKET.
#[test]
fn readiness_and_watchdog_reach_notify_socket() {
    let s = Sandbox::new();
    let sock_path = s.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = s
        .cmd(&["serve", "--bind", &addr])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let recv = |buf: &mut [u8]| {
        let n = sock.recv(buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv(&mut buf);
    assert!(first.starts_with("READY=1"), "{first}");
    assert!(
        first.contains(&format!("MAINPID={}", child.id())),
        "{first}"
    );
    // Ready means ready: the port answers now.
    let (st, _, _) = http(&addr, "GET", "/health", &[], b"").unwrap();
    assert_eq!(st, 200);
    let mut pings = 0;
    while pings < 3 {
        let m = recv(&mut buf);
        assert_eq!(m, "WATCHDOG=1");
        pings += 1;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stopping = false;
    for _ in 0..10 {
        let m = recv(&mut buf);
        if m.starts_with("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A one-shot HTTP listener recording request lines and bodies.
pub(crate) fn listener() -> (String, std::sync::mpsc::Receiver<(String, String)>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let mut w = stream;
            let _ =
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
            let _ = tx.send((
                line.trim().to_string(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
    });
    (addr, rx)
}

// The heartbeat: a successful job pings URL, a failed one posts its one-line reason to
// URL/fail; the job's exit status and its error line reach the journal either way.
#[test]
fn timer_jobs_ping_the_heartbeat_with_a_reason() {
    if Command::new("curl").arg("--version").output().is_err() {
        crate::util::skip(
            "heartbeat",
            "curl is not installed (scripts/test.sh installs it)",
        );
        return;
    }
    let (addr, seen) = listener();
    let url = format!("http://{addr}/ping/abc-123");
    let job = repo().join("scripts/ora-job.sh");
    let ok = Command::new("bash")
        .arg(&job)
        .args(["backup", "true"])
        .env("HEARTBEAT_URL", &url)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let (line, _) = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("success ping");
    assert_eq!(line, "GET /ping/abc-123 HTTP/1.1");
    let failing =
        "echo 'ora: backup: write /var/backups/ora/x: No space left on device' >&2; exit 3";
    let bad = Command::new("bash")
        .arg(&job)
        .args(["backup", "sh", "-c", failing])
        .env("HEARTBEAT_URL", &url)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(3));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("ora-job: backup failed (exit 3): ora: backup: write /var/backups/ora/x: No space left on device"), "{err}");
    let (line, body) = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("failure ping");
    assert_eq!(line, "POST /ping/abc-123/fail HTTP/1.1");
    assert_eq!(
        body,
        "backup: ora: backup: write /var/backups/ora/x: No space left on device"
    );
    // A failing `ora health` names the failing check, not only its exit status.
    let s = Sandbox::new();
    let health = Command::new("bash")
        .arg(&job)
        .args(["health", ORA, "--db"])
        .arg(s.path("never-created.db"))
        .arg("health")
        .env("HEARTBEAT_URL", &url)
        .output()
        .unwrap();
    assert_eq!(health.status.code(), Some(1));
    let (line, body) = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("health failure ping");
    assert_eq!(line, "POST /ping/abc-123/fail HTTP/1.1");
    assert!(
        body.starts_with("health: ora: health FAIL: file: the database file is missing"),
        "{body}"
    );
    // --fail-only (the first step of a unit with two): success pings nothing, so a good
    // night pings once. The next ping received is the one after it.
    let first = Command::new("bash")
        .arg(&job)
        .args(["--fail-only", "backup", "true"])
        .env("HEARTBEAT_URL", &url)
        .output()
        .unwrap();
    assert!(first.status.success());
    let last = Command::new("bash")
        .arg(&job)
        .args(["maintain-daily", "true"])
        .env("HEARTBEAT_URL", format!("{url}-last"))
        .output()
        .unwrap();
    assert!(last.status.success());
    let (line, _) = seen.recv_timeout(Duration::from_secs(10)).expect("ping");
    assert_eq!(line, "GET /ping/abc-123-last HTTP/1.1");
    // Without a URL nothing is pinged and the status still passes through.
    let quiet = Command::new("bash")
        .arg(&job)
        .args(["health", "sh", "-c", "exit 1"])
        .env_remove("HEARTBEAT_URL")
        .output()
        .unwrap();
    assert_eq!(quiet.status.code(), Some(1));
    assert!(seen.recv_timeout(Duration::from_millis(300)).is_err());
}

// The cron health check passes `ora health`'s verdict through.
#[test]
fn health_check_script_passes_the_verdict_through() {
    let s = Sandbox::new();
    let config = s.path("ora.toml");
    std::fs::write(
        &config,
        format!("[database]\npath = {:?}\n", s.db.display().to_string()),
    )
    .unwrap();
    let log = s.path("health.log");
    let run = || {
        Command::new("bash")
            .arg(repo().join("scripts/health_check.sh"))
            .env("ORA_BIN", ORA)
            .env("ORA_CONFIG", &config)
            .env("ORA_HEALTH_LOG", &log)
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("health of"));
    std::fs::remove_file(&s.db).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing"));
}
