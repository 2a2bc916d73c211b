//! The primary's side of the feed. Standbys ask for the records after their position (with
//! the hash they hold there, their name and the newest epoch they know); [`Feed::poll`] checks
//! that position against this database's history, counts it as the standby's acknowledgement
//! (everything up to it is durable there), and answers with the records that follow, waiting
//! for the next commit when there is none yet. As the writer's [`ReplicaSink`] it learns of
//! every commit; in sync mode it holds each commit until a standby has acknowledged its record
//! (served before COMMIT, from memory), or refuses the write (or falls back to async, when
//! configured so) once `sync_timeout` has passed. It tells the writer which records every
//! standby still needs, so they stay in `replica_log` (at most `keep_records` of them). Reads
//! the database only through the caller's reader; never writes it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::capture::{self, Record};
use crate::store::{ReplicaSink, Store};

use super::error::{StandbyError, StandbyKind};
use super::{Mode, OnTimeout, StandbyConfig};

/// Records served in one answer at most.
const MAX_RECORDS: usize = 4_096;
/// A standby silent for longer than this no longer holds records back.
const AWAY: Duration = Duration::from_secs(3_600);

/// A standby as the feed last saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    pub name: String,
    /// Where it serves (it says so; for the old primary's fencing checks and the page).
    pub url: String,
    /// The position it acknowledged: every record up to it is durable there.
    pub acked: i64,
    /// When it last asked (ms since 1970).
    pub last_ms: i64,
}

/// What a standby asks for.
#[derive(Debug, Clone)]
pub struct Poll {
    pub after: i64,
    pub hash: [u8; 32],
    pub wait: Duration,
    pub max_bytes: usize,
    pub name: String,
    pub url: String,
    /// The newest epoch the standby knows.
    pub epoch: i64,
}

/// The feed's answer.
#[derive(Debug)]
pub enum Answer {
    /// The records after the position (none: nothing new within the wait), and the primary's
    /// last commit.
    Records {
        records: Vec<Record>,
        primary_seq: i64,
    },
    /// The position is no longer kept here: take a new base.
    Gone(String),
    /// The position is not in this database's history: take a new base.
    Diverged(String),
    /// The standby knows a newer epoch than this primary's: this primary was replaced.
    Newer(i64),
}

/// What the page, `/health` and `/metrics` show of the feed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    pub mode: &'static str,
    /// Sync mode gave up waiting and acknowledges at the local commit since (ms since 1970).
    pub fallback_since_ms: Option<i64>,
    pub epoch: i64,
    pub last_commit: i64,
    pub standbys: Vec<Seen>,
}

#[derive(Default)]
struct State {
    committed: i64,
    /// Sync mode: the record of the group waiting for a standby, before its COMMIT.
    inflight: Option<Record>,
    /// The highest position a standby acknowledged.
    acked: i64,
    standbys: BTreeMap<String, Seen>,
    fallback_since_ms: Option<i64>,
    /// Moves with every commit, in-flight record and stop: pollers wait for it to move.
    generation: u64,
    stop: bool,
}

/// The feed of one primary.
pub struct Feed {
    cfg: StandbyConfig,
    epoch: AtomicI64,
    state: Mutex<State>,
    cv: Condvar,
}

