//! TLS to Postgres, as libpq's `sslmode` means it, for both of the source's
//! connections: the SQL one (tokio-postgres, through the small rustls
//! adapter below) and the replication one (pgwire-replication, which has its
//! own rustls client). Both verify alike, so that a setting that works for
//! one works for the other.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::api::ConnectorError;

/// `database.sslmode`, as libpq and Debezium spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unverified; plain otherwise.
    Prefer,
    /// TLS, unverified (verified as `VerifyCa` when a root certificate is given).
    Require,
    /// TLS; the server's certificate must chain to `database.sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        })
    }
}

impl SslMode {
    /// Parse libpq's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" | "verify_ca" => Self::VerifyCa,
            "verify-full" | "verify_full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

/// TLS settings of the source's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// How much TLS, and how much verification.
    pub mode: SslMode,
    /// CA certificates (PEM) the server's certificate must chain to.
    pub root_cert: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for servers that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// The mode as verification goes: `require` with a root certificate
    /// verifies the chain, as libpq does.
    fn effective_mode(&self) -> SslMode {
        match self.mode {
            SslMode::Require if self.root_cert.is_some() => SslMode::VerifyCa,
            m => m,
        }
    }

    /// tokio-postgres's mode: TLS or not, and whether it may fall back.
    pub(crate) fn postgres_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }

    /// The connector for tokio-postgres.
    pub(crate) fn connector(&self) -> Result<MakeRustls, ConnectorError> {
        Ok(MakeRustls(Arc::new(self.client_config()?)))
    }

    /// The same settings for the replication connection. Its SNI name is
    /// the host itself, so that an IP address is checked against the
    /// certificate's IP names as on the SQL connection.
    pub(crate) fn replication(&self, host: &str) -> pgwire_replication::TlsConfig {
        use pgwire_replication::SslMode as M;
        pgwire_replication::TlsConfig {
            mode: match self.effective_mode() {
                SslMode::Disable => M::Disable,
                SslMode::Prefer => M::Prefer,
                SslMode::Require => M::Require,
                SslMode::VerifyCa => M::VerifyCa,
                SslMode::VerifyFull => M::VerifyFull,
            },
            ca_pem_path: self.root_cert.clone(),
            sni_hostname: Some(host.to_owned()),
            client_cert_pem_path: self.client_cert.as_ref().map(|(c, _)| c.clone()),
            client_key_pem_path: self.client_cert.as_ref().map(|(_, k)| k.clone()),
        }
    }

    fn client_config(&self) -> Result<ClientConfig, ConnectorError> {
        let provider = crate::tls::provider();
        let builder = crate::tls::client(&provider).map_err(ConnectorError::permanent)?;
        // The root certificates count only where the chain is verified, as
        // in libpq: under prefer (and require without them) they are not read.
        let verified = matches!(
            self.effective_mode(),
            SslMode::VerifyCa | SslMode::VerifyFull
        );
        let roots = match &self.root_cert {
            Some(path) if verified => crate::tls::roots(path).map_err(ConnectorError::permanent)?,
            _ => RootCertStore::empty(),
        };
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build();
        let verifier: Arc<dyn ServerCertVerifier> = match self.effective_mode() {
            SslMode::VerifyFull => webpki.map_err(|e| tls_error("set up verification", e))?,
            SslMode::VerifyCa => Arc::new(ChainOnly(
                webpki.map_err(|e| tls_error("set up verification", e))?,
            )),
            SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(Unverified(provider)),
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match &self.client_cert {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain =
                    crate::tls::certificate_file(cert).map_err(ConnectorError::permanent)?;
                let key_der = crate::tls::key_file(key).map_err(ConnectorError::permanent)?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| tls_error("load the client certificate", e))
            }
        }
    }
}

fn tls_error(context: &str, e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::permanent(format!("{context}: {e}"))
}

/// `verify-ca`: the chain must be valid; the name may be anything.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: encryption without verification, as libpq does
/// without a root certificate. The handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres's TLS hook over rustls.
#[derive(Clone)]
pub(crate) struct MakeRustls(Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, io::Error> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Connect {
            config: Arc::clone(&self.0),
            name,
        })
    }
}

/// One handshake.
pub(crate) struct Connect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(TlsStream(stream))
        })
    }
}

/// An encrypted connection. It offers no channel binding, so SCRAM runs
/// without it (as with libpq's `channel_binding=prefer` on such a stream).
pub(crate) struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> tokio_postgres::tls::TlsStream for TlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_spellings_parse() {
        assert_eq!(SslMode::parse("verify-full"), Some(SslMode::VerifyFull));
        assert_eq!(SslMode::parse("verify_ca"), Some(SslMode::VerifyCa));
        assert_eq!(SslMode::parse("allow"), None);
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain() {
        let tls = TlsSettings {
            mode: SslMode::Require,
            root_cert: Some("/ca.pem".into()),
            client_cert: None,
        };
        assert_eq!(tls.effective_mode(), SslMode::VerifyCa);
        assert_eq!(
            tls.replication("db").mode,
            pgwire_replication::SslMode::VerifyCa
        );
    }

    #[test]
    fn a_missing_root_certificate_is_named() {
        let tls = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/ca.pem".into()),
            client_cert: None,
        };
        let err = tls
            .connector()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
