//! The relay a sink's client reaches the cluster through, so that each
//! compressed batch is inflated before the client parses it (decision 0019).
//!
//! The client resolves every broker address it dials through [`Relay`]: the
//! bootstrap, a topic's owner after a lookup, a proxy, and each reconnect.
//! The relay answers with a loopback listener of its own for that address,
//! and for every connection the client makes to it, opens one to the real
//! address, with the TLS and client certificate sluice's settings ask for.
//! Bytes from the client go on unchanged; frames from the broker go through
//! [`super::inflate`].
//!
//! On a TLS cluster the loopback hop is TLS too, both ways authenticated by a
//! key made when the relay starts and never written anywhere: another
//! process on the host that connects to the listener cannot borrow sluice's
//! client certificate. On a plain cluster the hop is plain, as the cluster
//! is: whoever connects presents their own credentials, as they could to the
//! broker itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use magnetar::proto::frame::MAX_FRAME_SIZE;
use magnetar::proto::pb;
use magnetar::runtime_tokio as rt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::PulsarError;
use super::inflate::{self, Refused};

/// How long dialling the real broker may take, TLS included.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from the broker at a time.
const READ_SIZE: usize = 64 << 10;

/// How long a connection to the relay may take to say what it speaks and,
/// on a TLS cluster, to finish its handshake.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections relayed at once, at most: the client opens a few per broker;
/// past this the relay closes new ones at once.
const MAX_CONNECTIONS: usize = 256;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Listens on loopback for each broker address the client dials, and
/// relays to it. Dropping it closes every listener and connection.
pub(super) struct Relay {
    /// TLS to the real broker; `None` on a plain cluster.
    upstream: Option<Arc<rustls::ClientConfig>>,
    local: Option<Local>,
    listeners: Mutex<HashMap<(String, u16), SocketAddr>>,
    connections: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").finish_non_exhaustive()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The loopback hop's TLS: both ends present one certificate, made for
/// this relay alone, and accept only it.
struct Local {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
}

impl Relay {
    /// A relay to a cluster reached with `upstream` (its TLS; `None` when
    /// plain).
    pub(super) fn new(upstream: Option<Arc<rustls::ClientConfig>>) -> Result<Self, PulsarError> {
        let local = upstream.as_ref().map(|_| Local::new()).transpose()?;
        Ok(Self {
            upstream,
            local,
            listeners: Mutex::new(HashMap::new()),
            connections: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            stop: CancellationToken::new(),
        })
    }

    /// Close every listener and connection now, rather than when the last
    /// holder lets go (the client keeps its resolver past its close).
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }

