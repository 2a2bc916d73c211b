//! The server loop: a few worker threads take requests from tiny_http and route them; writes
//! are answered by a responder thread once their commit is done, so workers never wait on the
//! disk; requests with a large body are read on a thread of their own (at most
//! [`MAX_BODY_THREADS`]), so a client that stalls mid-body ties up nothing else. On shutdown,
//! workers finish their current request, the responder drains, and the caller closes the
//! store (the writer commits what is queued). Knows nothing about individual routes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiny_http::Request;

use super::api::Render;
use super::reply::Reply;
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::ops::backup::BackupOptions;
use crate::ops::health::{HealthOptions, HealthReport};
use crate::shutdown::Shutdown;
use crate::store::stats::Histogram;
use crate::store::writer::Ticket;
use crate::store::Store;

/// Large-body requests being read at once; more are refused with 503.
pub const MAX_BODY_THREADS: usize = 16;
/// Bodies up to this size are read by tiny_http before a worker sees the request.
pub const SMALL_BODY: usize = 1024;

/// Requests served, by route and status, and their latency.
#[derive(Default)]
pub struct HttpStats {
    pub by_route: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub seconds: Histogram,
}

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub server: ServerConfig,
    pub backup: BackupOptions,
    pub health: HealthOptions,
    pub started: Instant,
    pub http: HttpStats,
    /// The last /health verdict and when it was computed (it is cached for a second).
    pub health_cache: Mutex<Option<(Instant, HealthReport)>>,
    /// A backup started through the API is running.
    pub backup_running: AtomicBool,
    /// Large-body requests being read.
    pub body_threads: AtomicUsize,
}

impl AppState {
    /// The connection tuning of the store (for operations that open their own connection).
    pub fn store_tuning(&self) -> crate::store::connection::Tuning {
        self.backup.tuning.clone()
    }
}

/// A write waiting for its commit before it is answered.
pub struct Pending {
    pub req: Request,
    pub route: &'static str,
    pub ticket: Ticket,
    pub render: Render,
    pub started: Instant,
}

/// How often idle workers look at the shutdown token.
const POLL: Duration = Duration::from_millis(100);

/// Sends a reply and counts it.
pub fn send(st: &AppState, req: Request, route: &'static str, reply: Reply, started: Instant) {
    let status = reply.status;
    if status >= 500 {
        log::warn!(
            "{} {} -> {status}: {}",
            req.method(),
            route,
            String::from_utf8_lossy(&reply.body)
        );
    } else {
        log::debug!("{} {} -> {status}", req.method(), route);
    }
    if let Err(e) = req.respond(reply.into_response()) {
        log::debug!("http: could not send the response: {e}");
    }
    if let Ok(mut m) = st.http.by_route.lock() {
        *m.entry((route, status)).or_default() += 1;
    }
    st.http.seconds.observe(started.elapsed().as_secs_f64());
}

fn responder(st: &AppState, rx: Receiver<Pending>) {
    for p in rx {
        let reply = (p.render)(p.ticket.wait());
        send(st, p.req, p.route, reply, p.started);
    }
}

/// Serves until `shutdown` trips. Returns after every worker finished its current request
/// and every write was answered.
pub fn serve(state: Arc<AppState>, http: tiny_http::Server, shutdown: &Shutdown) -> Result<()> {
    let http = Arc::new(http);
    let (answers, pending) = mpsc::channel::<Pending>();
    let responder = {
        let st = Arc::clone(&state);
        std::thread::Builder::new()
            .name("ora-http-answer".into())
            .spawn(move || responder(&st, pending))
            .map_err(|e| Error::io("serve: start the responder thread", e))?
    };
    let mut workers = Vec::with_capacity(state.server.threads);
    for i in 0..state.server.threads {
        let (st, h, sd, tx) = (
            Arc::clone(&state),
            Arc::clone(&http),
            shutdown.clone(),
            answers.clone(),
        );
        let worker = std::thread::Builder::new()
            .name(format!("ora-http-{i}"))
            .spawn(move || {
                while !sd.is_tripped() {
                    match h.recv_timeout(POLL) {
                        Ok(Some(req)) => super::routes::handle(&st, req, &tx),
                        Ok(None) => {}
                        Err(e) => {
                            log::warn!("http: accept failed: {e}");
                            sd.wait(POLL);
                        }
                    }
                }
            })
            .map_err(|e| Error::io("serve: start a worker thread", e))?;
        workers.push(worker);
    }
    drop(answers);
    for w in workers {
        if w.join().is_err() {
            log::error!("an http worker panicked");
        }
    }
    // Body threads hold answer senders too; the responder ends when the last one is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while state.body_threads.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if state.body_threads.load(Ordering::SeqCst) == 0 {
        let _ = responder.join();
    }
    Ok(())
}

/// Runs `work` on a thread of its own for a request whose body is large (counted, capped).
pub fn on_body_thread(
    st: &Arc<AppState>,
    req: Request,
    route: &'static str,
    started: Instant,
    answers: &Sender<Pending>,
    work: impl FnOnce(&Arc<AppState>, Request, &Sender<Pending>) + Send + 'static,
) {
    if st.body_threads.fetch_add(1, Ordering::SeqCst) >= MAX_BODY_THREADS {
        st.body_threads.fetch_sub(1, Ordering::SeqCst);
        let e = Error::Store(crate::store::StoreError::Busy(
            "too many large requests are being received at once; retry shortly".into(),
        ));
        send(st, req, route, Reply::error(&e), started);
        return;
    }
    let (st2, tx) = (Arc::clone(st), answers.clone());
    let spawned = std::thread::Builder::new()
        .name("ora-http-body".into())
        .spawn(move || {
            work(&st2, req, &tx);
            st2.body_threads.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        st.body_threads.fetch_sub(1, Ordering::SeqCst);
        log::error!("http: could not start a body thread: {e}");
    }
}

/// Binds the listening socket, with a message that says what to do when the port is taken.
pub fn bind(cfg: &ServerConfig) -> Result<tiny_http::Server> {
    tiny_http::Server::http(cfg.bind).map_err(|e| {
        Error::Io(format!(
            "serve: cannot listen on {}: {e}; is another server running there? Pick another address with --bind",
            cfg.bind
        ))
    })
}
