//! One connection, on its own thread, and each request on it once hyper has parsed a head:
//! the checks hyper leaves to the application (request-target form, transfer codings, a
//! UTF-8 head), the body read whole under its size limit and deadline, the handler run on the
//! connection's thread, and the reply turned into a response. A request refused here is answered with a JSON error and
//! `Connection: close`; an oversized body is drained first (up to a bound) so that the client
//! reads the 413 instead of a reset. Never panics on what a client sends; a handler that
//! panics is answered 500 and the connection closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode, Version};
use hyper_util::rt::TokioIo;

use super::stall::StallGuard;
use super::warm::KeepAwake;
use super::watch::{Gate, Watchful};
use super::{Limits, Request};
use crate::error::Error;
use crate::web::fault::Fault;
use crate::web::reply::Reply;

/// How much of a refused body is read and dropped, and for how long, before answering.
const DRAIN_BYTES: usize = 8 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// What every connection of one server shares.
pub struct Shared<H> {
    pub handler: Arc<H>,
    pub limits: Limits,
    /// The certificate every connection is served with (none: plain HTTP).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    /// Who handles a request now, and where an idle connection watches its socket.
    pub gate: &'static Gate,
    /// Keeps a CPU awake while a lone request is handled (none: `wait_awake` off, or one CPU).
    pub helper: Option<&'static KeepAwake>,
    /// hyper's settings for a served connection, and for one refused over the cap.
    pub serving: http1::Builder,
    pub refusing: http1::Builder,
}

/// Serves one connection on the calling thread, which owns it: a current-thread runtime
/// drives hyper, and the handler runs right there, so a request costs no hand-off between
/// threads. `refuse`: answer the first request 503 (over the cap) and close. When `stopping`
/// turns true, an idle connection closes and a busy one closes after its answer.
pub fn connection<H>(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared<H>>,
    refuse: bool,
    stopping: tokio::sync::watch::Receiver<bool>,
) where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::error!("http: could not serve a connection from {peer}: {e}");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let shared = Arc::clone(shared);
    // Spawned as a task rather than driven by block_on itself: a task woken on its own thread
    // is queued locally, where block_on's future is woken through the driver (fewer than half
    // the futex calls per keep-alive request).
    let task = runtime.spawn(async move {
        let shared = &shared;
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream))
        {
            Ok(s) => s,
            Err(e) => {
                log::debug!("http: connection from {peer}: {e}");
                return;
            }
        };
        let watch = shared.limits.wait_awake.then_some(shared.gate);
        let plain = Watchful(StallGuard::new(stream, shared.limits.read_timeout), watch);
        let Some(tls) = &shared.tls else {
            return serve_io(shared, TokioIo::new(plain), peer, refuse, stopping).await;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
        match tokio::time::timeout(shared.limits.read_timeout, acceptor.accept(plain)).await {
            Ok(Ok(s)) => serve_io(shared, TokioIo::new(s), peer, refuse, stopping).await,
            Ok(Err(e)) => log::debug!("http: TLS handshake with {peer} failed: {e}"),
            Err(_) => log::debug!("http: TLS handshake with {peer} did not finish in time"),
        }
    });
    if let Err(e) = runtime.block_on(task) {
        log::error!("http: the connection from {peer} failed: {e}");
    }
}

/// Serves hyper on `io` (a plain or a TLS stream); see [`connection`].
async fn serve_io<H, I>(
    shared: &Arc<Shared<H>>,
    io: I,
    peer: SocketAddr,
    refuse: bool,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if refuse {
        let busy = service_fn(|_req| async {
            Ok::<_, Infallible>(refusal(&Fault::from(crate::store::StoreError::busy(
                "the server has too many connections open; retry shortly",
            ))))
        });
        let _ = shared.refusing.serve_connection(io, busy).await;
        return;
    }
    let service = service_fn(|req| {
        let shared = Arc::clone(shared);
        async move { Ok::<_, Infallible>(answer(shared, req).await) }
    });
    let conn = shared.serving.serve_connection(io, service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stopping) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        log::debug!("http: connection from {peer} ended: {e}");
    }
}

pub type Answer = Response<Full<Bytes>>;

