//! HTTPS in `ora serve`: a pair made by `ora tls selfsigned` is served, a client that pins it
//! gets answers and one that pins another certificate does not; SIGHUP reads a renewed pair
//! (a bad one is refused and the one in use stays); plain HTTP beyond loopback needs
//! `allow_plain_http` and is shown on the page; a standby follows its primary over HTTPS only
//! with the primary's certificate pinned; bad certificate files, settings and pins are
//! refused with a clear error.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::{free_port, http, Sandbox};

const TOKEN: &str = "tls-test-token-0123456789";

/// Makes a pair with the real CLI in `sb` under `name`; returns (cert, key, pin).
fn pair(sb: &Sandbox, name: &str) -> (PathBuf, PathBuf, [u8; 32]) {
    let (cert, key) = (
        sb.path(&format!("{name}-cert.pem")),
        sb.path(&format!("{name}-key.pem")),
    );
    let out = sb.json(&[
        "tls",
        "selfsigned",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let fp = out["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(
        sb.ok(&["tls", "fingerprint", cert.to_str().unwrap()])
            .trim(),
        fp
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is private");
    (cert, key, ora::tls::parse_pin(&fp).unwrap())
}

/// Writes a configuration serving `cert` and `key`, then `more` (more `[server]` keys, or
/// other sections).
fn tls_config(cfg: &Path, cert: &Path, key: &Path, more: &str) {
    let body = format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n{more}",
        cert.to_str().unwrap(),
        key.to_str().unwrap()
    );
    std::fs::write(cfg, body).unwrap();
}

/// GET over HTTPS trusting only `pin`: the status, or why no answer came.
fn get(addr: &str, path: &str, pin: [u8; 32]) -> Result<(u16, String), String> {
    let config = ora::tls::Trust::new(vec![pin], None).config()?;
    let agent = ureq::AgentBuilder::new()
        .tls_config(config)
        .timeout(Duration::from_secs(10))
        .build();
    match agent.get(&format!("https://{addr}{path}")).call() {
        Ok(r) => Ok((r.status(), r.into_string().unwrap_or_default())),
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

fn serve(sb: &Sandbox, cfg: &Path, addr: &str, log: &Path) -> Child {
    sb.cmd(&["--config", cfg.to_str().unwrap(), "serve", "--bind", addr])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits (up to 30 s) until `ok` holds, polling.
fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn https_serves_its_pair_and_reads_a_renewed_one_on_sighup() {
    let sb = Sandbox::new();
    let (cert, key, a) = pair(&sb, "a");
    let (b_cert, b_key, b) = pair(&sb, "b");
    let cfg = sb.path("ora.toml");
    tls_config(&cfg, &cert, &key, &format!("token = \"{TOKEN}\"\n"));
    let addr = format!("127.0.0.1:{}", free_port());
    let log = sb.path("serve.log");
    let child = Killed(serve(&sb, &cfg, &addr, &log));
    until("the server answers over HTTPS", || {
        matches!(get(&addr, "/health/live", a), Ok((200, _)))
    });
    // Another certificate pinned: no answer. Plain HTTP: no HTTP answer either.
    let wrong = get(&addr, "/health/live", b).unwrap_err();
    assert!(wrong.contains("not a pinned one"), "{wrong}");
    assert!(http(&addr, "GET", "/health/live", &[], b"")
        .map(|(s, _, _)| s != 200)
        .unwrap_or(true));
    // Writes with the token work over HTTPS.
    let config = ora::tls::Trust::new(vec![a], None).config().unwrap();
    let agent = ureq::AgentBuilder::new().tls_config(config).build();
    let r = agent
        .post(&format!("https://{addr}/api/products"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .set("Content-Type", "application/json")
        .send_string(r#"{"sku": "TLS-1", "product_name": "Lamp"}"#)
        .unwrap();
    assert_eq!(r.status(), 201);

    // A renewed pair, then SIGHUP: new connections get it.
    std::fs::rename(&b_cert, &cert).unwrap();
    std::fs::rename(&b_key, &key).unwrap();
    let hup = || unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    hup();
    until("the renewed certificate is served", || {
        matches!(get(&addr, "/health/live", b), Ok((200, _)))
    });
    assert!(get(&addr, "/health/live", a).is_err());
    // A broken pair: refused with a message, the renewed one stays in use.
    std::fs::write(&key, b"not a key").unwrap();
    hup();
    until("the failed reload is logged", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("reload on SIGHUP failed")
    });
    assert!(matches!(get(&addr, "/health/live", b), Ok((200, _))));
}

#[test]
fn plain_http_beyond_loopback_needs_allow_plain_http_and_is_shown() {
    let sb = Sandbox::new();
    let cfg = sb.path("ora.toml");
    std::fs::write(&cfg, format!("[server]\ntoken = \"{TOKEN}\"\n")).unwrap();
    let port = free_port();
    let any = format!("0.0.0.0:{port}");
    let err = sb.fails(
        &["--config", cfg.to_str().unwrap(), "serve", "--bind", &any],
        2,
    );
    assert!(
        err.contains("plain HTTP") && err.contains("tls_cert"),
        "{err}"
    );
    std::fs::write(
        &cfg,
        format!("[server]\ntoken = \"{TOKEN}\"\nallow_plain_http = true\n"),
    )
    .unwrap();
    let log = sb.path("serve.log");
    let _child = Killed(serve(&sb, &cfg, &any, &log));
    let here = format!("127.0.0.1:{port}");
    until("the server answers", || {
        http(&here, "GET", "/health/live", &[], b"").is_ok()
    });
    let (status, _, page) = http(&here, "GET", "/", &[], b"").unwrap();
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&page).contains("PLAIN HTTP on 0.0.0.0"),
        "the page warns"
    );
    // With a certificate, the same bind needs no permission and shows no warning.
    let (cert, key, pin) = pair(&sb, "c");
    drop(_child);
    tls_config(&cfg, &cert, &key, &format!("token = \"{TOKEN}\"\n"));
    let port = free_port();
    let _child = Killed(serve(&sb, &cfg, &format!("0.0.0.0:{port}"), &log));
    let here = format!("127.0.0.1:{port}");
    until("the server answers over HTTPS", || {
        matches!(get(&here, "/health/live", pin), Ok((200, _)))
    });
    let (_, page) = get(&here, "/", pin).unwrap();
    assert!(!page.contains("PLAIN HTTP"));
}

#[test]
fn bad_certificates_settings_and_pins_are_refused_clearly() {
    let sb = Sandbox::new();
    let (cert, key, _) = pair(&sb, "a");
    let (other_cert, _, _) = pair(&sb, "b");
    let cfg = sb.path("ora.toml");
    let junk = sb.path("junk.pem");
    std::fs::write(
        &junk,
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let huge = sb.path("huge.pem");
    std::fs::write(&huge, vec![b'A'; 2 << 20]).unwrap();
    let missing = sb.path("missing.pem");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(String, &str)> = vec![
        (format!("tls_cert = {:?}\n", s(&cert)), "go together"),
        (
            format!("tls_cert = {:?}\ntls_key = {:?}\n", s(&junk), s(&key)),
            "junk.pem",
        ),
        (
            format!("tls_cert = {:?}\ntls_key = {:?}\n", s(&huge), s(&key)),
            "larger than 1 MiB",
        ),
        (
            format!("tls_cert = {:?}\ntls_key = {:?}\n", s(&missing), s(&key)),
            "cannot read it",
        ),
        (
            format!("tls_cert = {:?}\ntls_key = {:?}\n", s(&other_cert), s(&key)),
            "do not go together",
        ),
        (
            format!("tls_cert = {:?}\ntls_key = {:?}\n", s(&cert), s(&cert)),
            "not a PEM private key",
        ),
        ("allow_plain_http = \"yes\"\n".into(), "allow_plain_http"),
    ];
    for (server, expect) in cases {
        std::fs::write(&cfg, format!("[server]\n{server}")).unwrap();
        let port = free_port().to_string();
        let err = sb.fails(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
            ],
            2,
        );
        assert!(err.contains(expect), "{server}: {err}");
    }
    for pin in ["sha256:xyz", "", &"f".repeat(63), &"é".repeat(64)] {
        std::fs::write(&cfg, format!("[standby]\ntls_pins = [{pin:?}]\n")).unwrap();
        let err = sb.fails(&["--config", cfg.to_str().unwrap(), "health"], 2);
        assert!(err.contains("tls_pins"), "{pin:?}: {err}");
        let err = sb.fails(
            &["standby", "--from", "https://127.0.0.1:1", "--pin", pin],
            2,
        );
        assert!(
            err.contains("fingerprint") || err.contains("--pin"),
            "{pin:?}: {err}"
        );
    }
    // `tls fingerprint` of something that is not a certificate, and a pair that would replace files.
    let err = sb.fails(&["tls", "fingerprint", key.to_str().unwrap()], 2);
    assert!(err.contains("certificate"), "{err}");
    let err = sb.fails(
        &[
            "tls",
            "selfsigned",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            sb.path("k2").to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("already exists"), "{err}");
    assert!(!sb.path("k2").exists(), "nothing written when refused");
    let err = sb.fails(
        &[
            "tls",
            "selfsigned",
            "--name",
            "a b",
            "--cert",
            "x",
            "--key",
            "y",
        ],
        2,
    );
    assert!(err.contains("--name"), "{err}");
}

/// `GET /replication/status` over plain HTTP on a loopback standby.
fn status(addr: &str) -> serde_json::Value {
    let (code, v) = crate::util::call(addr, "GET", "/replication/status", Some(TOKEN), None);
    assert_eq!(code, 200, "{v}");
    v
}

#[test]
fn a_standby_follows_over_https_only_with_the_primarys_certificate_pinned() {
    let p = Sandbox::new();
    let (cert, key, pin) = pair(&p, "p");
    let (_, _, other) = pair(&p, "o");
    let cfg = p.path("ora.toml");
    tls_config(
        &cfg,
        &cert,
        &key,
        &format!("[standby]\ntoken = \"{TOKEN}\"\n"),
    );
    let paddr = format!("127.0.0.1:{}", free_port());
    let _primary = Killed(serve(&p, &cfg, &paddr, &p.path("serve.log")));
    until("the primary answers over HTTPS", || {
        matches!(get(&paddr, "/health/live", pin), Ok((200, _)))
    });
    let config = ora::tls::Trust::new(vec![pin], None).config().unwrap();
    let agent = ureq::AgentBuilder::new().tls_config(config).build();
    let r = agent
        .post(&format!("https://{paddr}/api/products"))
        .set("Content-Type", "application/json")
        .send_string(r#"{"sku": "TLS-1", "product_name": "Lamp"}"#)
        .unwrap();
    assert_eq!(r.status(), 201);

    let standby = |pin: [u8; 32]| {
        let sb = Sandbox::empty();
        let scfg = sb.path("ora.toml");
        std::fs::write(&scfg, format!("[standby]\ntoken = \"{TOKEN}\"\n")).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let fp = format!("sha256:{}", ora::fsutil::hex(&pin));
        let child = sb
            .cmd(&[
                "--config",
                scfg.to_str().unwrap(),
                "standby",
                "--from",
                &format!("https://{paddr}"),
                "--pin",
                &fp,
                "--bind",
                &addr,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        until("the standby answers", || {
            http(&addr, "GET", "/health/live", &[], b"").is_ok()
        });
        (sb, addr, Killed(child))
    };
    // Pinned to the primary's certificate: it takes a base and follows.
    let (good, gaddr, _g) = standby(pin);
    until("the standby holds the primary's product", || {
        let s = status(&gaddr);
        s["follower"]["state"] == "following"
            && crate::util::query_i64(&good.db, "SELECT count(*) FROM inventory_current") == 1
    });
    // Pinned to another certificate: it refuses the primary and changes nothing.
    let (bad, baddr, _b) = standby(other);
    until("the standby says why it cannot follow", || {
        status(&baddr)["follower"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not a pinned one"))
    });
    assert_eq!(
        crate::util::query_i64(&bad.db, "SELECT count(*) FROM inventory_current"),
        0
    );
}

// Under systemd's watchdog the server asks itself for /health/live; over HTTPS it must ask
// over TLS, or systemd would restart a healthy server.
#[test]
fn the_watchdog_is_fed_by_a_server_speaking_https() {
    use std::os::unix::net::UnixDatagram;
    let sb = Sandbox::new();
    let (cert, key, _) = pair(&sb, "a");
    let cfg = sb.path("ora.toml");
    tls_config(&cfg, &cert, &key, "");
    let sock_path = sb.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let _child = Killed(
        sb.cmd(&["--config", cfg.to_str().unwrap(), "serve", "--bind", &addr])
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    // The start-up tick alone yields a ping or two; six need the probe's answers.
    let (mut ready, mut pings) = (false, 0);
    loop {
        assert!(
            Instant::now() < deadline,
            "no WATCHDOG=1 from an HTTPS server"
        );
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if msg.contains("READY=1") {
            assert!(msg.contains("https://"), "{msg}");
            ready = true;
        }
        if msg.contains("WATCHDOG=1") && ready {
            pings += 1;
            if pings == 6 {
                break;
            }
        }
    }
}
