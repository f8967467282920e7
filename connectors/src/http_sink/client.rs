//! One HTTP/1.1 connection per lane to the endpoint, kept alive between
//! requests, over TLS for `https`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::endpoint::Endpoint;
use crate::api::ConnectorError;

/// How much of an answer's body is kept for the log and the dead letter.
pub(crate) const EXCERPT_BYTES: usize = 512;
/// An answer's body up to this size is read to its end, so that the
/// connection can carry the next request; past it the connection is closed.
const DRAIN_BYTES: usize = 64 * 1024;
/// Where Debian, Fedora and Alpine keep the system's CA certificates.
const SYSTEM_TRUST: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// What an endpoint answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
    /// The start of the body, as text, for logs and dead letters.
    pub(crate) excerpt: String,
}

/// Opens connections to one endpoint.
pub(crate) struct Client {
    endpoint: Endpoint,
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
}

/// An open connection.
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    /// A client for `endpoint`; for `https`, verifying the server against
    /// `trust_file`, or the system's CA certificates.
    pub(crate) fn new(
        endpoint: &Endpoint,
        trust_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let tls = if endpoint.tls {
            Some(tls_connector(trust_file)?)
        } else {
            None
        };
        Ok(Self {
            endpoint: endpoint.clone(),
            tls,
            timeout,
        })
    }

    /// Open a connection.
    pub(crate) async fn connect(&self) -> Result<Conn, String> {
        let e = &self.endpoint;
        let tcp = TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(|err| format!("connect to {}: {err}", e.authority))?;
        let _ = tcp.set_nodelay(true);
        let sender = match &self.tls {
            None => handshake(tcp).await?,
            Some(tls) => {
                let name = ServerName::try_from(e.host.clone())
                    .map_err(|err| format!("{}: {err}", e.host))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|err| format!("TLS with {}: {err}", e.authority))?;
                handshake(stream).await?
            }
        };
        Ok(Conn { sender })
    }

    /// POST `body` with `headers`, on `conn` if it is open, else on a new
    /// connection that `conn` then holds. Any failure to get an answer,
    /// including the timeout, is an `Err`, and leaves `conn` closed.
    pub(crate) async fn post(
        &self,
        conn: &mut Option<Conn>,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let attempt = async {
            if conn.as_ref().is_none_or(|c| c.sender.is_closed()) {
                *conn = Some(self.connect().await?);
            }
            let Some(open) = conn.as_mut() else {
                return Err("no connection".to_owned());
            };
            open.sender
                .ready()
                .await
                .map_err(|err| format!("connection to {}: {err}", self.endpoint.authority))?;
            let mut request = hyper::Request::post(self.endpoint.path.as_str())
                .header(hyper::header::HOST, self.endpoint.authority.as_str())
                .body(Full::new(body))
                .map_err(|err| format!("build the request: {err}"))?;
            request.headers_mut().extend(headers.iter().cloned());
            let response = open
                .sender
                .send_request(request)
                .await
                .map_err(|err| format!("POST to {}: {err}", self.endpoint.authority))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (excerpt, whole) = read_excerpt(response.into_body()).await;
            if !whole {
                *conn = None;
            }
            Ok(Answer {
                status,
                retry_after,
                excerpt,
            })
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                *conn = None;
                Err(e)
            }
            Err(_) => {
                *conn = None;
                Err(format!(
                    "no answer from {} within {} ms",
                    self.endpoint.authority,
                    self.timeout.as_millis()
                ))
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| format!("HTTP handshake: {err}"))?;
    // The connection runs until the sender is dropped or the peer closes.
    tokio::spawn(connection);
    Ok(sender)
}

/// The start of a body as text, and whether the body was read to its end.
async fn read_excerpt(mut body: hyper::body::Incoming) -> (String, bool) {
    let mut kept = Vec::new();
    let mut read = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(_)) => return (text(&kept), false),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read += data.len();
                    let room = EXCERPT_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                    if read > DRAIN_BYTES {
                        return (text(&kept), false);
                    }
                }
            }
        }
    }
    (text(&kept), true)
}

/// Bytes as one line of text: invalid UTF-8 replaced, line breaks as spaces.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

fn tls_connector(trust_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, ConnectorError> {
    let path: PathBuf = match trust_file {
        Some(p) => p.to_path_buf(),
        None => SYSTEM_TRUST
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                ConnectorError::configuration(
                    "no CA certificates to verify the https endpoint: set tlsTrustCertsFilePath",
                )
            })?,
    };
    let roots = crate::tls::roots(&path).map_err(ConnectorError::configuration)?;
    let config = crate::tls::client(&crate::tls::provider())
        .map_err(ConnectorError::configuration)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
