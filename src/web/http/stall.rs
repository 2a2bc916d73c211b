//! A socket whose writes must make progress: when a write (or flush) has been blocked for
//! longer than the limit, because the client does not read its answer, the write fails with
//! `TimedOut` and the connection is dropped. Reads pass through untouched (the request's own
//! deadlines are kept by the connection). Knows nothing about HTTP.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep, Sleep};

/// A TCP stream with a deadline on stalled writes.
pub struct StallGuard {
    stream: TcpStream,
    limit: Duration,
    /// Armed when a write first blocks, disarmed when one makes progress.
    timer: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    pub fn new(stream: TcpStream, limit: Duration) -> StallGuard {
        StallGuard {
            stream,
            limit,
            timer: None,
        }
    }

    /// What a write or flush polled: a result disarms the timer; `Pending` arms it, and turns
    /// into `TimedOut` once it has run out.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.timer = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self.timer.get_or_insert_with(|| Box::pin(sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client has not read its answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl std::os::fd::AsRawFd for StallGuard {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.stream.as_raw_fd()
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timer's deadline, for tests of the arming logic.
    impl StallGuard {
        fn deadline(&self) -> Option<tokio::time::Instant> {
            self.timer.as_ref().map(|t| t.deadline())
        }
    }
    use tokio::io::AsyncWriteExt;

    // A peer that never reads: the writes fill the socket buffers, then block, and the guard
    // fails the write once the limit has passed instead of waiting forever.
    #[test]
    fn a_write_the_peer_never_reads_fails_after_the_limit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let _peer = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (stream, _) = listener.accept().await.expect("accept");
            let mut g = StallGuard::new(stream, Duration::from_millis(200));
            let chunk = vec![0u8; 64 * 1024];
            let started = std::time::Instant::now();
            let err = loop {
                if let Err(e) = g.write_all(&chunk).await {
                    break e;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the writes never blocked"
                );
            };
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert!(g.deadline().is_some());
        });
    }
}
