//! Keeping a connection's thread awake for a moment after it answers: when a read finds no
//! bytes yet and no other request is being handled in the process, the thread watches the
//! socket for up to [`WATCH`] before it goes to sleep in the runtime, so a client that sends
//! its next request right after reading an answer (a scanner gateway replaying its queue,
//! a script) is served without the sleep and wake-up in between. On a virtual machine a
//! thread that sleeps with nothing else to run idles its CPU, and waking it again costs tens
//! of microseconds, as much as the rest of a small request. At most one thread watches at a
//! time ([`crate::awake`]), it yields the CPU to anything else runnable on every turn, and it never watches
//! while another request is being handled, so under load no CPU is spent this way. Never
//! reads or consumes bytes: it only asks the kernel whether some are waiting.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::awake::Awake;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long an idle connection's thread watches for the next request before sleeping: long
/// enough for a compiled client to read an answer and send its next request, with room to
/// spare; it costs at most this much CPU per request when the client is slower.
pub const WATCH: Duration = Duration::from_micros(150);

/// Who is handling a request and who is watching: one per server (tests make their own).
pub struct Gate {
    /// Requests being handled now.
    handling: AtomicUsize,
    /// Where one connection's thread at a time watches its socket.
    watching: Awake,
}

impl Gate {
    pub const fn new() -> Gate {
        Gate {
            handling: AtomicUsize::new(0),
            watching: Awake::new(),
        }
    }

    /// Counts one request as being handled while the returned guard lives.
    pub fn handling(&self) -> Handling<'_> {
        let before = self.handling.fetch_add(1, Ordering::Relaxed);
        Handling {
            gate: self,
            alone: before == 0,
        }
    }

    /// Requests being handled now.
    pub fn handled_now(&self) -> usize {
        self.handling.load(Ordering::Relaxed)
    }

    /// Watches `fd` until bytes (or the end of the stream, or an error) are waiting on it,
    /// [`WATCH`] has passed, or a request starts being handled; returns at once when another
    /// thread is watching or a request is being handled. Returns whether `fd` is readable.
    fn until_readable(&self, fd: RawFd) -> bool {
        let busy = || self.handling.load(Ordering::Relaxed) != 0;
        if busy() {
            return false;
        }
        self.watching
            .wait_for(WATCH, || {
                if busy() {
                    Some(false)
                } else {
                    readable(fd).then_some(true)
                }
            })
            .unwrap_or(false)
    }
}

/// One request counted as being handled.
pub struct Handling<'a> {
    gate: &'a Gate,
    alone: bool,
}

impl Handling<'_> {
    /// Whether no other request was being handled when this one started.
    pub fn alone(&self) -> bool {
        self.alone
    }
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.gate.handling.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's stream whose reads, when nothing is waiting, watch the socket through its
/// server's gate before answering `Pending` (the runtime then finds the bytes without
/// sleeping); with no gate (`[tuning] wait_awake = false`) it only passes reads and writes
/// through.
pub struct Watchful<T>(pub T, pub Option<&'static Gate>);

impl<T: AsyncRead + AsRawFd + Unpin> AsyncRead for Watchful<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if polled.is_pending() {
            if let Some(gate) = self.1 {
                gate.until_readable(self.0.as_raw_fd());
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watchful<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Whether a read of `fd` would not block now.
fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout; `fd` is the caller's open socket.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// Both ends of one loopback connection: (client, server).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (s, _) = l.accept().expect("accept");
        (c, s)
    }

    #[test]
    fn sees_bytes_that_are_waiting_and_gives_up_when_none_come() {
        let (mut c, s) = pair();
        let gate = Gate::new();
        assert!(!gate.until_readable(s.as_raw_fd()), "nothing was sent");
        c.write_all(b"x").expect("send");
        assert!(gate.until_readable(s.as_raw_fd()), "one byte is waiting");
        // Watching does not consume what it saw.
        let mut buf = [0u8; 4];
        let n = std::io::Read::read(&mut &s, &mut buf).expect("read");
        assert_eq!(&buf[..n], b"x");
    }

    #[test]
    fn does_not_watch_while_a_request_is_handled() {
        let (mut c, s) = pair();
        c.write_all(b"x").expect("send");
        let gate = Gate::new();
        let busy = gate.handling();
        assert!(!gate.until_readable(s.as_raw_fd()), "skipped while busy");
        drop(busy);
        assert!(gate.until_readable(s.as_raw_fd()));
    }

    #[test]
    fn only_one_thread_watches_at_a_time() {
        let (mut c, s) = pair();
        c.write_all(b"x").expect("send");
        let gate = Gate::new();
        // While the watch is held, the byte waiting is not seen; once given back, it is.
        let held = gate
            .watching
            .wait_for(WATCH, || Some(gate.until_readable(s.as_raw_fd())));
        assert_eq!(held, Some(false), "another thread holds the watch");
        assert!(
            gate.until_readable(s.as_raw_fd()),
            "the watch is given back"
        );
    }
}
