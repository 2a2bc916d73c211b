//! `ora standby --from URL` (serve as a standby of that primary) and `ora promote` (make the
//! standby the primary): the arguments, turning the file into a standby before the server
//! starts (refused on a primary with data unless `--rejoin`, which first lists the movements
//! the new primary lacks), and starting the follower or the feed beside the server.

use std::sync::Arc;

use clap::Args;

use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::shutdown::Shutdown;
use crate::standby::client::{Client, Me};
use crate::standby::follower::Follower;
use crate::store::role::{self, Change};
use crate::web::AppState;

#[derive(Debug, Args)]
pub struct StandbyArgs {
    /// The primary to follow (http://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The primary's `[standby] token` (env ORA_STANDBY_TOKEN).
    #[arg(long, env = "ORA_STANDBY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// This box was a primary: list the movements it committed that the new primary lacks,
    /// then follow the new primary from a fresh base.
    #[arg(long)]
    pub rejoin: bool,
    /// Address to listen on (as for `ora serve`).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Trust the primary's HTTPS certificate with this fingerprint (`sha256:...`, as `ora tls
    /// fingerprint` prints on the primary); may be given more than once. Adds to
    /// `[standby] tls_pins`.
    #[arg(long = "pin", value_name = "FINGERPRINT", value_parser = pin)]
    pub pins: Vec<[u8; 32]>,
}

fn pin(text: &str) -> std::result::Result<[u8; 32], String> {
    crate::tls::parse_pin(text)
}

