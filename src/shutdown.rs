//! A shutdown token shared by background loops, and the SIGTERM/SIGINT watcher that trips it
//! (and, for a server, passes SIGHUP to its reload). Signals are blocked in every thread and
//! taken by one `sigwait` thread, so no handler ever runs inside library code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Cloneable "please stop" flag with a wait that wakes early when tripped.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<(AtomicBool, Mutex<()>, Condvar)>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    pub fn trip(&self) {
        let (flag, lock, cv) = &*self.inner;
        flag.store(true, Ordering::SeqCst);
        let _guard = lock.lock();
        cv.notify_all();
    }

    pub fn is_tripped(&self) -> bool {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`; returns true when shutdown was asked for.
    pub fn wait(&self, d: Duration) -> bool {
        let (flag, lock, cv) = &*self.inner;
        let guard = match lock.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        let _ = cv.wait_timeout_while(guard, d, |_| !flag.load(Ordering::SeqCst));
        flag.load(Ordering::SeqCst)
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread (and every thread it spawns later) and
/// starts a thread that trips `shutdown` when one arrives. Call before spawning threads.
pub fn on_signals(shutdown: &Shutdown) -> std::io::Result<()> {
    on_signals_and_hangup(shutdown, None)
}

/// As [`on_signals`], and SIGHUP runs `on_hangup` (on the signal thread) when given.
pub fn on_signals_and_hangup(
    shutdown: &Shutdown,
    on_hangup: Option<Box<dyn Fn() + Send>>,
) -> std::io::Result<()> {
    let hangup = on_hangup.is_some();
    // SAFETY: plain libc signal-set manipulation on a stack-allocated sigset_t.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if hangup {
            libc::sigaddset(&mut set, libc::SIGHUP);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        set
    };
    let s = shutdown.clone();
    std::thread::Builder::new()
        .name("ora-signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait on a valid, initialised set; writes the signal number to `sig`.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc == 0 && sig == libc::SIGHUP {
                if let Some(f) = &on_hangup {
                    f();
                }
                continue;
            }
            if rc == 0 {
                log::info!("signal {sig} received: shutting down");
                s.trip();
                return;
            }
        })?;
    Ok(())
}
