//! The HTTP/1.1 server, on hyper: hyper parses every request head and chunked body (strict
//! framing: conflicting lengths, signed sizes, control bytes, obs-fold and bare CRs are all
//! answered 400), ora keeps the limits and deadlines it promises:
//! - the whole request head must arrive within `read_timeout` of the connection going idle
//!   (so an idle keep-alive connection is closed after that long too), and the whole body
//!   within `read_timeout` after the head (408);
//! - an answer the client does not read may stall for `read_timeout`, then the connection is
//!   dropped ([`stall`]);
//! - at most `max_connections` connections are served; the next ones get a readable 503
//!   (their slot is a semaphore permit, given back whatever happens to the connection);
//! - heads over `max_head_bytes` or `max_headers` get 431, bodies over `max_body_bytes` 413.
//!
//! Each connection has its own thread, with a current-thread tokio runtime that drives hyper
//! for it, and the synchronous handler runs on that thread ([`exchange`]): handing each
//! request to a worker pool instead cost two thread hand-offs per request, which on 2 cores
//! more than halved the rate of keep-alive clients. A connection that has just answered and finds nothing to read keeps its
//! thread awake for a moment before sleeping, while the process has nothing else to do
//! ([`watch`]), and while a lone request is handled a helper keeps a second CPU awake, so
//! the client is not kept waiting for its CPU to wake when the answer comes ([`warm`]). On
//! shutdown the listener closes, idle connections close, and requests in flight (commits
//! included) are answered before `serve` returns. When systemd keeps a watchdog, [`probe`]
//! asks the server for `/health/live` through its own listening socket and
//! feeds the watchdog only when the answer comes. With a certificate ([`crate::tls`]) every
//! connection is TLS first (its handshake under the same `read_timeout`). Knows nothing about
//! routes: it hands each complete request to a handler.

mod exchange;
mod probe;
mod stall;
mod warm;
mod watch;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::sync::Semaphore;

use super::reply::Reply;
use crate::shutdown::Shutdown;

/// The limits every connection is held to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line plus headers (at least 8 KiB).
    pub max_head_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
    /// The deadline of a request head (counted from when the connection is idle), of a body
    /// (counted from the end of its head) and of a stalled write.
    pub read_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight.
    pub drain: Duration,
    /// Idle connections watch their socket, and a helper keeps a CPU awake for a lone
    /// request, instead of sleeping at once (`[tuning] wait_awake`).
    pub wait_awake: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
            read_timeout: Duration::from_millis(crate::config::DEFAULT_READ_TIMEOUT_MS),
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS,
            drain: Duration::from_secs(30),
            wait_awake: true,
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

/// Connections over the cap that are still answered a readable 503 at once; beyond these
/// (a flood), new connections are closed unanswered until the flood ebbs.
const REFUSALS: usize = 64;

/// The stack of a connection's thread (handlers run on it; the default is 8 MiB of address
/// space per thread).
const CONNECTION_STACK: usize = 1 << 20;

/// Serves `listener` until `shutdown` trips, calling `handler` for every request. The
/// watchdog's heartbeat `beat` is ticked by [`probe`] while the server answers itself.
///
/// Kept whole: the accept loop and the drain on shutdown share the thread slots, the gate and the
/// helper; each arm is short and commented.
pub fn serve<H>(
    listener: TcpListener,
    limits: Limits,
    tls: Option<Arc<crate::tls::ServerTls>>,
    shutdown: &Shutdown,
    beat: &crate::sdnotify::Heartbeat,
    handler: Arc<H>,
) -> std::io::Result<()>
where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    raise_descriptor_limit(limits.max_connections);
    let local = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let prober = crate::sdnotify::watchdog_interval().map(|every| {
        probe::start(
            local,
            beat.clone(),
            shutdown.clone(),
            every / 2,
            tls.clone(),
        )
    });
    let mut serving = http1::Builder::new();
    serving
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .max_headers(limits.max_headers)
        // A client may shut its side down once it has sent its request, and still read the answer.
        .half_close(true)
        .keep_alive(true);
    let mut refusing = http1::Builder::new();
    refusing
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(2))
        .max_buf_size(8192)
        .half_close(true)
        .keep_alive(false);
    // One gate per server; it and the helper live as long as the process (a server is
    // started once per process).
    let gate: &'static watch::Gate = Box::leak(Box::new(watch::Gate::new()));
    let helper = if limits.wait_awake {
        warm::KeepAwake::start(gate, warm::BUDGET)
    } else {
        None
    };
    let shared = Arc::new(exchange::Shared {
        handler,
        gate,
        helper,
        limits: limits.clone(),
        tls,
        serving,
        refusing,
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    while !shutdown.is_tripped() {
        let (stream, peer) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Sleep until a connection arrives (not for a fixed time: a client that opens
                // a connection per request would wait out every sleep), waking at least every
                // 200 ms to notice a shutdown.
                wait_for_connection(&listener, Duration::from_millis(200));
                continue;
            }
            Err(e) => {
                // Out of descriptors, most often: wait for connections to close.
                log::warn!("http: accept failed: {e}");
                shutdown.wait(Duration::from_millis(50));
                continue;
            }
        };
        threads.retain(|t| !t.is_finished());
        let (permit, refuse) = if let Ok(p) = Arc::clone(&slots).try_acquire_owned() {
            (p, false)
        } else if let Ok(p) = Arc::clone(&refusals).try_acquire_owned() {
            (p, true)
        } else {
            continue;
        };
        let (shared, stopping) = (Arc::clone(&shared), stopping.clone());
        let spawned = std::thread::Builder::new()
            .name("ora-http-conn".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                // The slot is given back when this thread ends, however it ends.
                let _permit = permit;
                exchange::connection(stream, peer, &shared, refuse, stopping);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => log::error!("http: could not start a connection thread: {e}"),
        }
    }
    drop(listener);
    // Idle connections close now; requests in flight are answered first.
    let _ = stop.send(true);
    let until = std::time::Instant::now() + limits.drain;
    while threads.iter().any(|t| !t.is_finished()) {
        if std::time::Instant::now() >= until {
            log::warn!(
                "http: requests still in flight after {} s; stopping anyway",
                limits.drain.as_secs()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(Ok(p)) = prober {
        let _ = p.join();
    }
    Ok(())
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

/// Raises the soft limit on open descriptors towards the hard one, so that `max_connections`
/// connections fit beside the database's own files (systemd's default soft limit is 1024).
fn raise_descriptor_limit(connections: usize) {
    // Each connection holds its socket and its runtime's epoll and wake-up descriptors.
    let want = u64::try_from(connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(3)
        .saturating_add(256);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a stack rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= want {
            return;
        }
        lim.rlim_cur = want.min(lim.rlim_max);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            log::warn!(
                "http: could not raise the open-file limit to {}",
                lim.rlim_cur
            );
        }
    }
}