/// The standby's trust, and this box's own certificate (its server may be the one asked).
fn own_trust(ctx: &Ctx) -> Result<crate::tls::Trust> {
    let trust = ctx.config.standby.trust.clone();
    let Some(files) = &ctx.config.server.tls else {
        return Ok(trust);
    };
    let pem = std::fs::read(&files.cert)
        .map_err(|e| Error::io(format!("read {}", files.cert.display()), e))?;
    let fp = crate::tls::fingerprint(&pem)?;
    let pin = crate::tls::parse_pin(&fp).map_err(Error::failed)?;
    Ok(trust.with_pin(pin))
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The standby's server (default: the bind address of the configuration).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// What `ora standby` asks of the server it starts.
pub(super) struct Follow {
    pub from: String,
    pub rejoin: bool,
    pub pins: Vec<[u8; 32]>,
}

/// `ora standby`: `ora serve` as a standby of `--from`.
pub fn run(ctx: &Ctx, a: &StandbyArgs) -> Result<i32> {
    let follow = Follow {
        from: a.from.trim_end_matches('/').to_string(),
        rejoin: a.rejoin,
        pins: a.pins.clone(),
    };
    super::serve::serve(ctx, Some(follow), a.token.clone())
}

/// Makes the served file a standby of `f.from` when asked (see the module's comment).
pub(super) fn prepare(state: &AppState, f: &Follow) -> Result<()> {
    let store = &state.store;
    let r = role::read(&*store.read()?)?;
    if r.is_standby() {
        if r.primary_url != f.from {
            log::warn!("standby: now following {} (was {})", f.from, r.primary_url);
            store.change_role(Change::AwaitBase(f.from.clone()))?;
        }
        return Ok(());
    }
    let has_data = crate::store::ledger::count(&*store.read()?)? > 0;
    if has_data && !f.rejoin {
        return Err(Error::new(crate::error::Kind::Conflict, format!(
            "standby: {} is a primary with data (epoch {}); following {} would replace it",
            store.path().display(),
            r.epoch,
            f.from
        ))
        .with_hint("if this box was the primary and another was promoted, add --rejoin (it lists what this box has that the new primary lacks); else give an empty --db"));
    }
    if f.rejoin && has_data {
        list_parting(state, f)?;
    }
    store.change_role(Change::AwaitBase(f.from.clone()))?;
    Ok(())
}

/// Prints the movements this old primary has that the new one lacks, and keeps them in a CSV
/// beside the database for `ora stock import`.
fn list_parting(state: &AppState, f: &Follow) -> Result<()> {
    let client = client(state, &f.from)?;
    let p = crate::standby::rejoin::parting(&state.store, &client, &me(state))?;
    let file = state.store.path().with_extension(format!(
        "rejoin-{}.csv",
        crate::clock::now().format("%Y%m%dT%H%M%S")
    ));
    let write = || -> std::io::Result<()> {
        let mut pending = crate::fsutil::PendingFile::create(&file)?;
        let mut csv = csv::Writer::from_writer(pending.file());
        csv.write_record(["sku", "type", "quantity", "date", "notes", "request_id"])?;
        for m in &p.movements {
            csv.write_record([
                m.sku.as_str(),
                m.kind.as_str(),
                &m.quantity.to_string(),
                m.date.as_str(),
                m.notes.as_deref().unwrap_or(""),
                m.request_id.as_deref().unwrap_or(""),
            ])?;
        }
        csv.flush()?;
        drop(csv);
        pending.commit().map(|_| ())
    };
    write().map_err(|e| Error::io(format!("standby: write {}", file.display()), e))?;
    let shared = p
        .shared
        .map_or("none of the kept records".to_string(), |s| {
            format!("record {s}")
        });
    outln!(
        "rejoin: the histories share up to {shared}; this box committed {} movement(s) after it that {} lacks:",
        p.movements.len(),
        f.from
    );
    for m in &p.movements {
        outln!(
            "  #{} {} {} {} {}{}",
            m.id,
            m.date,
            m.sku,
            m.kind,
            m.quantity,
            m.request_id
                .as_deref()
                .map(|r| format!(" (request {r})"))
                .unwrap_or_default()
        );
    }
    outln!(
        "rejoin: they are in {}; enter them again on the new primary (`ora stock import` there) once checked",
        file.display()
    );
    Ok(())
}

fn me(state: &AppState) -> Me {
    Me {
        name: state.node.cfg.name.clone(),
        url: state.node.me_url.clone(),
    }
}

fn client(state: &AppState, url: &str) -> Result<Client> {
    Ok(Client::new(
        url,
        state.node.cfg.token.as_deref(),
        std::time::Duration::from_secs(30),
        &state.node.cfg.trust,
    )?)
}

/// What a standby starts once it is promoted while serving (its forwarders), handed back to
/// be joined at shutdown.
pub(super) type OnPromoted = Box<dyn FnOnce() -> Vec<std::thread::JoinHandle<()>> + Send>;

/// Starts what the file's role asks for beside the server: the follower of a standby (and,
/// once it is promoted, `on_promoted`), or the feed (when on, or in sync mode) and the
/// standbys' watch of a primary.
pub(super) fn start(
    state: &Arc<AppState>,
    stop: &Shutdown,
    on_promoted: OnPromoted,
) -> Result<std::thread::JoinHandle<()>> {
    let r = role::read(&*state.store.read()?)?;
    let st = Arc::clone(state);
    let stop = stop.clone();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| Error::io("serve: start the standby thread", e))
    };
    if r.is_standby() {
        let follower = Arc::new(Follower::new(&r.primary_url, &st.node.cfg, me(&st))?);
        st.node.set_follower(Arc::clone(&follower));
        log::info!("standby: following {}", r.primary_url);
        return spawn(
            "ora-follow",
            Box::new(move || {
                follower.run(&st.store, &stop);
                if stop.is_tripped() {
                    return;
                }
                // Promoted while serving: the node now feeds standbys of its own, and forwards.
                let forwarders = on_promoted();
                st.node.watch(&st.store, &stop);
                for f in forwarders {
                    let _ = f.join();
                }
            }),
        );
    }
    if r.fenced.is_empty() && (r.feed || st.node.cfg.mode == crate::standby::Mode::Sync) {
        st.node.start_feed(&st.store)?;
    }
    spawn(
        "ora-standbys",
        Box::new(move || st.node.watch(&st.store, &stop)),
    )
}

/// `ora promote`: asks the local standby's server to promote itself, or, when no server runs
/// on the file, promotes the file directly.
pub fn promote(ctx: &Ctx, a: &PromoteArgs) -> Result<i32> {
    let path = &ctx.config.store.path;
    let serving = crate::fsutil::server_holding(path).is_some();
    let cfg = &ctx.config.standby;
    let r = if serving || a.url.is_some() {
        let server = &ctx.config.server;
        let scheme = if server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let url = a
            .url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", server.bind));
        let c = Client::new(
            &url,
            cfg.token.as_deref(),
            std::time::Duration::from_secs(30),
            &own_trust(ctx)?,
        )?;
        let st = c.promote()?;
        (st.role, st.epoch)
    } else {
        let store = ctx.open(crate::store::OpenMode::Existing)?;
        let (r, _) = store.change_role(Change::Promote)?;
        store.close();
        (r.role, r.epoch)
    };
    if ctx.json {
        super::output::json(&serde_json::json!({"role": r.0, "epoch": r.1}))?;
    } else {
        outln!(
            "promote: this box is the {} of epoch {}; it takes writes now",
            r.0,
            r.1
        );
    }
    Ok(exit::OK)
}
