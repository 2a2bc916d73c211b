//! Counters and a latency histogram the writer keeps for `/metrics`: lock-free, cheap enough
//! for the hot path, and never a source of errors.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency histogram buckets: from a tenth of a millisecond (the
/// replica's record of a small group takes about that) to seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A cumulative-style histogram of durations (Prometheus semantics when exported).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// (upper bound, cumulative count) per bucket, then total count and sum in seconds.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut acc = 0;
        let cumulative = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| {
                acc += n.load(Ordering::Relaxed);
                (*b, acc)
            })
            .collect();
        (
            cumulative,
            self.count.load(Ordering::Relaxed),
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}

/// What the writer has done since it started.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Requests waiting in the queue or in the transaction being built.
    pub queued: AtomicI64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Requests answered with success.
    pub applied: AtomicU64,
    /// Requests answered with an error.
    pub refused: AtomicU64,
    /// Transactions whose COMMIT failed (every request in them was answered with the error).
    pub failed_commits: AtomicU64,
    /// Time from BEGIN to COMMIT returning.
    pub commit_seconds: Histogram,
    /// Time of the COMMIT statement alone: the group's WAL frames written and synced. What the
    /// disk costs a group, whatever the group holds.
    pub sync_seconds: Histogram,
    /// Time of recording a captured group for the replica just before its COMMIT (the
    /// changeset, its hash, the `replica_log` row, the prune of shipped ones): the replica's
    /// share of the writer's time. Nothing while the database has no replica.
    pub capture_seconds: Histogram,
}
