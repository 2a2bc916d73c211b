//! The HTTP server against hostile clients, over real sockets to a real `ora serve`: a
//! byte-level corpus of malformed and ambiguous requests (each answered 4xx or closed, never
//! 5xx, the server answering /health after each, nothing written), requests that trickle in
//! (cut at their deadline however slowly they arrive), 300 slowloris connections and 100
//! clients that never read (while /health stays answered), connections over the cap (a
//! readable 503), and the watchdog fed only while the server answers its own probe.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::{call, Sandbox, Server};
use crate::web::seeded;

/// What became of one request sent on its own connection.
#[derive(Debug)]
struct Outcome {
    /// The status of the first answer, 0 when none came.
    status: u16,
    /// The server closed the connection (rather than keeping it open for more).
    closed: bool,
    text: String,
}

/// Sends `bytes` (without closing our side) and reads until the server closes or `wait`
/// passes without a byte.
fn send(addr: &str, bytes: &[u8], wait: Duration) -> Outcome {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(wait)).expect("timeout");
    // A server that refuses early may reset the rest of a long request: that is "closed".
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(_) => break true,
        }
    };
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Outcome {
        status,
        closed,
        text,
    }
}

fn health(addr: &str) -> u16 {
    call(addr, "GET", "/health", None, None).0
}

