//! Waiting awake for a moment before sleeping: a thread that expects what it waits for within
//! a fraction of a millisecond polls for it, yielding the CPU to anything else runnable at
//! every turn, instead of sleeping at once. On a virtual machine a thread that sleeps with
//! nothing else to run idles its CPU, and waking it again costs tens of microseconds. Each
//! [`Awake`] lets one thread wait this way at a time, so a crowd of waiters never spins.
//! Knows nothing about what is polled; never blocks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A place where at most one thread at a time waits awake.
#[derive(Debug, Default)]
pub struct Awake {
    taken: AtomicBool,
}

impl Awake {
    pub const fn new() -> Awake {
        Awake {
            taken: AtomicBool::new(false),
        }
    }

    /// Calls `poll` until it returns something or `budget` has passed, yielding the CPU
    /// between calls; `None` at once when another thread is waiting here.
    pub fn wait_for<T>(&self, budget: Duration, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
        if self
            .taken
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        let start = Instant::now();
        let got = loop {
            if let Some(v) = poll() {
                break Some(v);
            }
            if start.elapsed() >= budget {
                break None;
            }
            std::thread::yield_now();
        };
        self.taken.store(false, Ordering::Release);
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_what_the_poll_found_and_gives_up_after_the_budget() {
        let awake = Awake::new();
        let mut calls = 0;
        let found = awake.wait_for(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some("third")
        });
        assert_eq!((found, calls), (Some("third"), 3));
        let start = Instant::now();
        assert_eq!(
            awake.wait_for(Duration::from_millis(2), || None::<()>),
            None
        );
        assert!(
            start.elapsed() >= Duration::from_millis(2),
            "it waited out its budget"
        );
    }

    #[test]
    fn one_thread_at_a_time_and_the_place_is_given_back() {
        let awake = Awake::new();
        let inner = awake.wait_for(Duration::from_secs(5), || {
            Some(awake.wait_for(Duration::from_secs(5), || Some(1)))
        });
        assert_eq!(inner, Some(None), "taken while another waits");
        assert_eq!(awake.wait_for(Duration::from_secs(5), || Some(2)), Some(2));
    }
}
