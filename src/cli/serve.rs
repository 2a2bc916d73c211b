//! `ora serve`: binds, opens (or creates) the database, takes the server lock, and serves until
//! SIGTERM/SIGINT; then finishes in-flight requests, lets the writer commit, and exits 0.

use std::sync::Arc;

use clap::Args;

use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::fsutil::ServerLock;
use crate::sdnotify::{self, Heartbeat};
use crate::shutdown::{self, Shutdown};
use crate::store::OpenMode;
use crate::web::{self, AppState};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (IP:PORT or HOST:PORT); env ORA_BIND, default 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
}

pub fn run(ctx: &Ctx, _args: &ServeArgs) -> Result<i32> {
    serve(ctx, None, None)
}

/// Serves; with `follow`, as a standby of that primary (`ora standby`), `token` over the
/// configured `[standby] token`.
///
/// Kept whole: the start-up order (port, upgrade, store, lock, role, threads, READY) and the
/// shutdown order (requests, threads, writer) read best in one place.
pub(super) fn serve(
    ctx: &Ctx,
    follow: Option<super::standby::Follow>,
    token: Option<String>,
) -> Result<i32> {
    let server = ctx.config.server.clone();
    if !server.bind.ip().is_loopback() && server.tokens.is_empty() {
        return Err(Error::config(format!(
            "serve: refusing to listen on {} without a token: anyone on the network could write to the ledger. Set server.token in the config (or ORA_TOKEN), or bind 127.0.0.1",
            server.bind
        )));
    }
    if !server.bind.ip().is_loopback() && server.tls.is_none() && !server.allow_plain_http {
        return Err(Error::config(format!(
            "serve: refusing to listen on {} in plain HTTP: the tokens and the data would cross the network in clear",
            server.bind
        ))
        .with_hint("set server.tls_cert and server.tls_key (`ora tls selfsigned` makes a pair), or accept plain HTTP with server.allow_plain_http = true"));
    }
    let tls = match &server.tls {
        Some(f) => Some(Arc::new(crate::tls::ServerTls::load(&f.cert, &f.key)?)),
        None => None,
    };
    let stop = Shutdown::new();
    shutdown::on_signals_and_hangup(&stop, Some(reload_on_hangup(tls.clone())))
        .map_err(|e| Error::io("serve: install signal handlers", e))?;
    // The port first: a port already in use is reported before the database is created or
    // migrated. Connections wait in the backlog until the server is ready.
    let http = web::bind(&server)?;
    // Not `ctx.open`: the server's replica shipper follows every commit (see watch_replica).
    if let Some(up) =
        crate::ops::upgrade::backup_before_migration(&ctx.config.store.path, &ctx.config.backup)?
    {
        log::warn!("{}", up.describe(&ctx.config.store.path));
    }
    let store = crate::store::Store::open(&ctx.config.store, OpenMode::Create)?;
    let _lock = ServerLock::acquire(store.path())?;
    let state = Arc::new(
        AppState::new(
            store,
            server,
            ctx.config.backup.clone(),
            ctx.config.health.clone(),
        )
        .with_tls(tls)
        .with_remote(ctx.config.remote.clone())
        .with_standby({
            let mut cfg = ctx.config.standby.clone();
            cfg.token = token.or(cfg.token);
            for p in follow.iter().flat_map(|f| &f.pins) {
                cfg.trust = cfg.trust.with_pin(*p);
            }
            cfg
        }),
    );
    log::info!(
        "serving {} on {}",
        state.store.path().display(),
        state.own_url()
    );
    if let Some(t) = &state.tls {
        log::info!("server TLS: certificate {}", t.fingerprint());
    }
    if state.plain_beyond_loopback() {
        log::warn!(
            "serve: plain HTTP on {} (server.allow_plain_http): tokens and data cross the network in clear",
            state.server.bind
        );
    }
    if let Some(f) = &follow {
        super::standby::prepare(&state, f)?;
    }
    // A standby's changes come from its primary, which forwards them itself; once promoted,
    // it forwards its own.
    let on_promoted: super::standby::OnPromoted = {
        let (config, state, stop) = (ctx.config.clone(), Arc::clone(&state), stop.clone());
        Box::new(move || match start_forwarders(&config, &state, &stop) {
            Ok(f) => f,
            Err(e) => {
                log::error!("sync: the promoted box cannot start forwarding: {e}");
                Vec::new()
            }
        })
    };
    let forwarders = if state.store.gate().is_standby() {
        Vec::new()
    } else {
        start_forwarders(&ctx.config, &state, &stop)?
    };
    let node = super::standby::start(&state, &stop, on_promoted)?;
    let replica_watch = watch_replica(ctx, &state, &stop)?;
    // The slow-statement counts reach the database once a minute and at the end.
    let slow_flush = {
        let (db, stop) = (ctx.config.store.path.clone(), stop.clone());
        std::thread::Builder::new()
            .name("ora-slowlog".into())
            .spawn(move || {
                while !stop.wait(std::time::Duration::from_secs(60)) {
                    crate::store::slowlog::flush(&db);
                }
            })
            .map_err(|e| Error::io("serve: start the slow-statement log", e))?
    };
    let beat = Heartbeat::new();
    beat.tick();
    let watched = Arc::clone(&state);
    sdnotify::start_watchdog(beat.clone(), stop.clone(), move || {
        watched.store.writer().is_ok()
    });
    sdnotify::notify(&format!(
        "READY=1\nSTATUS=serving {} on {}\nMAINPID={}",
        state.store.path().display(),
        state.own_url(),
        std::process::id()
    ));
    web::serve(Arc::clone(&state), http, &stop, &beat)?;
    sdnotify::notify("STOPPING=1\nSTATUS=stopping: finishing requests, committing");
    for f in forwarders {
        let _ = f.join();
    }
    let _ = replica_watch.join();
    let _ = node.join();
    let _ = slow_flush.join();
    crate::store::slowlog::flush(&ctx.config.store.path);
    match Arc::try_unwrap(state) {
        Ok(s) => s.store.close(),
        Err(_) => log::warn!("serve: a worker still holds the store; the writer stops on exit"),
    }
    log::info!("stopped");
    Ok(exit::OK)
}