impl Feed {
    /// A feed for a database whose last commit is `committed`, in `epoch`.
    pub fn new(cfg: &StandbyConfig, committed: i64, epoch: i64) -> Arc<Feed> {
        Arc::new(Feed {
            cfg: cfg.clone(),
            epoch: AtomicI64::new(epoch),
            state: Mutex::new(State {
                committed,
                acked: 0,
                ..State::default()
            }),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> FeedStatus {
        let s = self.lock();
        FeedStatus {
            mode: self.cfg.mode.as_str(),
            fallback_since_ms: s.fallback_since_ms,
            epoch: self.epoch(),
            last_commit: s.committed,
            standbys: s.standbys.values().cloned().collect(),
        }
    }

    /// Answers a standby's poll (see the module's comment).
    pub fn poll(&self, store: &Store, q: &Poll) -> Result<Answer, StandbyError> {
        if q.epoch > self.epoch() {
            return Ok(Answer::Newer(q.epoch));
        }
        if q.after < 0 {
            return Ok(Answer::Gone(
                "this standby has no base yet; take one first".into(),
            ));
        }
        if let Some(answer) = self.check_position(&*store.read()?, q)? {
            return Ok(answer);
        }
        self.acknowledge(q);
        let deadline = Instant::now() + q.wait;
        loop {
            let generation = self.lock().generation;
            // A reader only while reading: a waiting poll holds none of the pool.
            let mut records =
                capture::records_after(&*store.read()?, q.after, MAX_RECORDS, q.max_bytes)?;
            let (primary_seq, inflight) = {
                let s = self.lock();
                (s.committed, s.inflight.clone())
            };
            if records.is_empty() {
                records.extend(inflight.filter(|r| r.seq == q.after + 1));
            }
            let now = Instant::now();
            if !records.is_empty() || now >= deadline {
                return Ok(Answer::Records {
                    records,
                    primary_seq,
                });
            }
            let s = self.lock();
            if s.stop {
                return Ok(Answer::Records {
                    records,
                    primary_seq,
                });
            }
            if s.generation == generation {
                drop(
                    self.cv
                        .wait_timeout(s, deadline - now)
                        .unwrap_or_else(|p| p.into_inner()),
                );
            }
        }
    }

    /// Whether the standby's position is one this database can continue from.
    fn check_position(
        &self,
        reader: &rusqlite::Connection,
        q: &Poll,
    ) -> Result<Option<Answer>, StandbyError> {
        let inflight = self.lock().inflight.clone();
        let ours = match inflight.filter(|r| r.seq == q.after) {
            Some(r) => Some(r.hash),
            None => capture::hash_at(reader, q.after)?,
        };
        match ours {
            Some(h) if h == q.hash => Ok(None),
            Some(_) => Ok(Some(Answer::Diverged(format!(
                "this standby's record {} is not the primary's: the two histories diverged there",
                q.after
            )))),
            None => {
                let committed = self.lock().committed;
                if q.after > committed {
                    return Ok(Some(Answer::Diverged(format!(
                        "this standby stands at record {}, past the primary's last commit {committed}",
                        q.after
                    ))));
                }
                let oldest = capture::oldest_kept(reader)?;
                Ok(Some(Answer::Gone(format!(
                    "the primary no longer keeps record {} (it keeps {}); take a new base",
                    q.after,
                    oldest.map_or("none".to_string(), |o| format!("{o} onwards"))
                ))))
            }
        }
    }

    /// Counts the poll's position as the standby's acknowledgement.
    fn acknowledge(&self, q: &Poll) {
        let mut s = self.lock();
        let seen = s.standbys.entry(q.name.clone()).or_insert_with(|| Seen {
            name: q.name.clone(),
            url: String::new(),
            acked: 0,
            last_ms: 0,
        });
        seen.url = q.url.clone();
        seen.acked = q.after;
        seen.last_ms = capture::now_ms();
        if q.after > s.acked {
            s.acked = q.after;
        }
        if s.fallback_since_ms.is_some() && s.acked >= s.committed {
            log::info!(
                "standby: {} caught up; sync mode again (writes wait for a standby)",
                q.name
            );
            s.fallback_since_ms = None;
        }
        self.cv.notify_all();
    }

    /// Acknowledges at the local commit until a standby catches up (a promoted box: its
    /// standby was the primary that is gone; sync mode resumes once a new standby follows).
    pub fn degrade_until_followed(&self) {
        if self.cfg.mode == Mode::Sync {
            self.lock().fallback_since_ms = Some(capture::now_ms());
        }
    }

    /// Ends every waiting poll and sync write.
    pub fn stop(&self) {
        let mut s = self.lock();
        s.stop = true;
        s.generation += 1;
        self.cv.notify_all();
    }
}

impl ReplicaSink for Feed {
    fn strict(&self) -> bool {
        self.cfg.mode == Mode::Sync && self.lock().fallback_since_ms.is_none()
    }

    fn ship_now(&self, rec: &Record) -> Result<(), crate::store::Cause> {
        let deadline = Instant::now() + self.cfg.sync_timeout;
        let mut s = self.lock();
        s.inflight = Some(rec.clone());
        s.generation += 1;
        self.cv.notify_all();
        while s.acked < rec.seq && !s.stop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if s.acked >= rec.seq {
            return Ok(());
        }
        if s.stop {
            s.inflight = None;
            return Err(Arc::new(StandbyError::new(
                StandbyKind::Stopped,
                "the standbys' feed is stopping",
            )));
        }
        if self.cfg.on_timeout == OnTimeout::Async {
            log::warn!(
                "standby: no standby confirmed commit {} within {} ms; acknowledging at the local commit until one catches up (sync mode fell back to async)",
                rec.seq,
                self.cfg.sync_timeout.as_millis()
            );
            s.fallback_since_ms = Some(capture::now_ms());
            return Ok(());
        }
        s.inflight = None;
        s.generation += 1;
        Err(Arc::new(StandbyError::new(
            StandbyKind::Timeout,
            format!(
                "no standby confirmed this change within {} ms",
                self.cfg.sync_timeout.as_millis()
            ),
        )))
    }

    fn committed(&self, seq: i64) {
        let mut s = self.lock();
        s.committed = s.committed.max(seq);
        if s.inflight.as_ref().is_some_and(|r| r.seq <= seq) {
            s.inflight = None;
        }
        s.generation += 1;
        self.cv.notify_all();
    }

    fn abandoned(&self, seq: i64) {
        let mut s = self.lock();
        if s.inflight.as_ref().is_some_and(|r| r.seq == seq) {
            s.inflight = None;
        }
        s.generation += 1;
        self.cv.notify_all();
    }

    /// Records every standby seen within the last hour still needs stay; at most
    /// `keep_records` behind the last commit.
    fn shipped(&self) -> i64 {
        let s = self.lock();
        let now = capture::now_ms();
        let away = i64::try_from(AWAY.as_millis()).unwrap_or(i64::MAX);
        let needed = s
            .standbys
            .values()
            .filter(|x| now - x.last_ms < away)
            .map(|x| x.acked)
            .min()
            .unwrap_or(s.committed);
        let floor = s
            .committed
            .saturating_sub(i64::try_from(self.cfg.keep_records).unwrap_or(i64::MAX));
        needed.max(floor)
    }

    fn close(&self) {
        self.stop();
    }
}
