//! The `http` source's connections: at most `maxConnections` open at once,
//! each request's headers read within the read timeout, each connection
//! served in a task of its own.
//!
//! A connection without a request in flight (silent, still sending its
//! headers, or idle between requests) gives way: when every place is taken
//! and another client connects, the one of them that has been quiet the
//! longest is closed. So connections that send nothing cannot keep a client
//! that sends a request out. When every connection has a request in flight,
//! the newcomer waits for one to end, and the clients behind it wait in the
//! kernel's accept queue, holding no descriptor of the process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// What the listener knows of one open connection.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    /// Requests in flight (headers read, answer not yet sent).
    busy: AtomicUsize,
    /// When it opened or last answered a request: milliseconds since the
    /// listener started.
    quiet_since: AtomicU64,
    /// Asked to close.
    evicted: AtomicBool,
    evict: Notify,
}

impl Conn {
    /// Once the connection is asked to close.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// Whether a request is in flight on it.
    pub(crate) fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }
}

/// A request in flight on a connection, until dropped.
pub(crate) struct InFlight {
    conn: Arc<Conn>,
    epoch: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn
            .quiet_since
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn add(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            busy: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        if let Ok(mut open) = self.open.lock() {
            open.insert(conn.id, Arc::clone(&conn));
        }
        conn
    }

    fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }

    /// Ask the connection without a request in flight that has been quiet
    /// the longest to close; false when every one has a request.
    fn evict_quietest(&self) -> bool {
        let Ok(open) = self.open.lock() else {
            return false;
        };
        let quietest = open
            .values()
            .filter(|c| !c.busy() && !c.evicted.load(Ordering::Acquire))
            // Quiet since the same millisecond: the one that opened first
            // gives way, never the newcomer a burst of them came before.
            .min_by_key(|c| (c.quiet_since.load(Ordering::Acquire), c.id));
        match quietest {
            Some(conn) => {
                conn.evicted.store(true, Ordering::Release);
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A TCP listener that keeps at most its limit of connections open.
pub(crate) struct Capped {
    tcp: TcpListener,
    slots: Arc<Semaphore>,
    registry: Arc<Registry>,
}

impl Capped {
    pub(crate) fn new(tcp: TcpListener, max_connections: usize) -> Self {
        Self {
            tcp,
            slots: Arc::new(Semaphore::new(max_connections)),
            registry: Arc::new(Registry {
                epoch: Instant::now(),
                next: AtomicU64::new(0),
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The next connection, with a place of the limit: one that has no
    /// request in flight gives its place up if none is free.
    pub(crate) async fn next(&self) -> (Held<TcpStream>, SocketAddr) {
        // The semaphore is never closed.
        let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
            return std::future::pending().await;
        };
        let (io, peer) = self.accept().await;
        let held = Held {
            io,
            conn: self.registry.add(),
            registry: Arc::clone(&self.registry),
            _slot: slot,
        };
        // Keep a place ready for the next client: with every place taken,
        // it waits on `acquire_owned` above once something has given way.
        if self.slots.available_permits() == 0 {
            self.registry.evict_quietest();
        }
        (held, peer)
    }

    async fn accept(&self) -> (TcpStream, SocketAddr) {
        loop {
            match self.tcp.accept().await {
                Ok(accepted) => return accepted,
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
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    _slot: OwnedSemaphorePermit,
}

impl<T> Held<T> {
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        self.registry.remove(self.conn.id);
    }
}

/// A connection stream that knows its place among the open connections.
pub(crate) trait Tracked {
    fn held(&self) -> &Held<TcpStream>;
}

impl Tracked for Held<TcpStream> {
    fn held(&self) -> &Held<TcpStream> {
        self
    }
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
/// request's headers read within `header_timeout`. A connection asked to
/// give way closes at once when no request is in flight on it, else after
/// the request's answer.
pub(crate) async fn serve<L>(mut listener: L, app: axum::Router, header_timeout: Duration)
where
    L: axum::serve::Listener,
    L::Io: Tracked,
{
    loop {
        let (io, _) = listener.accept().await;
        let held = io.held();
        let conn = Arc::clone(held.conn());
        let counting = {
            let app = hyper_util::service::TowerToHyperService::new(app.clone());
            let (conn, epoch) = (Arc::clone(&conn), held.registry.epoch);
            hyper::service::service_fn(move |request| {
                conn.busy.fetch_add(1, Ordering::AcqRel);
                let guard = InFlight {
                    conn: Arc::clone(&conn),
                    epoch,
                };
                let answer = hyper::service::Service::call(&app, request);
                async move {
                    let answer = answer.await;
                    drop(guard);
                    answer
                }
            })
        };
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(io), counting);
            tokio::pin!(served);
            let ended = tokio::select! {
                ended = served.as_mut() => ended,
                () = conn.evicted() => {
                    if !conn.busy() {
                        return;
                    }
                    served.as_mut().graceful_shutdown();
                    served.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "an http source connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_connections_quiet_as_long_the_oldest_gives_way() {
        let registry = Registry {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        };
        let conns: Vec<Arc<Conn>> = (0..20).map(|_| registry.add()).collect();
        for c in &conns {
            c.quiet_since.store(7, Ordering::Release);
        }
        for expected in &conns[..19] {
            assert!(registry.evict_quietest());
            assert!(expected.evicted.load(Ordering::Acquire), "{}", expected.id);
        }
        // The newest is the last to go.
        assert!(!conns[19].evicted.load(Ordering::Acquire));
    }
}
