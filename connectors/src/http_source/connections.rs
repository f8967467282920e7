//! The `http` source's connections: at most `maxConnections` open at once
//! (a connection past them waits in the kernel's accept queue, holding no
//! descriptor of the process), each request's headers read within the
//! read timeout, each connection served in a task of its own.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A TCP listener that accepts a connection only while fewer than its
/// limit are open.
pub(crate) struct Capped {
    tcp: TcpListener,
    slots: Arc<Semaphore>,
}

impl Capped {
    pub(crate) fn new(tcp: TcpListener, max_connections: usize) -> Self {
        Self {
            tcp,
            slots: Arc::new(Semaphore::new(max_connections)),
        }
    }

    /// The next connection, once one of the limit is free.
    pub(crate) async fn next(&self) -> (Held<TcpStream>, SocketAddr) {
        // The semaphore is never closed.
        let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
            return std::future::pending().await;
        };
        loop {
            match self.tcp.accept().await {
                Ok((io, peer)) => return (Held { io, _slot: slot }, peer),
                // Out of file descriptors and the like: wait, try again.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

impl axum::serve::Listener for Capped {
    type Io = Held<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.next().await
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Capped::local_addr(self)
    }
}

/// A connection that holds one of the limit's places until it is dropped.
pub(crate) struct Held<T> {
    io: T,
    _slot: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Serve `app` on every connection `listener` accepts, HTTP/1.1, with a
/// request's headers read within `header_timeout`.
pub(crate) async fn serve<L: axum::serve::Listener>(
    mut listener: L,
    app: axum::Router,
    header_timeout: Duration,
) {
    loop {
        let (io, _) = listener.accept().await;
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "an http source connection ended with an error");
            }
        });
    }
}
