//! A small HTTP/1.1 server: one thread per connection (at most `max_connections`), every read
//! under a deadline, every size limited. It replaces tiny_http, which sets no socket timeouts
//! and whose connection pool could leave a request queued behind clients that stalled
//! mid-request (reproduced: 24 stalled connections held back `GET /health` until they closed).
//! Here a silent client is cut off with 408 after `read_timeout`, an idle keep-alive
//! connection after `idle_timeout`, and a stalled client only ever holds its own thread.
//! Supports keep-alive, `Expect: 100-continue`, Content-Length and chunked bodies, HEAD.
//! Knows nothing about routes: it hands each complete request to a handler.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::reply::Reply;
use crate::error::Error;
use crate::shutdown::Shutdown;

/// The limits every connection is held to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line plus headers.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
    /// A client silent this long in the middle of a request is cut off (408).
    pub read_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub idle_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_connections: 256,
        }
    }
}

/// A complete request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query, still percent-encoded).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote: Option<SocketAddr>,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What went wrong reading a request: answered with this status, then the connection closes.
struct Refusal(Error);

fn refuse(e: Error) -> Refusal {
    Refusal(e)
}

/// Blocks until `listener` has a connection waiting, or `limit` passes.
fn wait_for_connection(listener: &TcpListener, limit: Duration) {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(limit.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd for the listener's descriptor, which outlives the call.
    unsafe { libc::poll(&mut fds, 1, ms) };
}

/// Serves `listener` until `shutdown` trips, calling `handler` for every request.
pub fn serve<H>(
    listener: TcpListener,
    limits: Limits,
    shutdown: &Shutdown,
    beat: &crate::sdnotify::Heartbeat,
    handler: Arc<H>,
) -> std::io::Result<()>
where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    let open: Arc<Mutex<Vec<(u64, TcpStream)>>> = Arc::default();
    let mut next_id = 0u64;
    let mut threads = Vec::new();
    while !shutdown.is_tripped() {
        beat.tick();
        let (stream, peer) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Sleep until a connection arrives (not for a fixed time: a client that opens
                // a connection per request would wait out every sleep), waking at least every
                // 200 ms to notice a shutdown and to feed the watchdog.
                wait_for_connection(&listener, Duration::from_millis(200));
                continue;
            }
            Err(e) => {
                log::warn!("http: accept failed: {e}");
                shutdown.wait(Duration::from_millis(50));
                continue;
            }
        };
        threads.retain(|t: &std::thread::JoinHandle<()>| !t.is_finished());
        if active.load(Ordering::SeqCst) >= limits.max_connections {
            busy(stream);
            continue;
        }
        next_id += 1;
        // The slot is taken here and given back by its Drop, whatever happens to the
        // connection's thread (a panic included) or if the thread cannot start.
        let slot = Slot::take(&active, &open, next_id, &stream);
        let (limits, handler, sd) = (limits.clone(), Arc::clone(&handler), shutdown.clone());
        let spawned = std::thread::Builder::new()
            .name("ora-http-conn".into())
            .spawn(move || {
                let _slot = slot;
                connection(stream, Some(peer), &limits, &*handler, &sd);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => log::error!("http: could not start a connection thread: {e}"),
        }
    }
    // Stop reading from every connection: idle ones close now, busy ones finish their answer.
    if let Ok(o) = open.lock() {
        for (_, s) in o.iter() {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let reply = Reply::error(&Error::Store(crate::store::StoreError::Busy(
        "the server has too many connections open; retry shortly".into(),
    )));
    let _ = write_reply(&mut stream, reply, false, true);
}

fn connection<H>(
    stream: TcpStream,
    peer: Option<SocketAddr>,
    limits: &Limits,
    handler: &H,
    shutdown: &Shutdown,
) where
    H: Fn(&Request) -> Reply,
{
    if stream.set_nonblocking(false).is_err()
        || stream.set_write_timeout(Some(limits.read_timeout)).is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    loop {
        // Idle between requests: wait for the first byte under the idle timeout.
        let _ = reader.get_ref().set_read_timeout(Some(limits.idle_timeout));
        match reader.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(_) => {}
        }
        let _ = reader.get_ref().set_read_timeout(Some(limits.read_timeout));
        let (req, keep_alive, head) = match read_request(&mut reader, &mut writer, limits, peer) {
            Ok(r) => r,
            Err(Refusal(e)) => {
                let _ = write_reply(&mut writer, Reply::error(&e), false, true);
                linger(&mut reader);
                return;
            }
        };
        let reply = handler(&req);
        let keep = keep_alive && !shutdown.is_tripped();
        if write_reply(&mut writer, reply, head, !keep).is_err() || !keep {
            return;
        }
    }
}

/// After refusing a request, reads and drops what the client is still sending (up to 8 MiB
/// or two seconds), so it sees the answer instead of a reset connection.
fn linger(r: &mut BufReader<TcpStream>) {
    let _ = r.get_ref().shutdown(std::net::Shutdown::Write);
    let _ = r.get_ref().set_read_timeout(Some(Duration::from_secs(2)));
    let _ = std::io::copy(&mut r.by_ref().take(8 << 20), &mut std::io::sink());
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn io_refusal(e: std::io::Error, what: &str) -> Refusal {
    if timed_out(&e) {
        refuse(Error::Timeout(format!(
            "the client stopped sending in the middle of the {what}"
        )))
    } else {
        refuse(Error::Usage(format!("could not read the {what}: {e}")))
    }
}

/// Reads one line of the head (CRLF or LF), counting against the head budget.
fn read_line(r: &mut BufReader<TcpStream>, budget: &mut usize) -> Result<String, Refusal> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| io_refusal(e, "request head"))?;
    if n > *budget {
        return Err(refuse(Error::HeadersTooLarge(format!(
            "the request head is over {} bytes",
            16 * 1024
        ))));
    }
    if n == 0 || !line.ends_with(b"\n") {
        return Err(refuse(Error::Usage(
            "the connection closed in the middle of the request head".into(),
        )));
    }
    *budget -= n;
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line)
        .map_err(|_| refuse(Error::Usage("the request head is not valid UTF-8".into())))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn read_request(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    limits: &Limits,
    peer: Option<SocketAddr>,
) -> Result<(Request, bool, bool), Refusal> {
    let mut budget = limits.max_head_bytes;
    let line = read_line(r, &mut budget)?;
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if is_token(m) && !t.is_empty() => {
            (m.to_string(), t.to_string(), v)
        }
        _ => return Err(refuse(Error::Usage("malformed request line".into()))),
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => {
            return Err(refuse(Error::Usage(format!(
                "unsupported protocol {:?}; use HTTP/1.1",
                crate::model::clip(version)
            ))))
        }
    };
    let mut headers = Vec::new();
    loop {
        let l = read_line(r, &mut budget)?;
        if l.is_empty() {
            break;
        }
        if headers.len() >= limits.max_headers {
            return Err(refuse(Error::HeadersTooLarge(format!(
                "more than {} headers",
                limits.max_headers
            ))));
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err(refuse(Error::Usage("malformed header line".into())));
        };
        if !is_token(k) {
            return Err(refuse(Error::Usage("malformed header name".into())));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
        remote: peer,
    };
    let conn = req
        .header("Connection")
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let keep_alive = if http10 {
        conn.contains("keep-alive")
    } else {
        !conn.contains("close")
    };
    let head = req.method == "HEAD";
    let chunked = match req.header("Transfer-Encoding") {
        None => false,
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(te) => {
            return Err(refuse(Error::Usage(format!(
                "unsupported transfer encoding {:?}",
                crate::model::clip(te)
            ))))
        }
    };
    let length = match req.header("Content-Length") {
        None => None,
        Some(_) if chunked => {
            return Err(refuse(Error::Usage(
                "both Content-Length and chunked encoding".into(),
            )))
        }
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| refuse(Error::Usage("malformed Content-Length".into())))?,
        ),
    };
    if let Some(n) = length {
        if n > limits.max_body_bytes {
            return Err(refuse(Error::TooLarge(format!(
                "the body is {n} bytes; the limit is {}",
                limits.max_body_bytes
            ))));
        }
    }
    if (chunked || length.unwrap_or(0) > 0)
        && req
            .header("Expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        let _ = w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    if let Some(n) = length {
        let mut body = vec![0u8; n];
        r.read_exact(&mut body)
            .map_err(|e| io_refusal(e, "request body"))?;
        req.body = body;
    } else if chunked {
        req.body = read_chunked(r, limits.max_body_bytes)?;
    }
    Ok((req, keep_alive, head))
}

