//! The remote proxies, all off unless configured: change capture through the
//! outbox, the forwarder that delivers it in order to each target, the PostgreSQL mirror, the
//! Qdrant product collection, product search (Qdrant or the local index), and their settings
//! (`options`).

mod causes;
pub mod check;
pub mod embed;
pub mod forwarder;
pub mod httpc;
#[cfg(feature = "postgres")]
pub mod mirror_read;
pub mod options;
pub mod outbox;
#[cfg(feature = "postgres")]
mod pgtls;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod qdrant;
pub mod search;
pub mod target;

use crate::remote::options::RemoteConfig;

/// The targets the configuration enables, ready for forwarders.
pub fn targets(cfg: &RemoteConfig) -> Vec<Box<dyn target::Target>> {
    let mut out: Vec<Box<dyn target::Target>> = Vec::new();
    #[cfg(feature = "postgres")]
    if let Some(pg) = &cfg.postgres {
        out.push(Box::new(postgres::Postgres::new(pg, &cfg.site_id)));
    }
    if let Some(q) = &cfg.qdrant {
        out.push(Box::new(qdrant::Qdrant::new(q, &cfg.site_id)));
    }
    out
}

/// The names of the configured targets.
fn target_names(cfg: &RemoteConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg.postgres.is_some() {
        out.push("postgres");
    }
    if cfg.qdrant.is_some() {
        out.push("qdrant");
    }
    out
}

/// At server start: forgets the targets no longer configured (so the outbox stops collecting
/// for them) and prunes what every remaining target has; returns the forgotten names.
pub fn forget_unconfigured(
    db: &std::path::Path,
    tuning: &crate::store::connection::Tuning,
    cfg: &crate::remote::options::RemoteConfig,
) -> crate::error::Result<Vec<String>> {
    let conn = crate::store::connection::open_writer(db, tuning)?;
    let gone = outbox::unregister_others(&conn, &target_names(cfg))?;
    outbox::prune(&conn)?;
    Ok(gone)
}

/// Asks every configured target, now, whether it answers: (target, what it said or why not).
/// Changes nothing anywhere.
pub fn probe(
    cfg: &crate::remote::options::RemoteConfig,
) -> Vec<(String, std::result::Result<String, String>)> {
    targets(cfg)
        .into_iter()
        .map(|mut t| (t.name().to_string(), t.probe().map_err(|e| e.to_string())))
        .collect()
}

/// After the database was replaced (restore, salvage): every remote target starts again with a
/// full copy of this site, so that rows, points or products the restored file no longer has
/// (added after the backup) do not stay behind on the target. Logged, never fatal.
pub fn after_replace(db: &std::path::Path, tuning: &crate::store::connection::Tuning) {
    let run = || -> crate::error::Result<usize> {
        let conn = crate::store::connection::open_writer(db, tuning)?;
        Ok(outbox::reset_all_positions(&conn)?)
    };
    match run() {
        Ok(0) => {}
        Ok(n) => log::info!("{n} remote target(s) will get a full copy of the restored database"),
        Err(e) => log::warn!(
            "the remote targets could not be told to copy the restored database again ({e}); run `ora sync TARGET --resync`"
        ),
    }
}
