//! The replication routes (`/replication/...`): a primary's base and records for its standbys,
//! every box's role and position, a standby's promotion and an old primary's fence. Each needs
//! the `[standby] token` as a bearer token; without one configured they answer only on a
//! server bound to loopback. Parameters are checked (numbers in range, a 64-digit hash);
//! anything else is refused before the feed or the file is touched.

use std::sync::Arc;
use std::time::Duration;

use super::fault::{Fault, Result};
use super::http::Request;
use super::reply::Reply;
use super::request::{self, Target};
use super::server::AppState;
use crate::config::NamedToken;
use crate::standby::feed::{Answer, Poll};
use crate::standby::{wire, StandbyError, StandbyKind};

/// The longest a poll may wait for a new record.
const MAX_WAIT_MS: u64 = 10_000;

/// Checks the replication token (see the module's comment).
pub fn authorize(st: &AppState, req: &Request) -> Result<()> {
    match &st.node.cfg.token {
        Some(t) => {
            let one = [NamedToken {
                name: "standby".into(),
                token: t.clone(),
            }];
            request::authorize(req, &one).map(|_| ())
        }
        None if st.server.bind.ip().is_loopback() => Ok(()),
        None => Err(Fault::Unauthorized(
            "the replication routes need `[standby] token` on a server reachable from the network"
                .into(),
        )),
    }
}

fn fault(e: StandbyError) -> Fault {
    match e.kind() {
        StandbyKind::Role => Fault::App(crate::error::Error::new(
            crate::error::Kind::NotPrimary,
            e.to_string(),
        )),
        _ => Fault::App(e.into()),
    }
}

fn number(t: &Target, name: &str, default: Option<u64>, max: u64) -> Result<u64> {
    match (t.param(name), default) {
        (None, Some(d)) => Ok(d),
        (None, None) => Err(Fault::usage(format!("the {name} parameter is required"))),
        (Some(v), _) => v.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(|| {
            Fault::usage(format!(
                "{name} must be a whole number from 0 to {max}, got {:?}",
                crate::model::clip(v)
            ))
        }),
    }
}

/// GET /replication/status.
pub fn status(st: &AppState) -> Result<Reply> {
    Ok(Reply::of(200, &st.node.status(&st.store).map_err(fault)?))
}

/// POST /replication/base: a new base for a standby.
pub fn base_new(st: &AppState) -> Result<Reply> {
    st.node.start_feed(&st.store).map_err(fault)?;
    let info = st
        .node
        .bases
        .make(st.store.path(), &st.store_tuning())
        .map_err(Fault::App)?;
    Ok(Reply::of(201, &info))
}

/// GET /replication/base/{id}?offset=N: a piece of the base.
pub fn base_chunk(st: &AppState, id: &str, t: &Target) -> Result<Reply> {
    let offset = number(t, "offset", Some(0), i64::MAX as u64)?;
    match st.node.bases.chunk(id, offset).map_err(Fault::App)? {
        Some(bytes) => Ok(Reply {
            status: 200,
            content_type: "application/octet-stream",
            body: bytes,
            headers: Vec::new(),
        }),
        None => Err(Fault::NoRoute(format!(
            "no base {:?} here (a newer one replaced it, or it expired); ask for a new one",
            crate::model::clip(id)
        ))),
    }
}

/// DELETE /replication/base/{id}: the standby has it.
pub fn base_done(st: &AppState, id: &str) -> Reply {
    st.node.bases.drop_base(Some(id));
    Reply::json(200, &serde_json::json!({ "removed": id }))
}

fn poll_of(req: &Request, t: &Target) -> Result<Poll> {
    let after = number(t, "after", None, i64::MAX as u64)?;
    let hash = t
        .param("hash")
        .and_then(crate::fsutil::unhex32)
        .ok_or_else(|| Fault::usage("hash must be 64 hex digits"))?;
    let wait = number(t, "wait_ms", Some(0), MAX_WAIT_MS)?;
    let max_bytes = number(
        t,
        "max_bytes",
        Some(wire::BATCH_BYTES as u64),
        wire::BATCH_BYTES as u64,
    )?;
    let header = |name: &str| crate::model::clip(req.header(name).unwrap_or("").trim());
    let epoch = match req.header("X-Ora-Epoch") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|e| *e >= 0)
            .ok_or_else(|| Fault::usage("X-Ora-Epoch must be a whole number"))?,
    };
    Ok(Poll {
        after: i64::try_from(after).unwrap_or(i64::MAX),
        hash,
        wait: Duration::from_millis(wait),
        max_bytes: usize::try_from(max_bytes)
            .unwrap_or(wire::BATCH_BYTES)
            .max(1),
        name: match header("X-Ora-Standby") {
            n if n.is_empty() => "standby".into(),
            n => n,
        },
        url: header("X-Ora-Standby-Url"),
        epoch,
    })
}

/// GET /replication/records: the records after a standby's position (see `standby::feed`).
pub fn records(st: &Arc<AppState>, req: &Request, t: &Target) -> Result<Reply> {
    let q = poll_of(req, t)?;
    if let Some(refusal) = st.store.gate().refusal() {
        return Err(refusal.into());
    }
    let Some(feed) = st.node.feed() else {
        return Err(Fault::Gone(
            "this primary's feed was off, so nothing after its base was kept; take a base".into(),
        ));
    };
    match feed.poll(&st.store, &q).map_err(fault)? {
        Answer::Records {
            records,
            primary_seq,
        } => Ok(Reply {
            status: 200,
            content_type: "application/octet-stream",
            body: wire::encode(&records),
            headers: vec![
                ("X-Ora-Primary-Seq", primary_seq.to_string()),
                ("X-Ora-Epoch", feed.epoch().to_string()),
            ],
        }),
        Answer::Gone(why) => Err(Fault::Gone(why)),
        Answer::Diverged(why) => Err(Fault::Diverged(why)),
        Answer::Newer(epoch) => {
            let by = if q.url.is_empty() { q.name } else { q.url };
            st.node.fence(&st.store, epoch, &by).map_err(fault)?;
            Err(st
                .store
                .gate()
                .refusal()
                .map(Fault::from)
                .unwrap_or_else(|| Fault::usage("this box was replaced")))
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FenceBody {
    epoch: i64,
    by: String,
}

/// POST /replication/fence: a newer epoch was promoted elsewhere.
pub fn fence(st: &AppState, req: &Request) -> Result<Reply> {
    let b: FenceBody = request::parse(request::json_body(req)?)?;
    if b.epoch < 1 || b.by.len() > 2_000 {
        return Err(Fault::invalid(
            "epoch must be 1 or more and by at most 2000 characters",
        ));
    }
    st.node
        .fence(&st.store, b.epoch, &b.by)
        .map_err(|e| match e.kind() {
            StandbyKind::Role => Fault::App(crate::error::Error::new(
                crate::error::Kind::Conflict,
                e.to_string(),
            )),
            _ => fault(e),
        })?;
    st.invalidate_health();
    status(st)
}

/// POST /replication/promote: this standby becomes the primary.
pub fn promote(st: &AppState) -> Result<Reply> {
    st.node.promote(&st.store).map_err(|e| match e.kind() {
        StandbyKind::Role | StandbyKind::Database => Fault::App(crate::error::Error::new(
            crate::error::Kind::Conflict,
            e.to_string(),
        )),
        _ => fault(e),
    })?;
    st.invalidate_health();
    status(st)
}