    /// The TLS the client uses to reach the relay; `None` on a plain
    /// cluster.
    pub(super) fn client_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.local.as_ref().map(|l| Arc::clone(&l.client))
    }

    /// The loopback address standing for `host:port`, listening from now on.
    async fn listener(&self, host: &str, port: u16) -> std::io::Result<SocketAddr> {
        let key = (host.to_owned(), port);
        if let Some(addr) = self.lock().get(&key) {
            return Ok(*addr);
        }
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let mut listeners = self.lock();
        if let Some(addr) = listeners.get(&key) {
            // Another dial got there first; this listener closes unused.
            return Ok(*addr);
        }
        listeners.insert(key, addr);
        drop(listeners);
        let target = Target {
            host: host.to_owned(),
            port,
            upstream: self.upstream.clone(),
            local: self.local.as_ref().map(|l| Arc::clone(&l.server)),
        };
        tokio::spawn(accept(
            listener,
            Arc::new(target),
            Arc::clone(&self.connections),
            self.stop.clone(),
        ));
        Ok(addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u16), SocketAddr>> {
        self.listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl rt::DnsResolver for Relay {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> rt::DnsResolveFuture<'a> {
        Box::pin(async move {
            self.listener(host, port)
                .await
                .map(|addr| vec![addr])
                .map_err(rt::ClientError::Io)
        })
    }
}

/// Where one listener's connections go.
struct Target {
    host: String,
    port: u16,
    upstream: Option<Arc<rustls::ClientConfig>>,
    local: Option<Arc<rustls::ServerConfig>>,
}

async fn accept(
    listener: TcpListener,
    target: Arc<Target>,
    connections: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((socket, _)) => {
                let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                    warn!(host = %target.host, port = target.port, limit = MAX_CONNECTIONS,
                        "the relay to the broker holds as many connections as it takes; closing a new one");
                    continue;
                };
                let (target, stop) = (Arc::clone(&target), stop.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    tokio::select! {
                        result = connection(socket, &target) => if let Err(e) = result {
                            debug!(host = %target.host, port = target.port, error = %e,
                                "a relayed connection ended");
                        },
                        () = stop.cancelled() => {}
                    }
                });
            }
            Err(e) => {
                warn!(host = %target.host, port = target.port, error = %e,
                    "the relay to the broker could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Relay one connection of the client's until either side ends it. The
/// client speaks TLS to the relay when it would to the broker: a TLS
/// cluster's lookup may still name a plain address, dialled plain.
async fn connection(socket: TcpStream, target: &Target) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let timed_out = |_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no handshake");
    let mut first = [0u8; 1];
    tokio::time::timeout(HELLO_TIMEOUT, socket.peek(&mut first))
        .await
        .map_err(timed_out)??;
    let tls = first[0] == TLS_HANDSHAKE;
    let mut local: Box<dyn Stream> = match (&target.local, tls) {
        (Some(config), true) => Box::new(
            tokio::time::timeout(
                HELLO_TIMEOUT,
                tokio_rustls::TlsAcceptor::from(Arc::clone(config)).accept(socket),
            )
            .await
            .map_err(timed_out)??,
        ),
        (None, true) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "TLS to a relay of a plain cluster",
            ));
        }
        (_, false) => Box::new(socket),
    };
    let upstream = if tls { target.upstream.as_ref() } else { None };
    let remote = match tokio::time::timeout(DIAL_TIMEOUT, dial(target, upstream)).await {
        Ok(Ok(remote)) => remote,
        failed => {
            let e = match failed {
                Ok(Err(e)) => e,
                _ => std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
            };
            warn!(host = %target.host, port = target.port, error = %e,
                "the relay could not reach the broker");
            let _ = local
                .write_all(&error_frame(&format!(
                    "sluice could not reach {}:{}: {e}",
                    target.host, target.port
                )))
                .await;
            let _ = local.shutdown().await;
            return Err(e);
        }
    };
    let (mut from_client, mut to_client) = tokio::io::split(local);
    let (mut from_broker, mut to_broker) = tokio::io::split(remote);
    tokio::select! {
        r = async {
            tokio::io::copy(&mut from_client, &mut to_broker).await?;
            to_broker.shutdown().await
        } => r,
        r = frames(&mut from_broker, &mut to_client, target) => r,
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Connect to the real broker, as the client would have: over TLS with
/// `tls`, else plain.
async fn dial(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> std::io::Result<Box<dyn Stream>> {
    let socket = TcpStream::connect((target.host.as_str(), target.port)).await?;
    socket.set_nodelay(true)?;
    Ok(match tls {
        Some(config) => {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            Box::new(
                tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, socket)
                    .await?,
            )
        }
        None => Box::new(socket),
    })
}

/// Pass the broker's frames to the client, each compressed batch inflated.
async fn frames(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    target: &Target,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut relayed = false;
    loop {
        if buf.is_empty() && buf.capacity() > 4 * READ_SIZE {
            // A large frame went through: do not keep its room.
            buf = BytesMut::with_capacity(READ_SIZE);
        }
        buf.reserve(READ_SIZE);
        match from.read_buf(&mut buf).await {
            Ok(0) if !relayed => {
                let _ = to
                    .write_all(&error_frame("the broker closed the connection"))
                    .await;
                return to.shutdown().await;
            }
            Ok(0) => return to.shutdown().await,
            Ok(_) => relayed = true,
            // Before the broker said anything, this is how the connection
            // failed: a TLS 1.3 server refuses a client certificate only
            // after the client's handshake is done.
            Err(e) if !relayed => {
                let _ = to
                    .write_all(&error_frame(&format!(
                        "{}:{} refused the connection: {e}",
                        target.host, target.port
                    )))
                    .await;
                let _ = to.shutdown().await;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        // Write unchanged frames in runs, each inflated one on its own.
        let mut run = 0;
        let mut at = 0;
        while let Some(size) = buf.get(at..at + 4) {
            let size = u32::from_be_bytes(size.try_into().unwrap_or_default()) as usize;
            if size > MAX_FRAME_SIZE {
                let e =
                    format!("the broker sent a frame of {size} bytes, more than the client takes");
                warn!(host = %target.host, port = target.port, "{e}");
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
            let len = 4 + size;
            let Some(frame) = buf.get(at..at + len) else {
                buf.reserve(at + len - buf.len());
                break;
            };
            match inflate::inflate(frame) {
                Ok(None) => {}
                Ok(Some(inflated)) => {
                    to.write_all(&buf[run..at]).await?;
                    to.write_all(&inflated).await?;
                    run = at + len;
                }
                Err(e) => refused(&e, target),
            }
            at += len;
        }
        to.write_all(&buf[run..at]).await?;
        to.flush().await?;
        buf.advance(at);
    }
}

/// A broker's error frame carrying `message`: what the client is told when
/// the relay's own connection to the broker fails, for it to report.
fn error_frame(message: &str) -> Vec<u8> {
    use prost::Message as _;
    let command = pb::BaseCommand {
        r#type: pb::base_command::Type::Error as i32,
        error: Some(pb::CommandError {
            request_id: 0,
            error: pb::ServerError::ServiceNotReady as i32,
            message: message.to_owned(),
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let size = u32::try_from(command.len()).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(command.len() + 8);
    frame.extend_from_slice(&(size + 4).to_be_bytes());
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&command);
    frame
}

fn refused(e: &Refused, target: &Target) {
    warn!(host = %target.host, port = target.port, reason = %e,
        "a compressed message from the broker is passed on as it is: the sink cannot read it and stops on it");
}

impl Local {
    fn new() -> Result<Self, PulsarError> {
        let context = "make the key of the relay to the broker";
        let made = rcgen::generate_simple_self_signed(vec!["sluice-relay".to_owned()])
            .map_err(|e| PulsarError::config(context, e.to_string()))?;
        let cert = made.cert.der().clone();
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
            .map_err(|e| PulsarError::config(context, e.to_string()))?;
        let provider = sluice_connectors::tls::provider();
        let pinned = Arc::new(Pinned {
            cert: cert.clone(),
            algorithms: provider.signature_verification_algorithms,
        });
        let certified =
            rustls::sign::CertifiedKey::from_der(vec![cert.clone()], key.clone_key(), &provider)
                .map_err(|e| PulsarError::config(context, e.to_string()))?;
        let mut client = sluice_connectors::tls::client(&provider)
            .map_err(|e| PulsarError::config(context, e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(&pinned) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth();
        client.client_auth_cert_resolver = Arc::new(super::tls::Present(Arc::new(certified)));
        let server = sluice_connectors::tls::server(&provider)
            .map_err(|e| PulsarError::config(context, e))?
            .with_client_cert_verifier(pinned)
            .with_single_cert(vec![cert], key)
            .map_err(|e| PulsarError::config(context, e.to_string()))?;
        Ok(Self {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

/// Accepts the one certificate the relay made, from either end, and
/// checks handshake signatures against it with the provider's algorithms.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if presented.as_ref() == self.cert.as_ref() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}
