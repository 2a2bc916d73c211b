//! Where the writer's captured commits go when there is more than one consumer: the replica's
//! shipper and the standbys' feed. [`Fanout`] is one [`ReplicaSink`] for the writer: a write
//! waits for every consumer that asks for it (strict replica, sync standby), and a record
//! leaves `replica_log` only once every consumer has it. Never ships anything itself.

use std::sync::Arc;

use super::capture::Record;
use super::error::Cause;
use super::writer::ReplicaSink;

/// Which consumer a sink is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// The continuous replica's shipper.
    Replica,
    /// The standbys' feed.
    Feed,
}

/// Every attached consumer, as one sink.
pub struct Fanout {
    pub sinks: Vec<(SinkKind, Arc<dyn ReplicaSink>)>,
}

impl ReplicaSink for Fanout {
    fn strict(&self) -> bool {
        self.sinks.iter().any(|(_, s)| s.strict())
    }

    /// Each consumer that asks for it makes the record durable in turn; the first refusal
    /// refuses the write.
    fn ship_now(&self, rec: &Record) -> std::result::Result<(), Cause> {
        for (_, s) in self.sinks.iter().filter(|(_, s)| s.strict()) {
            s.ship_now(rec)?;
        }
        Ok(())
    }

    fn committed(&self, seq: i64) {
        for (_, s) in &self.sinks {
            s.committed(seq);
        }
    }

    fn abandoned(&self, seq: i64) {
        for (_, s) in &self.sinks {
            s.abandoned(seq);
        }
    }

    /// The position every consumer has reached.
    fn shipped(&self) -> i64 {
        self.sinks
            .iter()
            .map(|(_, s)| s.shipped())
            .min()
            .unwrap_or(0)
    }

    fn close(&self) {
        for (_, s) in &self.sinks {
            s.close();
        }
    }
}
