//! Keeping a second CPU awake while a lone request is handled. When one request is being
//! handled and nothing else is, a helper thread polls the [`Gate`] (yielding the CPU to
//! anything else runnable at every turn) until the request has been answered and [`GRACE`]
//! more has passed, another request starts being handled, or [`BUDGET`] is spent; then it
//! sleeps until the next lone request. A lone movement spends most of its time waiting for
//! the disk, and on a virtual machine both CPUs then idle: the answer's send has to wake the
//! client's CPU again, which costs tens of microseconds, a tenth of the movement. With the
//! helper awake, that CPU is running when the answer comes. Under load (two requests or
//! more) it does nothing, so it never takes a CPU from the writer; on a one-CPU machine it
//! is never started. Reads only the gate's count: never touches a request, a socket or the
//! store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::watch::Gate;
use crate::awake::Awake;

/// The longest the helper stays awake for one lone request: a movement that waits longer
/// than this for the disk gains nothing measurable from one wake-up saved.
pub const BUDGET: Duration = Duration::from_millis(2);

/// How long the helper stays awake after the last request was answered: the answer is
/// written after its handler returns, and the client's wake-up follows that write.
const GRACE: Duration = Duration::from_micros(80);

/// One helper thread and how to ask it.
pub struct KeepAwake {
    gate: &'static Gate,
    budget: Duration,
    state: Mutex<Asked>,
    woken: Condvar,
    /// Where the helper polls (only its own thread does, so it is never taken).
    polling: Awake,
    /// How many times it has woken to poll.
    wakes: AtomicU64,
}

#[derive(Default)]
struct Asked {
    /// A lone request started since the helper last looked.
    asked: bool,
    /// The helper waits on `woken`.
    sleeping: bool,
}

impl KeepAwake {
    /// Starts a helper for `gate` that stays awake at most `budget` per lone request; `None`
    /// on a machine with one CPU (nothing to keep awake beside the handler's) or when the
    /// thread cannot be started (then requests are served as before, only without it).
    pub fn start(gate: &'static Gate, budget: Duration) -> Option<&'static KeepAwake> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            return None;
        }
        let k: &'static KeepAwake = Box::leak(Box::new(KeepAwake {
            gate,
            budget,
            state: Mutex::new(Asked::default()),
            woken: Condvar::new(),
            polling: Awake::new(),
            wakes: AtomicU64::new(0),
        }));
        let started = std::thread::Builder::new()
            .name("ora-http-awake".into())
            .stack_size(64 * 1024)
            .spawn(move || k.run());
        match started {
            Ok(_) => Some(k),
            Err(e) => {
                log::warn!("http: could not start the helper that keeps a CPU awake: {e}");
                None
            }
        }
    }

    /// Tells the helper that a request has started being handled while no other was.
    pub fn lone_request(&self) {
        let mut s = self.lock();
        s.asked = true;
        if s.sleeping {
            self.woken.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Asked> {
        // The state is two flags with no invariant between them: a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        loop {
            {
                let mut s = self.lock();
                while !s.asked {
                    s.sleeping = true;
                    s = self.woken.wait(s).unwrap_or_else(|e| e.into_inner());
                    s.sleeping = false;
                }
                s.asked = false;
            }
            self.wakes.fetch_add(1, Ordering::AcqRel);
            self.poll();
        }
    }

    /// Polls until the lone request has been answered and `GRACE` has passed, a second
    /// request is handled, or the budget is spent.
    fn poll(&self) {
        let mut idle_since: Option<Instant> = None;
        self.polling
            .wait_for(self.budget, || match self.gate.handled_now() {
                0 => (idle_since.get_or_insert_with(Instant::now).elapsed() >= GRACE).then_some(()),
                1 => {
                    idle_since = None;
                    None
                }
                _ => Some(()),
            });
    }
}

#[cfg(test)]
mod tests {
    use super::super::watch::Handling;
    use super::*;

    impl KeepAwake {
        /// Whether the helper is not waiting to be asked.
        fn is_awake(&self) -> bool {
            !self.lock().sleeping
        }

        /// How many times the helper has woken to poll.
        fn wakes(&self) -> u64 {
            self.wakes.load(Ordering::Acquire)
        }
    }

    /// Waits (up to a minute, so a slow machine does not fail it) until `cond` holds.
    fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::yield_now();
        }
    }

    /// Starts one request's handling on `gate` as the first, and tells the helper.
    fn lone(gate: &'static Gate, k: &KeepAwake) -> Handling<'static> {
        let h = gate.handling();
        assert!(h.alone());
        k.lone_request();
        h
    }

    /// Whether the helper is polling, on its `n`th wake-up.
    fn polling(k: &KeepAwake, n: u64) -> bool {
        k.wakes() == n && k.is_awake()
    }

    fn helper(budget: Duration) -> Option<(&'static Gate, &'static KeepAwake)> {
        let gate: &'static Gate = Box::leak(Box::new(Gate::new()));
        let k = KeepAwake::start(gate, budget);
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            assert!(k.is_none(), "no helper on one CPU");
            return None;
        }
        Some((gate, k.expect("helper started")))
    }

    #[test]
    fn awake_while_a_lone_request_is_handled_and_asleep_after_its_answer() {
        let Some((gate, k)) = helper(Duration::from_secs(600)) else {
            return;
        };
        until("asleep until asked", || !k.is_awake());
        assert_eq!(k.wakes(), 0);
        let h = lone(gate, k);
        until("awake for the lone request", || polling(k, 1));
        drop(h);
        until("asleep after the answer", || !k.is_awake());
        // The next lone request wakes it again.
        let h = lone(gate, k);
        until("awake for the next one", || polling(k, 2));
        drop(h);
        until("asleep again", || !k.is_awake());
    }

    #[test]
    fn stops_when_a_second_request_is_handled() {
        let Some((gate, k)) = helper(Duration::from_secs(600)) else {
            return;
        };
        let first = lone(gate, k);
        until("awake for the lone request", || polling(k, 1));
        let second = gate.handling();
        until("asleep while two are handled", || !k.is_awake());
        assert_eq!(gate.handled_now(), 2, "both still being handled");
        drop((first, second));
    }

    #[test]
    fn gives_up_after_its_budget() {
        let Some((gate, k)) = helper(Duration::from_millis(1)) else {
            return;
        };
        let h = lone(gate, k);
        // Asked while the request is still handled: it wakes, then gives up on its own.
        until(
            "woken and asleep again with the request still handled",
            || k.wakes() == 1 && !k.is_awake(),
        );
        assert_eq!(gate.handled_now(), 1);
        drop(h);
    }
}
