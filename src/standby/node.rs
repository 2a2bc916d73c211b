//! This box among its lineage's boxes, for the server: the feed it offers as a primary, the
//! base it keeps for a standby, the follower it runs as a standby, and the role changes
//! between them. A promotion starts the next epoch, turns the feed on and tells the old
//! primary (again and again, until it answers or ten minutes pass); a fence comes from a
//! newer epoch only. A primary asks the standbys it has seen which epoch they are in, and
//! fences itself when one was promoted past it. Changes the file only through the writer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::base::Bases;
use super::client::{Client, RemoteStatus};
use super::error::{StandbyError, StandbyKind};
use super::feed::{Feed, FeedStatus};
use super::follower::{Follower, FollowerStatus};
use super::StandbyConfig;
use crate::shutdown::Shutdown;
use crate::store::capture;
use crate::store::role::{self, Change, Role};
use crate::store::{SinkKind, Store};

/// How long a promoted box keeps telling its old primary.
const TELL_FOR: Duration = Duration::from_secs(600);

/// What `/replication/status`, `/health` and the page show of this box's role.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub role: String,
    pub epoch: i64,
    pub seq: i64,
    pub database_id: String,
    pub primary_url: String,
    pub fenced: String,
    pub feed: Option<FeedStatus>,
    pub follower: Option<FollowerStatus>,
}

impl NodeStatus {
    pub fn remote(&self) -> RemoteStatus {
        RemoteStatus {
            role: self.role.clone(),
            epoch: self.epoch,
            seq: self.seq,
            database_id: self.database_id.clone(),
            primary_url: self.primary_url.clone(),
            fenced: self.fenced.clone(),
        }
    }
}

/// This box's part in replication.
pub struct Node {
    pub cfg: StandbyConfig,
    /// Where the other boxes reach this one.
    pub me_url: String,
    pub bases: Bases,
    feed: Mutex<Option<Arc<Feed>>>,
    follower: Mutex<Option<Arc<Follower>>>,
}

impl Node {
    pub fn new(cfg: StandbyConfig, me_url: String) -> Node {
        Node {
            cfg,
            me_url,
            bases: Bases::default(),
            feed: Mutex::new(None),
            follower: Mutex::new(None),
        }
    }

