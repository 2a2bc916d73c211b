//! This box among its lineage's boxes, for the server: the feed it offers as a primary, the
//! base it keeps for a standby, the follower it runs as a standby, and the role changes
//! between them. A promotion starts the next epoch, turns the feed on and tells the old
//! primary (again and again, until it answers or ten minutes pass); a fence comes from a
//! newer epoch only. A primary asks the standbys it has seen which epoch they are in, and
//! fences itself when one was promoted past it; every 10 s it also asks the peers it has ever
//! known ([`super::peers`], kept across restarts), fencing itself before a newer primary and
//! telling an older, unfenced one that it was replaced. Changes the file only through the
//! writer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::base::Bases;
use super::client::{Client, RemoteStatus};
use super::error::{StandbyError, StandbyKind};
use super::feed::{Feed, FeedStatus};
use super::follower::{Follower, FollowerStatus};
use super::peers::Peers;
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
    /// The other boxes this one has known (asked every 10 s, kept across restarts).
    pub peers: Vec<String>,
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
    /// The other boxes this one has known, kept beside the database.
    peers: Peers,
}

/// The watch asks the known peers (not only the standbys polling now) every this many turns.
const PEERS_EVERY: u32 = 5;

impl Node {
    /// The node of the database at `db` (none: nothing is kept across restarts).
    pub fn new(cfg: StandbyConfig, me_url: String, db: Option<&std::path::Path>) -> Node {
        Node {
            cfg,
            me_url,
            bases: Bases::default(),
            feed: Mutex::new(None),
            follower: Mutex::new(None),
            peers: Peers::load(db),
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
        self.peers.add(&f.status().primary_url);
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

    /// The role and position of this box. A fence is reported from the moment writes are
    /// refused, while it is still on its way to the file.
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
            fenced: store.gate().fenced().unwrap_or(r.fenced),
            feed: self.feed().map(|f| f.status()),
            follower: self.follower().map(|f| f.status()),
            peers: self.peers.list(),
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
        self.peers.add(by);
        let (r, _) = store.change_role(Change::Fence(why))?;
        Ok(r)
    }

    /// A primary asks each standby it has seen within the hour (and, `with_peers`, every peer
    /// it has known) which epoch it is in: it fences itself when one was promoted past it, and
    /// tells an older primary that is not fenced yet that it was replaced.
    pub fn check_standbys(&self, store: &Store, with_peers: bool) {
        if !store.gate().takes_writes() {
            return;
        }
        let Ok(epoch) = store.read().and_then(|r| role::read(&r)).map(|r| r.epoch) else {
            return;
        };
        let now = capture::now_ms();
        let mut urls: Vec<String> = self
            .feed()
            .map(|f| f.status().standbys)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.url.is_empty() && now - s.last_ms <= 3_600_000)
            .map(|s| s.url)
            .collect();
        for u in &urls {
            self.peers.add(u);
        }
        if with_peers {
            urls.extend(self.peers.list());
            urls.sort();
            urls.dedup();
        }
        for url in urls.iter().filter(|u| **u != self.me_url) {
            let Ok(c) = Client::new(
                url,
                self.cfg.token.as_deref(),
                Duration::from_secs(2),
                &self.cfg.trust,
            ) else {
                continue;
            };
            let Ok(st) = c.status() else { continue };
            if st.role != "primary" || !st.fenced.is_empty() {
                continue;
            }
            if st.epoch > epoch {
                if let Err(e) = self.fence(store, st.epoch, url) {
                    log::warn!("standby: {e}");
                }
                return;
            }
            if st.epoch < epoch && c.fence(epoch, &self.me_url).is_ok() {
                log::warn!("standby: {url} was still a primary of epoch {}; it was told this box replaced it", st.epoch);
            }
        }
    }

    /// Runs until `stop`: every 2 s checks the standbys; at the end stops the feed's polls.
    pub fn watch(&self, store: &Store, stop: &Shutdown) {
        let mut turn = 0u32;
        loop {
            self.check_standbys(store, turn.is_multiple_of(PEERS_EVERY));
            turn = turn.wrapping_add(1);
            if stop.wait(Duration::from_secs(2)) {
                break;
            }
        }
        if let Some(f) = self.feed() {
            f.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OpenMode, StoreOptions};

    #[test]
    fn the_status_says_fenced_as_soon_as_writes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &StoreOptions::new(dir.path().join("n.db")),
            OpenMode::Create,
        )
        .unwrap();
        let node = Node::new(StandbyConfig::default(), String::new(), None);
        assert_eq!(node.status(&store).unwrap().fenced, "");
        // The fence is on its way to the file: writes are refused, and the status says why.
        store.gate().close("epoch 2 was promoted at box b");
        assert_eq!(
            node.status(&store).unwrap().fenced,
            "epoch 2 was promoted at box b"
        );
        store.close();
    }
}