/// What SIGHUP does: read the certificate and key again (a bad pair is reported and the one
/// in use stays).
fn reload_on_hangup(tls: Option<Arc<crate::tls::ServerTls>>) -> Box<dyn Fn() + Send> {
    Box::new(move || match &tls {
        Some(t) => match t.reload() {
            Ok(fp) => log::info!("server TLS: reloaded on SIGHUP; certificate {fp}"),
            Err(e) => log::error!(
                "server TLS: reload on SIGHUP failed, still serving the previous certificate: {e}"
            ),
        },
        None => log::info!("SIGHUP: nothing to reload (no server.tls_cert)"),
    })
}

/// Starts the replica's shipper when the database has a replica, and keeps looking (every 2
/// s) in case one is set up while the server runs (`ora replica init` from a shell).
fn watch_replica(
    ctx: &Ctx,
    state: &Arc<AppState>,
    stop: &Shutdown,
) -> Result<std::thread::JoinHandle<()>> {
    let attach = |state: &AppState| -> Result<()> {
        if let Some(rep) = crate::replica::attach(
            &state.store,
            &ctx.config.store.tuning,
            &ctx.config.replica,
            true,
        )? {
            log::info!(
                "replica: shipping every commit to {} ({})",
                rep.status().dir,
                rep.mode().as_str()
            );
            if let Ok(mut slot) = state.replica.lock() {
                *slot = Some(rep);
            }
        }
        Ok(())
    };
    attach(state)?;
    let (state, stop) = (Arc::clone(state), stop.clone());
    let tuning = ctx.config.store.tuning.clone();
    let cfg = ctx.config.replica.clone();
    std::thread::Builder::new()
        .name("ora-replica-watch".into())
        .spawn(move || {
            while !stop.wait(std::time::Duration::from_secs(2)) {
                if state.store.has_sink(crate::store::SinkKind::Replica) {
                    continue;
                }
                match crate::replica::attach(&state.store, &tuning, &cfg, true) {
                    Ok(Some(rep)) => {
                        log::info!(
                            "replica: set up while serving; shipping to {}",
                            rep.status().dir
                        );
                        if let Ok(mut slot) = state.replica.lock() {
                            *slot = Some(rep);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => log::warn!("replica: {e}"),
                }
            }
        })
        .map_err(|e| Error::io("serve: start the replica watcher", e))
}

/// Starts a forwarder thread per configured remote target, and forgets targets that are no
/// longer configured (so the outbox stops collecting for them).
fn start_forwarders(
    config: &crate::config::Config,
    state: &Arc<AppState>,
    stop: &Shutdown,
) -> Result<Vec<std::thread::JoinHandle<()>>> {
    use crate::remote::forwarder;
    let cfg = &config.remote;
    let gone = crate::remote::forget_unconfigured(&config.store.path, &config.store.tuning, cfg)?;
    for g in gone {
        log::warn!("sync: target {g} is no longer configured; its outbox position was dropped");
    }
    let opts = forwarder::ForwarderOptions {
        batch: cfg.batch,
        ..forwarder::ForwarderOptions::default()
    };
    let mut threads = Vec::new();
    for t in crate::remote::targets(cfg) {
        let name = t.name();
        let f =
            forwarder::Forwarder::new(&config.store.path, &config.store.tuning, t, opts.clone())?;
        // Its records go through the server's writer, in turn with every other write.
        let st = Arc::clone(state);
        let through: forwarder::WriteThrough = Box::new(move |r| {
            st.store
                .write(crate::store::WriteRequest::new(
                    crate::store::WriteOp::SyncRecord(r),
                ))
                .map(|_| ())
        });
        threads.push(
            forwarder::spawn(f, stop.clone(), Some(through))
                .map_err(|e| Error::io(format!("serve: start the {name} forwarder"), e))?,
        );
        log::info!("sync: forwarding changes to {name}");
    }
    Ok(threads)
}