// Every request a standard parser rejects, and every framing trick that could make ora and a
// proxy in front of it disagree on where a request ends: answered 400 (or 4xx where a limit
// is the reason) and the connection closed, never a 5xx, the server fine after each, and not
// one row written.
#[test]
fn hostile_requests_are_refused_and_change_nothing() {
    let s = seeded();
    // A short deadline: the truncated requests are cut after it.
    let srv = server_with(&s, "[server]\nread_timeout_ms = 1000\n");
    let a = srv.addr.as_str();
    let before = s.snapshot();
    let post = |extra: &str, body: &str| -> Vec<u8> {
        format!("POST /api/transactions HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\n{extra}\r\n{body}").into_bytes()
    };
    let get = |extra: &str| -> Vec<u8> {
        format!("GET /health HTTP/1.1\r\nHost: {a}\r\n{extra}\r\n").into_bytes()
    };
    let movement = r#"{"sku":"A-1","type":"Receive","quantity":5}"#;
    let n = movement.len();
    let mut not_utf8 = format!("GET /health HTTP/1.1\r\nHost: {a}\r\nX-Test: ").into_bytes();
    not_utf8.extend_from_slice(b"\xff\xfe\r\n\r\n");
    // (name, request, the exact status when one is required; None: any 4xx or a close)
    let mut corpus: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        (
            "two different Content-Lengths",
            post(&format!("Content-Length: {n}\r\nContent-Length: {}\r\n", n + 1), movement),
            Some(400),
        ),
        ("a signed Content-Length", post(&format!("Content-Length: +{n}\r\n"), movement), Some(400)),
        ("a negative Content-Length", post("Content-Length: -1\r\n", movement), Some(400)),
        ("a hex Content-Length", post("Content-Length: 0x2b\r\n", movement), Some(400)),
        ("a list as Content-Length", post(&format!("Content-Length: {n}, {n}\r\n"), movement), None),
        (
            "an overflowing Content-Length",
            post("Content-Length: 99999999999999999999999999\r\n", movement),
            Some(400),
        ),
        (
            "chunked followed by a vertical tab",
            post("Transfer-Encoding: chunked\x0b\r\n", "1\r\n{\r\n0\r\n\r\n"),
            Some(400),
        ),
        (
            "another coding in a second Transfer-Encoding header",
            post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", "1\r\n{\r\n0\r\n\r\n"),
            Some(400),
        ),
        (
            "chunked twice",
            post("Transfer-Encoding: chunked, chunked\r\n", "1\r\n{\r\n0\r\n\r\n"),
            Some(400),
        ),
        ("an unknown coding", post("Transfer-Encoding: identity\r\n", movement), Some(400)),
        (
            "both Content-Length and chunked",
            post(&format!("Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n"), "1\r\n{\r\n0\r\n\r\n"),
            Some(400),
        ),
        ("a NUL in a header value", get("X-Test: a\0b\r\n"), Some(400)),
        ("a bare CR in a header value", get("X-Test: a\rb\r\n"), Some(400)),
        ("a header line ended by a bare CR", get("X-Test: a\r"), Some(400)),
        ("obs-fold", get("X-Test: a\r\n folded\r\n"), Some(400)),
        ("a space before the colon", get("X-Test : a\r\n"), Some(400)),
        ("a header without a colon", get("X-Test\r\n"), Some(400)),
        ("a header value that is not UTF-8", not_utf8, Some(400)),
        ("no Host", b"GET /health HTTP/1.1\r\n\r\n".to_vec(), Some(400)),
        (
            "two Host headers",
            format!("GET /health HTTP/1.1\r\nHost: {a}\r\nHost: {a}\r\n\r\n").into_bytes(),
            Some(400),
        ),
        (
            "an absolute-form target",
            format!("GET http://{a}/health HTTP/1.1\r\nHost: {a}\r\n\r\n").into_bytes(),
            Some(400),
        ),
        (
            "an asterisk target",
            format!("OPTIONS * HTTP/1.1\r\nHost: {a}\r\n\r\n").into_bytes(),
            Some(400),
        ),
        (
            "CONNECT",
            format!("CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n").into_bytes(),
            None,
        ),
        ("HTTP/0.9", b"GET /health\r\n\r\n".to_vec(), None),
        ("HTTP/1.2", format!("GET /health HTTP/1.2\r\nHost: {a}\r\n\r\n").into_bytes(), None),
        ("the HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), None),
        ("TLS instead of HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), None),
        ("a NUL in the method", format!("G\0T /health HTTP/1.1\r\nHost: {a}\r\n\r\n").into_bytes(), None),
        ("two spaces in the request line", format!("GET  /health HTTP/1.1\r\nHost: {a}\r\n\r\n").into_bytes(), None),
        ("a truncated request line", b"GET /hea".to_vec(), None),
        ("a truncated head", format!("GET /health HTTP/1.1\r\nHost: {a}\r\nX-A: b").into_bytes(), None),
        (
            "a truncated body",
            post("Content-Length: 400\r\n", "{\"sku\":"),
            None,
        ),
        (
            "a truncated chunk",
            post("Transfer-Encoding: chunked\r\n", "40\r\n{\"sku\":"),
            None,
        ),
        (
            "a huge chunk size after a first chunk",
            post("Transfer-Encoding: chunked\r\n", "1\r\n{\r\nffffffffffffffff\r\n"),
            None,
        ),
        (
            "a chunk size over 64 bits",
            post("Transfer-Encoding: chunked\r\n", "1\r\n{\r\n10000000000000000\r\n"),
            None,
        ),
        ("a signed chunk size", post("Transfer-Encoding: chunked\r\n", "+1\r\n{\r\n0\r\n\r\n"), Some(400)),
        ("a chunk size with a space", post("Transfer-Encoding: chunked\r\n", "1 x\r\n{\r\n0\r\n\r\n"), Some(400)),
        ("a hex-prefixed chunk size", post("Transfer-Encoding: chunked\r\n", "0x1\r\n{\r\n0\r\n\r\n"), Some(400)),
        ("a chunk without its CRLF", post("Transfer-Encoding: chunked\r\n", "1\r\n{XX0\r\n\r\n"), Some(400)),
        (
            "a body declared larger than the limit (10^15 bytes)",
            post("Content-Length: 1000000000000000\r\n", movement),
            Some(413),
        ),
        (
            "an oversized body that waits for 100 Continue",
            post("Content-Length: 5000000\r\nExpect: 100-continue\r\n", ""),
            Some(413),
        ),
        (
            "HTTP/1.0 with Expect: 100-continue",
            format!("POST /api/transactions HTTP/1.0\r\nHost: {a}\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\nContent-Length: {n}\r\n\r\n{movement}").into_bytes(),
            Some(415),
        ),
    ];
    // A head over 16 KiB, and more than 100 headers: 431.
    corpus.push((
        "a 20 KiB header",
        get(&format!("X-Big: {}\r\n", "y".repeat(20 * 1024))),
        Some(431),
    ));
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    corpus.push(("150 headers", get(&many), Some(431)));
    // 10,000 trailer lines after the last chunk.
    let trailers: String = (0..10_000).map(|i| format!("X-T{i}: v\r\n")).collect();
    corpus.push((
        "10,000 trailer lines",
        post(
            "Transfer-Encoding: chunked\r\n",
            &format!("1\r\n{{\r\n0\r\n{trailers}\r\n"),
        ),
        None,
    ));
    for (name, bytes, want) in &corpus {
        let o = send(a, bytes, Duration::from_secs(15));
        assert!(o.status < 500, "{name}: a server error: {}", o.text);
        match want {
            Some(code) => assert_eq!(o.status, *code, "{name}: {}", o.text),
            None => assert!(
                o.status == 0 || (400..500).contains(&o.status),
                "{name}: {}",
                o.text
            ),
        }
        assert!(
            o.closed,
            "{name}: the connection was kept open after {}",
            o.status
        );
        if o.status >= 400 && o.text.contains("\r\n\r\n{") {
            let body = o.text.split("\r\n\r\n").nth(1).unwrap_or("");
            let v: serde_json::Value = serde_json::from_str(body)
                .unwrap_or_else(|_| panic!("{name}: the error is not JSON: {body}"));
            assert!(v["error"].is_string(), "{name}: {v}");
        }
        assert_eq!(health(a), 200, "after {name}");
    }
    drop(srv);
    assert_eq!(s.snapshot(), before, "a hostile request wrote something");
}

/// Writes `config` beside the database and starts a server with it.
fn server_with(s: &Sandbox, config: &str) -> Server {
    let cfg = s.path("ora.toml");
    std::fs::write(&cfg, config).expect("config");
    Server::start(s, &["--config", cfg.to_str().expect("path")])
}

/// Waits (up to `limit`) for the server to close `c`; true when it did.
fn closed_by_server(c: &mut TcpStream, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut buf = [0u8; 65536];
    while Instant::now() < until {
        let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

// A head or a body that trickles in one byte at a time is cut off when its deadline passes,
// not kept alive by each byte (the old server restarted its timeout on every byte). An idle
// keep-alive connection is closed after the same deadline.
#[test]
fn trickling_requests_are_cut_at_their_deadline() {
    let s = seeded();
    let srv = server_with(&s, "[server]\nread_timeout_ms = 1000\n");
    let a = srv.addr.as_str();
    let body = r#"{"sku":"A-1","type":"Receive","quantity":5}"#;
    let cases = [
        format!("GET /health HTTP/1.1\r\nHost: {a}\r\nX-Slow: {}", "z".repeat(400)),
        format!(
            "POST /api/transactions HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{body}{}",
            " ".repeat(400)
        ),
    ];
    for (i, text) in cases.iter().enumerate() {
        let mut c = TcpStream::connect(a).expect("connect");
        // The head of the POST at once; the GET's head and the POST's body a byte every
        // 50 ms: 400 bytes would take 20 s, and the deadline is 1 s.
        let at = text.find("\r\n\r\n").map_or(16, |p| p + 4);
        c.write_all(&text.as_bytes()[..at]).expect("start");
        let cut = trickle(&mut c, &text.as_bytes()[at..], Duration::from_millis(50));
        match (i, cut) {
            (_, None) => panic!("case {i}: the trickle was never cut off"),
            (1, Some(t)) => assert!(t.starts_with("HTTP/1.1 408"), "the body: {t}"),
            (_, Some(_)) => {}
        }
    }
    // Idle keep-alive: one answered request, then silence.
    let mut c = TcpStream::connect(a).expect("connect");
    c.write_all(format!("GET /health HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes())
        .expect("send");
    assert!(
        closed_by_server(&mut c, Duration::from_secs(30)),
        "an idle connection stayed open"
    );
    assert_eq!(health(a), 200);
}

/// Sends `bytes` one at a time, `every` apart, until the server answers or closes: what it
/// answered ("" for a close), or None when every byte went out.
fn trickle(c: &mut TcpStream, bytes: &[u8], every: Duration) -> Option<String> {
    let mut buf = [0u8; 4096];
    for b in bytes {
        if c.write_all(&[*b]).is_err() {
            return Some(String::new());
        }
        std::thread::sleep(every);
        c.set_nonblocking(true).expect("nonblocking");
        let got = c.read(&mut buf);
        c.set_nonblocking(false).expect("blocking");
        match got {
            Ok(n) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return Some(String::new()),
        }
    }
    None
}

/// A connection whose receive buffer is tiny, so that answers it never reads fill it fast.
fn tiny_window(addr: &str) -> TcpStream {
    use std::os::fd::FromRawFd;
    let sa: std::net::SocketAddrV4 = addr.parse().expect("v4 address");
    // SAFETY: a new socket, a valid int option, and a sockaddr_in built for connect; the
    // descriptor is owned by the TcpStream made from it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let size: libc::c_int = 2048;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = sa.port().to_be();
        sin.sin_addr.s_addr = u32::from(*sa.ip()).to_be();
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect");
        TcpStream::from_raw_fd(fd)
    }
}

// 300 slowloris connections (a head that never ends, a byte now and then) and 100 clients
// that send requests and never read the answers: /health is answered 200 all along, and the
// server closes every attacking connection itself once its deadline passes.
#[test]
fn slowloris_and_clients_that_never_read_cannot_starve_health() {
    let s = seeded();
    let srv = server_with(&s, "[server]\nread_timeout_ms = 1500\n");
    let a = srv.addr.clone();
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut c = TcpStream::connect(&a).expect("connect");
            c.write_all(format!("GET /health HTTP/1.1\r\nHost: {a}\r\nX-Slow: ").as_bytes())
                .expect("start");
            c
        })
        .collect();
    let readers: Vec<_> = (0..100)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut c = tiny_window(&a);
                c.set_write_timeout(Some(Duration::from_secs(60)))
                    .expect("timeout");
                let req = format!("GET /health/live HTTP/1.1\r\nHost: {a}\r\n\r\n").repeat(64);
                // Send until the server stops taking requests (its answers pile up unread),
                // then hold the connection until the server drops it.
                while c.write_all(req.as_bytes()).is_ok() {}
                c
            })
        })
        .collect();
    for round in 0..20 {
        for c in &mut slow {
            let _ = c.write_all(b"z");
        }
        assert_eq!(health(&a), 200, "round {round}");
    }
    let mut open = 0;
    for c in &mut slow {
        if !closed_by_server(c, Duration::from_secs(30)) {
            open += 1;
        }
    }
    assert_eq!(open, 0, "slowloris connections the server never closed");
    for r in readers {
        // The write loop ends only when the server has dropped the connection.
        let mut c = r.join().expect("reader");
        assert!(closed_by_server(&mut c, Duration::from_secs(30)));
    }
    assert_eq!(health(&a), 200);
}

