//! An old primary rejoining its lineage as a standby of the new primary: where the two
//! histories part (the newest record of this file the new primary has too, asked record by
//! record from the newest down through the records this file kept), and the movements this
//! file committed after it, which the new primary lacks (async mode: acknowledged here, never
//! shipped). They are listed for re-entry; the file then takes a base from the new primary.
//! Reads this file; changes nothing on either side.

use std::time::Duration;

use super::client::{Client, Me, Polled};
use super::error::{StandbyError, StandbyKind};
use crate::store::rebase::{self, Movement};
use crate::store::{capture, Store};

/// What rejoining found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Parting {
    /// The last record both histories share (None: none of the kept records).
    pub shared: Option<i64>,
    /// This file's last record.
    pub last: i64,
    pub movements: Vec<Movement>,
}

/// Finds where this file's history leaves the new primary's (see the module's comment).
pub fn parting(store: &Store, client: &Client, me: &Me) -> Result<Parting, StandbyError> {
    let (last, oldest, ours) = {
        let r = store.read()?;
        let st = capture::state(&r)?
            .ok_or_else(|| StandbyError::new(StandbyKind::Database, "no replica state"))?;
        (
            st.seq,
            capture::oldest_kept(&r)?.unwrap_or(st.seq),
            st.database_id,
        )
    };
    let theirs = client.status()?;
    if theirs.database_id != ours {
        return Err(StandbyError::new(
            StandbyKind::Role,
            format!(
                "{} holds another database (id {}, this one is {ours}); it is not this box's lineage",
                client.url(),
                theirs.database_id
            ),
        ));
    }
    let mut shared = None;
    let mut seq = last;
    while seq >= (oldest - 1).max(0) {
        let hash = capture::hash_at(&*store.read()?, seq)?;
        let Some(hash) = hash else { break };
        match client.poll(seq, &hash, 0, Duration::ZERO, me)? {
            Polled::Records { .. } => {
                shared = Some(seq);
                break;
            }
            // Not in the new primary's history, or not kept there: look further back.
            Polled::Diverged(_) | Polled::Gone(_) => seq -= 1,
            Polled::NotPrimary(why) => {
                return Err(StandbyError::new(
                    StandbyKind::Role,
                    format!("{} is not a primary: {why}", client.url()),
                ))
            }
        }
    }
    let movements = rebase::movements_after(&*store.read()?, shared.unwrap_or(oldest - 1))?;
    Ok(Parting {
        shared,
        last,
        movements,
    })
}