/// One connection's place among `max_connections`, and its socket's copy in the list the
/// shutdown closes; both are given back on drop.
struct Slot {
    active: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<(u64, TcpStream)>>>,
    id: u64,
}

impl Slot {
    fn take(
        active: &Arc<AtomicUsize>,
        open: &Arc<Mutex<Vec<(u64, TcpStream)>>>,
        id: u64,
        stream: &TcpStream,
    ) -> Slot {
        active.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            if let Ok(mut o) = open.lock() {
                o.push((id, clone));
            }
        }
        Slot {
            active: Arc::clone(active),
            open: Arc::clone(open),
            id,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut o = self.open.lock().unwrap_or_else(|p| p.into_inner());
        o.retain(|(i, _)| *i != self.id);
        drop(o);
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A chunk size: 1 to 16 hex digits and nothing else (no sign, no spaces, no overflow).
fn chunk_size(text: &str) -> Option<usize> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    usize::from_str_radix(text, 16).ok()
}

fn read_chunked(r: &mut BufReader<TcpStream>, limit: usize) -> Result<Vec<u8>, Refusal> {
    let mut body = Vec::new();
    loop {
        let mut budget = 1024;
        let size_line = read_line(r, &mut budget)?;
        let size_hex = size_line.split(';').next().unwrap_or("");
        let size = chunk_size(size_hex)
            .ok_or_else(|| refuse(Error::Usage("malformed chunk size".into())))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut b = 8 * 1024;
                if read_line(r, &mut b)?.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len().checked_add(size).is_none_or(|n| n > limit) {
            return Err(refuse(Error::TooLarge(format!(
                "the body exceeds the limit of {limit} bytes"
            ))));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])
            .map_err(|e| io_refusal(e, "request body"))?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)
            .map_err(|e| io_refusal(e, "request body"))?;
        if &crlf != b"\r\n" {
            return Err(refuse(Error::Usage("malformed chunk".into())));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_reply(
    w: &mut TcpStream,
    reply: Reply,
    head_only: bool,
    close: bool,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256 + reply.body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len(),
        if close { "close" } else { "keep-alive" }
    );
    for (k, v) in &reply.headers {
        if !v.contains(['\r', '\n']) {
            let _ = write!(out, "{k}: {v}\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&reply.body);
    }
    w.write_all(&out)?;
    w.flush()
}