/// Returns once `stopping` is true (or its sender is gone).
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// Answers one request.
pub async fn answer<H>(shared: Arc<Shared<H>>, req: hyper::Request<Incoming>) -> Answer
where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    let handling = shared.gate.handling();
    if handling.alone() {
        if let Some(k) = shared.helper {
            k.lone_request();
        }
    }
    let (parts, mut body) = req.into_parts();
    let head = match head(&parts) {
        Ok(h) => h,
        Err(e) => {
            // Read what the client is still sending, so it reads the answer, not a reset.
            drain(&mut body).await;
            return refusal(&e);
        }
    };
    let limit = shared.limits.max_body_bytes;
    if head.declared.is_some_and(|n| n > limit as u64) {
        let e = too_large(limit);
        if expects_continue(&parts) {
            // The client waits for 100 Continue before sending: nothing to drain.
            return refusal(&e);
        }
        drain(&mut body).await;
        return refusal(&e);
    }
    let mut req = head.request;
    if head.has_body {
        match tokio::time::timeout(shared.limits.read_timeout, read_body(&mut body, limit)).await {
            Ok(Ok(bytes)) => req.body = bytes,
            Ok(Err(BodyEnd::TooLarge)) => {
                drain(&mut body).await;
                return refusal(&too_large(limit));
            }
            Ok(Err(BodyEnd::Broken(e))) => {
                return refusal(&Fault::usage(format!(
                    "could not read the request body: {e}"
                )))
            }
            Err(_) => {
                return refusal(&Fault::Timeout(format!(
                    "the request body did not arrive within {} ms",
                    shared.limits.read_timeout.as_millis()
                )))
            }
        }
    }
    // This thread serves only this connection: the handler may block it (a write waits
    // for its commit) without holding up anyone else, and costs no hand-off to another thread.
    let handler = &shared.handler;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&req))) {
        Ok(reply) => response(reply, false),
        Err(_) => {
            log::error!("http: a request handler panicked");
            response(
                Reply::error(&Fault::App(Error::failed(
                    "the request could not be completed (a bug)",
                ))),
                true,
            )
        }
    }
}

/// A parsed head: the request without its body, whether a body follows, its declared size.
struct Head {
    request: Request,
    has_body: bool,
    declared: Option<u64>,
}

fn head(parts: &hyper::http::request::Parts) -> Result<Head, Fault> {
    let uri = &parts.uri;
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(Fault::usage(
            "absolute-form request targets are for proxies; send the path only",
        ));
    }
    let target = uri.path_and_query().map_or("", |p| p.as_str());
    if !target.starts_with('/') {
        return Err(Fault::usage(format!(
            "the request target {:?} is not a path",
            crate::model::clip(target)
        )));
    }
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let value = std::str::from_utf8(value.as_bytes())
            .map_err(|_| Fault::usage(format!("the {name} header is not valid UTF-8")))?;
        headers.push((name.as_str().to_string(), value.to_string()));
    }
    let chunked = transfer_coding(parts)?;
    let declared = match parts.headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(_) if chunked => return Err(Fault::usage("both Content-Length and chunked encoding")),
        // hyper has checked that every Content-Length is the same string of digits.
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Fault::usage("malformed Content-Length"))?,
        ),
    };
    Ok(Head {
        request: Request {
            method: parts.method.as_str().to_string(),
            target: target.to_string(),
            headers,
            body: Vec::new(),
        },
        has_body: chunked || declared.is_some_and(|n| n > 0),
        declared,
    })
}

/// Whether the body is chunked. Every Transfer-Encoding header counts, and `chunked` alone
/// is the only coding served: a request that names another (or `chunked` twice) is refused
/// rather than read as something it is not.
fn transfer_coding(parts: &hyper::http::request::Parts) -> Result<bool, Fault> {
    let mut codings = Vec::new();
    for v in parts.headers.get_all(header::TRANSFER_ENCODING) {
        let text = v
            .to_str()
            .map_err(|_| Fault::usage("malformed Transfer-Encoding"))?;
        for c in text.split(',') {
            codings.push(c.trim_matches([' ', '\t']).to_ascii_lowercase());
        }
    }
    match codings.as_slice() {
        [] => Ok(false),
        [c] if c == "chunked" => Ok(true),
        _ => Err(Fault::usage(format!(
            "unsupported transfer encoding {:?}; send chunked or a Content-Length",
            crate::model::clip(&codings.join(", "))
        ))),
    }
}

fn expects_continue(parts: &hyper::http::request::Parts) -> bool {
    parts.version == Version::HTTP_11
        && parts
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

fn too_large(limit: usize) -> Fault {
    Fault::TooLarge(format!("the body exceeds the limit of {limit} bytes"))
}

enum BodyEnd {
    TooLarge,
    Broken(hyper::Error),
}

async fn read_body(body: &mut Incoming, limit: usize) -> Result<Vec<u8>, BodyEnd> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyEnd::Broken)?;
        if let Some(data) = frame.data_ref() {
            if out.len().checked_add(data.len()).is_none_or(|n| n > limit) {
                return Err(BodyEnd::TooLarge);
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// Reads and drops what is left of a refused body, up to [`DRAIN_BYTES`] or [`DRAIN_TIME`].
async fn drain(body: &mut Incoming) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen = seen.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
            if seen > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// A JSON error for a request that is refused before its handler; the connection closes.
pub fn refusal(e: &Fault) -> Answer {
    response(Reply::error(e), true)
}

/// The response for `reply`, with the headers every answer carries.
pub fn response(reply: Reply, close: bool) -> Answer {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = Response::new(Full::new(Bytes::from(reply.body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for (name, value) in reply.headers {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.append(n, v);
        }
    }
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}