// Over max_connections a client gets a readable 503 (JSON, Retry-After), not a reset; once
// the connections holding the slots close, their slots come back.
#[test]
fn connections_over_the_cap_get_a_readable_503() {
    let s = seeded();
    let srv = server_with(
        &s,
        "[server]\nmax_connections = 3\nread_timeout_ms = 60000\n",
    );
    let a = srv.addr.as_str();
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(a).expect("connect"))
        .collect();
    let mut refused = None;
    // The server takes the held connections in order; the next one is refused.
    for _ in 0..100 {
        let o = send(
            a,
            format!("GET /health HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes(),
            Duration::from_secs(10),
        );
        if o.status == 503 {
            refused = Some(o);
            break;
        }
    }
    let o = refused.expect("a connection over the cap was served");
    assert!(o.closed);
    assert!(
        o.text.to_ascii_lowercase().contains("retry-after: 5"),
        "{}",
        o.text
    );
    assert!(o.text.contains(r#""code":"busy""#), "{}", o.text);
    drop(held);
    let mut back = false;
    for _ in 0..200 {
        if health(a) == 200 {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(back, "the slots never came back");
}

/// The status of one whole answer read from `c`, leaving the connection open after it.
fn answer_status(c: &mut TcpStream) -> u16 {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut buf).expect("answer");
        assert!(n > 0, "closed before a whole head");
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while got.len() < head_end + len {
        let n = c.read(&mut buf).expect("body");
        assert!(n > 0, "closed before the whole body");
        got.extend_from_slice(&buf[..n]);
    }
    head.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// Under systemd's watchdog the server asks itself for /health/live and says WATCHDOG=1 only
// while that works: with every connection slot held, the pings stop (systemd would restart
// it); when the slots come back, they resume.
#[test]
fn the_watchdog_is_fed_only_while_the_server_answers() {
    let s = seeded();
    let cfg = s.path("ora.toml");
    std::fs::write(
        &cfg,
        "[server]\nmax_connections = 2\nread_timeout_ms = 60000\n",
    )
    .expect("config");
    let sock_path = s.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let port = crate::util::free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = s.path("serve.log");
    let mut child = s
        .cmd(&[
            "--config",
            cfg.to_str().expect("path"),
            "serve",
            "--bind",
            &addr,
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start ora serve");
    let pings = |within: Duration| -> usize {
        let until = Instant::now() + within;
        let mut n = 0;
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(k) = sock.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..k]).contains("WATCHDOG=1") {
                    n += 1;
                }
            }
        }
        n
    };
    assert!(
        pings(Duration::from_secs(5)) > 0,
        "no WATCHDOG=1 from a healthy server"
    );
    // Hold both slots: the probe is refused from now on. A connection holds a slot only once
    // the server serves it, so each asks for /health/live and stays open; one that arrived
    // while a probe had the other slot is answered 503 and closed, and is replaced.
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..50 {
        if held.len() == 2 {
            break;
        }
        let mut c = TcpStream::connect(&addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        c.write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("send");
        if answer_status(&mut c) == 200 {
            held.push(c);
        }
    }
    assert_eq!(held.len(), 2, "could not hold both connection slots");
    let mut logged = false;
    for _ in 0..200 {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("did not answer its own probe")
        {
            logged = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(logged, "the failing probe was never noticed");
    // Pings already under way may still come for one interval; then a silence of 2 s must
    // follow (the watchdog pings every 0.5 s while fed).
    let mut silent = false;
    for _ in 0..10 {
        if pings(Duration::from_secs(2)) == 0 {
            silent = true;
            break;
        }
    }
    assert!(
        silent,
        "the watchdog was still fed while the server could not answer"
    );
    drop(held);
    assert!(
        pings(Duration::from_secs(10)) > 0,
        "the pings did not resume"
    );
    let _ = child.kill();
    let _ = child.wait();
}
