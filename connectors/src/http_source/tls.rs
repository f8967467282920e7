//! TLS for the `http` source: a listener that accepts TCP connections and
//! completes each TLS handshake in a task of its own, so that a slow or
//! silent client holds up only itself.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::connections::{Capped, Held, Tracked};
use crate::api::ConnectorError;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The acceptor for a certificate chain and its private key, both PEM.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ConnectorError> {
    let chain = crate::tls::certificate_file(cert).map_err(ConnectorError::configuration)?;
    let key_der = crate::tls::key_file(key).map_err(ConnectorError::configuration)?;
    let config = crate::tls::server(&crate::tls::provider())
        .map_err(ConnectorError::configuration)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            ConnectorError::configuration(format!(
                "{} and {} do not make a certificate and its key: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Connections whose TLS handshake is done.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<Held<TcpStream>>, SocketAddr)>,
    addr: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accept on `tcp`, handshaking with `acceptor`.
    pub(crate) fn new(tcp: Capped, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = tcp.next().await;
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let conn = Arc::clone(stream.conn());
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    tokio::select! {
                        done = handshake => {
                            if let Ok(Ok(tls)) = done {
                                let _ = tx.send((tls, peer)).await;
                            }
                        }
                        // Another client needs its place.
                        () = conn.evicted() => {}
                    }
                });
            }
        });
        Ok(Self {
            ready,
            addr,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Tracked for TlsStream<Held<TcpStream>> {
    fn held(&self) -> &Held<TcpStream> {
        self.get_ref().0
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<Held<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
