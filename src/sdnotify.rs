//! The sd_notify protocol (systemd.io/NOTIFY): datagrams to `$NOTIFY_SOCKET` saying READY=1
//! once the database is open and the port bound, WATCHDOG=1 while the server is alive,
//! STATUS=... lines and STOPPING=1. Does nothing when not started by systemd; never fails the
//! program (a notification that cannot be sent is logged at debug level).

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;

/// Sends one notification; false when not under systemd or the send failed.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let sock = match UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            log::debug!("sd_notify: {e}");
            return false;
        }
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket address.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    match sent {
        Ok(_) => true,
        Err(e) => {
            log::debug!("sd_notify {state:?}: {e}");
            false
        }
    }
}

/// The watchdog interval systemd asked for (half of `$WATCHDOG_USEC`), if it asked for one
/// for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// A heartbeat the serving loop ticks; the watchdog pings systemd only while it is fresh, so a
/// hung server is restarted instead of kept alive by a healthy side thread.
#[derive(Clone, Default)]
pub struct Heartbeat {
    started: Arc<AtomicU64>,
    epoch: Option<Instant>,
}

impl Heartbeat {
    pub fn new() -> Heartbeat {
        Heartbeat {
            started: Arc::new(AtomicU64::new(0)),
            epoch: Some(Instant::now()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.map_or(0, |e| e.elapsed().as_millis() as u64)
    }

    /// Marks the serving loop alive.
    pub fn tick(&self) {
        self.started.store(self.now_ms(), Ordering::Relaxed);
    }

    fn age(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.started.load(Ordering::Relaxed)),
        )
    }
}

/// Starts the watchdog thread when systemd asked for one: WATCHDOG=1 every interval while
/// `beat` is younger than the interval and `alive` says the rest of the server is fine.
pub fn start_watchdog(beat: Heartbeat, stop: Shutdown, alive: impl Fn() -> bool + Send + 'static) {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("ora-watchdog".into())
        .spawn(move || {
            while !stop.wait(interval) {
                if beat.age() < interval * 2 && alive() {
                    notify("WATCHDOG=1");
                } else {
                    log::error!(
                        "watchdog: the server looks stuck; not telling systemd it is alive"
                    );
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("could not start the watchdog thread: {e}");
    }
}
