//! The server: binds, then serves with [`super::http`] (hyper, bounded connections, every
//! request under a deadline) and hands each request to [`super::routes`]. Holds the state
//! every handler can reach. On shutdown the connections finish their current request and the
//! caller closes the store (the writer commits what is queued).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::http::{self, Limits};
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::file::backup::BackupOptions;
use crate::ops::health::{HealthOptions, HealthReport};
use crate::shutdown::Shutdown;
use crate::store::Histogram;
use crate::store::Store;

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
    /// Units received and shipped per day for the page's chart, kept up to date row by row.
    pub flow: Mutex<super::flow::Flow>,
    /// A backup started through the API is running.
    pub backup_running: AtomicBool,
    /// The remote proxies (search asks Qdrant when it is configured).
    pub remote: Option<crate::config::RemoteConfig>,
    /// The replica's shipper, once the database has a replica.
    pub replica: Mutex<Option<std::sync::Arc<crate::replica::ship::Replicator>>>,
    /// This box among its lineage's boxes: the standbys' feed, or its own follower.
    pub node: crate::standby::node::Node,
    /// The certificate the server speaks HTTPS with (none: plain HTTP).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
}

impl AppState {
    /// The same state, with these standby settings (the feed and the follower start later).
    pub fn with_standby(mut self, cfg: crate::standby::StandbyConfig) -> AppState {
        let me = cfg.advertise.clone().unwrap_or_else(|| self.own_url());
        self.node = crate::standby::node::Node::new(cfg, me, Some(self.store.path()));
        self
    }

    /// The same state, serving HTTPS with `tls` (call before [`AppState::with_standby`]).
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::ServerTls>>) -> AppState {
        self.tls = tls;
        self
    }

    /// This server's address as a URL (`https://` with a certificate).
    pub fn own_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.server.bind)
    }

    /// Serving plain HTTP beyond loopback (allowed by `allow_plain_http`): tokens and data
    /// cross the network in clear.
    pub fn plain_beyond_loopback(&self) -> bool {
        self.tls.is_none() && !self.server.bind.ip().is_loopback()
    }

    /// The same state, searching through the configured remotes.
    pub fn with_remote(mut self, remote: crate::config::RemoteConfig) -> AppState {
        self.remote = Some(remote);
        self
    }

    /// State for serving `store` with the given settings.
    pub fn new(
        store: Store,
        server: ServerConfig,
        backup: BackupOptions,
        health: HealthOptions,
    ) -> AppState {
        let server_bind = server.bind;
        AppState {
            store,
            server,
            backup,
            health,
            started: Instant::now(),
            http: HttpStats::default(),
            health_cache: Mutex::new(None),
            flow: Mutex::new(super::flow::Flow::default()),
            backup_running: AtomicBool::new(false),
            remote: None,
            replica: Mutex::new(None),
            node: crate::standby::node::Node::new(
                crate::standby::StandbyConfig::default(),
                format!("http://{}", server_bind),
                None,
            ),
            tls: None,
        }
    }

    /// The shipper's current status, when there is one.
    pub fn replica_status(&self) -> Option<crate::replica::ship::Status> {
        self.replica
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|r| r.status()))
    }

    /// The connection tuning of the store (for operations that open their own connection).
    pub fn store_tuning(&self) -> crate::store::connection::Tuning {
        self.backup.tuning.clone()
    }

    /// Forgets the cached health verdict (after something that changes it).
    pub fn invalidate_health(&self) {
        if let Ok(mut c) = self.health_cache.lock() {
            *c = None;
        }
    }
}

/// Serves `listener` until `shutdown` trips; the server's probe of itself ticks `beat` (the
/// watchdog).
pub fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: &Shutdown,
    beat: &crate::sdnotify::Heartbeat,
) -> Result<()> {
    let limits = Limits {
        max_body_bytes: state.server.max_body_bytes,
        read_timeout: state.server.read_timeout,
        max_connections: state.server.max_connections,
        wait_awake: state.server.wait_awake,
        ..Limits::default()
    };
    let st = Arc::clone(&state);
    http::serve(
        listener,
        limits,
        state.tls.clone(),
        shutdown,
        beat,
        Arc::new(move |req: &http::Request| super::routes::handle(&st, req)),
    )
    .map_err(|e| Error::io("serve", e))
}

/// Binds the listening socket, with a message that says what to do when the port is taken.
pub fn bind(cfg: &ServerConfig) -> Result<TcpListener> {
    TcpListener::bind(cfg.bind).map_err(|e| {
        Error::failed(format!(
            "serve: cannot listen on {}: {e}; is another server running there? Pick another address with --bind",
            cfg.bind
        ))
    })
}
