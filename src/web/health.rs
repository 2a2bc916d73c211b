//! `GET /health`: the verdict of [`crate::ops::health::judge`] on cheap, live facts (file,
//! WAL, free pages, the last recorded integrity result, the newest backup and its drill, the
//! last maintenance, the writer), cached for a second so a monitoring storm costs nothing.
//! 200 when healthy (ok or warn), 503 when failing, with the reasons either way.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::reply::Reply;
use super::server::AppState;
use crate::ops::health::{self, CheckMode, HealthReport, Level};

/// How long a computed verdict is reused.
const CACHE: Duration = Duration::from_secs(1);

/// The current verdict (cached).
pub fn report(st: &AppState) -> HealthReport {
    if let Ok(guard) = st.health_cache.lock() {
        if let Some((at, r)) = guard.as_ref() {
            if at.elapsed() < CACHE {
                return r.clone();
            }
        }
    }
    let t0 = Instant::now();
    let facts = health::gather(
        st.store.path(),
        &st.health,
        &st.store_tuning(),
        CheckMode::Recorded,
        st.replica_status(),
    );
    let (verdict, findings) = health::judge(&facts, &st.health);
    let r = HealthReport {
        verdict,
        findings,
        database: st.store.path().display().to_string(),
        facts,
        seconds: t0.elapsed().as_secs_f64(),
    };
    if let Ok(mut guard) = st.health_cache.lock() {
        *guard = Some((Instant::now(), r.clone()));
    }
    r
}

/// The /health answer.
pub fn reply(st: &AppState) -> Reply {
    let r = report(st);
    let stats = st.store.writer().ok().map(|w| w.stats().clone());
    let writer = stats.map(|s| {
        serde_json::json!({
            "queued": s.queued.load(Ordering::Relaxed),
            "commits": s.commits.load(Ordering::Relaxed),
            "applied": s.applied.load(Ordering::Relaxed),
            "failed_commits": s.failed_commits.load(Ordering::Relaxed),
        })
    });
    let mut body = r.to_json(writer, Some(st.started.elapsed().as_secs()));
    // The role as `ora health` reads it from the file, with what only the server knows: the
    // position, a standby's follower, a primary's standbys, and a fence from the moment writes
    // are refused (the cached verdict, or the file, may not have it yet).
    let node = st.node.status(&st.store).ok();
    if let (Some(role), Some(n)) = (body.get_mut("role").and_then(|v| v.as_object_mut()), node) {
        let f = n.follower.as_ref();
        let extra = serde_json::json!({
            "fenced": n.fenced,
            "seq": n.seq,
            "lag_records": f.map(|f| f.lag_records),
            "lag_ms": f.map(|f| f.lag_ms),
            "last_record_ms": f.map(|f| f.last_record_ms),
            "following": f.map(|f| f.state),
            "standbys": n.feed.as_ref().map(|f| f.standbys.len()),
            "sync_fallback": n.feed.as_ref().map(|f| f.fallback_since_ms.is_some()),
        });
        if let Some(extra) = extra.as_object() {
            role.extend(extra.clone());
        }
    }
    Reply::json(if r.verdict == Level::Fail { 503 } else { 200 }, &body)
}
