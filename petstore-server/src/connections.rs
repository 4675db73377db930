//! A cap on the connections one listener keeps open.
//!
//! Without one, every accepted socket costs a file descriptor until its client leaves:
//! enough idle or slow clients exhaust the process's open-file limit, and then `accept`
//! fails for everyone (`Too many open files`), real clients included. With the cap, a
//! connection beyond it is accepted and closed at once (the client sees the close
//! instead of waiting in the kernel's backlog), and the operator reads one line saying
//! so, not one per refused client.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The connections of one listener: at most `max` open at once.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// What the log lines call the listener (`HTTP`, `gRPC`).
    listener: &'static str,
    max: usize,
    permits: Arc<Semaphore>,
    /// Set by the first refusal of a saturation, cleared once a tenth of the cap is
    /// free again: one warning per episode however many clients are refused, and no
    /// flapping while the count hovers at the cap.
    saturated: AtomicBool,
    refused: AtomicU64,
}

impl ConnectionLimit {
    /// At most `max` (at least 1) connections open at once on the listener named
    /// `listener` in the logs.
    pub(crate) fn new(listener: &'static str, max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                listener,
                max,
                permits: Arc::new(Semaphore::new(max)),
                saturated: AtomicBool::new(false),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Connections open right now.
    pub(crate) fn open(&self) -> usize {
        self.inner.max - self.inner.permits.available_permits()
    }

    /// Connections refused since the start.
    pub(crate) fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Admits `io` when the cap allows: the returned connection holds its place until
    /// it is dropped (an upgraded WebSocket keeps it too). `None` when the listener is
    /// full: drop `io`, which closes it.
    pub(crate) fn admit<IO>(&self, io: IO) -> Option<Limited<IO>> {
        let inner = &self.inner;
        match inner.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                if inner.saturated.load(Ordering::Relaxed)
                    && inner.permits.available_permits() >= (inner.max / 10).max(1)
                    && inner.saturated.swap(false, Ordering::Relaxed)
                {
                    tracing::info!(
                        listener = inner.listener,
                        open = self.open(),
                        refused = self.refused(),
                        "{} connections below the cap again: accepting",
                        inner.listener
                    );
                }
                Some(Limited {
                    io,
                    _permit: permit,
                })
            }
            Err(_) => {
                inner.refused.fetch_add(1, Ordering::Relaxed);
                if !inner.saturated.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        listener = inner.listener,
                        max = inner.max,
                        "{} connection cap reached ({} open): closing new connections until some end",
                        inner.listener,
                        inner.max
                    );
                }
                None
            }
        }
    }
}

/// A connection admitted by a [`ConnectionLimit`]: `IO` itself, holding its place
/// under the cap until dropped.
#[derive(Debug)]
pub(crate) struct Limited<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
}

impl<IO> Limited<IO> {
    /// The connection.
    pub(crate) fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Limited<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Limited<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The connections `listener` accepts, as far as `limit` admits them (the others are
/// closed at once), with `TCP_NODELAY` set: the incoming stream of a server that takes
/// one (gRPC). Accept errors such as `Too many open files` are logged and backed off by
/// axum's listener, never ending the stream.
pub(crate) fn limited_incoming(
    listener: tokio::net::TcpListener,
    limit: ConnectionLimit,
) -> impl futures_util::Stream<Item = io::Result<Limited<tokio::net::TcpStream>>> + Send {
    futures_util::stream::unfold((listener, limit), |(mut listener, limit)| async move {
        loop {
            let (tcp, _) = axum::serve::Listener::accept(&mut listener).await;
            if let Some(conn) = limit.admit(tcp) {
                if let Err(e) = conn.get_ref().set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
                return Some((Ok(conn), (listener, limit)));
            }
        }
    })
}

impl tonic::transport::server::Connected for Limited<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_cap_and_frees_a_place_when_a_connection_ends() {
        let limit = ConnectionLimit::new("test", 2);
        let a = limit.admit(()).expect("first");
        let _b = limit.admit(()).expect("second");
        assert!(limit.admit(()).is_none());
        assert!(limit.admit(()).is_none());
        assert_eq!((limit.open(), limit.refused()), (2, 2));
        drop(a);
        assert_eq!(limit.open(), 1);
        assert!(limit.admit(()).is_some());
    }
}
