//! The server loop: binds, serves requests on `threads` worker threads until the shutdown
//! token trips, then lets in-flight requests finish. Knows nothing about routes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::shutdown::Shutdown;
use crate::store::Store;

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub server: ServerConfig,
    pub started: Instant,
}

/// How often idle workers look at the shutdown token.
const POLL: Duration = Duration::from_millis(100);

/// Serves `listener` until `shutdown` trips. Returns after every worker has finished its
/// current request.
pub fn serve(state: Arc<AppState>, http: tiny_http::Server, shutdown: &Shutdown) -> Result<()> {
    let http = Arc::new(http);
    let mut workers = Vec::with_capacity(state.server.threads);
    for i in 0..state.server.threads {
        let (st, h, sd) = (Arc::clone(&state), Arc::clone(&http), shutdown.clone());
        let worker = std::thread::Builder::new()
            .name(format!("ora-http-{i}"))
            .spawn(move || {
                while !sd.is_tripped() {
                    match h.recv_timeout(POLL) {
                        Ok(Some(req)) => super::routes::handle(&st, req),
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
    for w in workers {
        if w.join().is_err() {
            log::error!("an http worker panicked");
        }
    }
    Ok(())
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