    pub fn feed(&self) -> Option<Arc<Feed>> {
        self.feed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn follower(&self) -> Option<Arc<Follower>> {
        self.follower
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_follower(&self, f: Arc<Follower>) {
        *self.follower.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// Turns the feed on (in the file, so that every commit is captured from now on) and
    /// attaches it to the writer; the feed already running when it is.
    pub fn start_feed(&self, store: &Store) -> Result<Arc<Feed>, StandbyError> {
        let mut slot = self.feed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = slot.as_ref() {
            return Ok(Arc::clone(f));
        }
        let r = role::read(&*store.read()?)?;
        if r.is_standby() || !r.fenced.is_empty() {
            return Err(StandbyError::new(
                StandbyKind::Role,
                "this box is not the primary; it feeds no standby",
            ));
        }
        if !r.feed {
            store.change_role(Change::Feed(true))?;
        }
        let st = capture::state(&*store.read()?)?.ok_or_else(|| {
            StandbyError::new(StandbyKind::Database, "the database has no replica state")
        })?;
        let feed = Feed::new(&self.cfg, st.seq, st.epoch);
        store.attach_sink(SinkKind::Feed, Arc::clone(&feed) as Arc<_>);
        log::info!(
            "standby: offering commits to standbys ({} mode) from record {}",
            self.cfg.mode.as_str(),
            st.seq
        );
        *slot = Some(Arc::clone(&feed));
        Ok(feed)
    }

    /// The role and position of this box.
    pub fn status(&self, store: &Store) -> Result<NodeStatus, StandbyError> {
        let reader = store.read()?;
        let r = role::read(&reader)?;
        let st = capture::state(&reader)?;
        Ok(NodeStatus {
            role: r.role,
            epoch: r.epoch,
            seq: st.as_ref().map_or(0, |s| s.seq),
            database_id: st.map(|s| s.database_id).unwrap_or_default(),
            primary_url: r.primary_url,
            fenced: r.fenced,
            feed: self.feed().map(|f| f.status()),
            follower: self.follower().map(|f| f.status()),
        })
    }

    /// Makes this standby the primary of the next epoch (see the module's comment).
    pub fn promote(&self, store: &Store) -> Result<Role, StandbyError> {
        let (r, _) = store.change_role(Change::Promote)?;
        log::warn!(
            "standby: promoted: this box is the primary of epoch {} and takes writes",
            r.epoch
        );
        // The standby of a promoted box was the primary that is gone: waiting for it would
        // refuse every write. Sync mode resumes when a new standby has caught up.
        self.start_feed(store)?.degrade_until_followed();
        let old = self
            .follower()
            .map(|f| f.status().primary_url)
            .filter(|u| !u.is_empty());
        if let Some(old) = old {
            self.tell_old_primary(old, r.epoch);
        }
        Ok(r)
    }

    fn tell_old_primary(&self, old: String, epoch: i64) {
        let Ok(client) = Client::new(
            &old,
            self.cfg.token.as_deref(),
            Duration::from_secs(5),
            &self.cfg.trust,
        ) else {
            return;
        };
        let me = self.me_url.clone();
        let spawned = std::thread::Builder::new()
            .name("ora-fence-old".into())
            .spawn(move || {
                let until = std::time::Instant::now() + TELL_FOR;
                while std::time::Instant::now() < until {
                    match client.fence(epoch, &me) {
                        Ok(_) => {
                            log::info!("standby: the old primary {old} was told it is fenced");
                            return;
                        }
                        // It answered and refused (a standby by now, or a newer epoch).
                        Err(e) if e.kind() != StandbyKind::Unreachable => return,
                        Err(_) => std::thread::sleep(Duration::from_secs(2)),
                    }
                }
                log::warn!(
                    "standby: the old primary {old} could not be told of epoch {epoch}; it refuses writes when it sees this box, or stop it"
                );
            });
        if let Err(e) = spawned {
            log::warn!("standby: cannot start telling the old primary: {e}");
        }
    }

    /// Fences this primary: epoch `epoch` was promoted at `by`.
    pub fn fence(&self, store: &Store, epoch: i64, by: &str) -> Result<Role, StandbyError> {
        let r = role::read(&*store.read()?)?;
        if r.epoch >= epoch || r.is_standby() {
            return Err(StandbyError::new(
                StandbyKind::Role,
                format!(
                    "this box is a {} of epoch {}; epoch {epoch} does not replace it",
                    r.role, r.epoch
                ),
            ));
        }
        let why = format!(
            "{} was promoted to primary (epoch {epoch}) in place of this box (epoch {})",
            crate::model::clip(by),
            r.epoch
        );
        log::error!("standby: fenced: {why}; this box takes no writes");
        let (r, _) = store.change_role(Change::Fence(why))?;
        Ok(r)
    }

    /// A primary asks each standby it has seen within the hour which epoch it is in, and fences
    /// itself when one was promoted past it.
    pub fn check_standbys(&self, store: &Store) {
        let Some(feed) = self.feed() else { return };
        if !store.gate().takes_writes() {
            return;
        }
        let now = capture::now_ms();
        for s in feed.status().standbys {
            if s.url.is_empty() || now - s.last_ms > 3_600_000 {
                continue;
            }
            let Ok(c) = Client::new(
                &s.url,
                self.cfg.token.as_deref(),
                Duration::from_secs(2),
                &self.cfg.trust,
            ) else {
                continue;
            };
            if let Ok(st) = c.status() {
                if st.role == "primary" && st.epoch > feed.epoch() && st.fenced.is_empty() {
                    if let Err(e) = self.fence(store, st.epoch, &s.url) {
                        log::warn!("standby: {e}");
                    }
                    return;
                }
            }
        }
    }

    /// Runs until `stop`: every 2 s checks the standbys; at the end stops the feed's polls.
    pub fn watch(&self, store: &Store, stop: &Shutdown) {
        while !stop.wait(Duration::from_secs(2)) {
            self.check_standbys(store);
        }
        if let Some(f) = self.feed() {
            f.stop();
        }
    }
}
