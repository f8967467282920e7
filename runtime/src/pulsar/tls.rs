//! TLS for every connection to the cluster: how the broker is verified
//! (`tlsTrustCertsFilePath`, `tlsAllowInsecureConnection`,
//! `tlsEnableHostnameVerification`) and, under `AuthenticationTls`, the
//! client certificate presented. The binary protocol, the transaction
//! coordinator and the admin REST API all take their TLS from here, so
//! that they verify and authenticate alike.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use magnetar::runtime_tokio as rt;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::PulsarError;
use crate::config::PulsarSettings;
use sluice_connectors::tls::certificates;

/// A client certificate and its private key (`AuthenticationTls`), read
/// and checked to belong together.
pub(crate) struct Identity {
    chain: Vec<CertificateDer<'static>>,
    /// The key as read, for the HTTP client, which parses its own.
    key_pem: Vec<u8>,
    certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of every output.
        f.debug_struct("Identity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Read `cert` (a PEM chain, the client's certificate first) and `key`
    /// (a PEM private key), and check that the key is the certificate's.
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Self, PulsarError> {
        let cert_context = format!("read the client certificate tlsCertFile {}", cert.display());
        let key_context = format!("read the client key tlsKeyFile {}", key.display());
        let pem =
            std::fs::read(cert).map_err(|e| PulsarError::config(&cert_context, e.to_string()))?;
        let chain =
            certificates(&pem).map_err(|e| PulsarError::config(&cert_context, e.to_string()))?;
        if chain.is_empty() {
            return Err(PulsarError::config(
                cert_context,
                "it holds no PEM certificate",
            ));
        }
        let key_pem =
            std::fs::read(key).map_err(|e| PulsarError::config(&key_context, e.to_string()))?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            PulsarError::config(
                &key_context,
                format!("it holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
            )
        })?;
        let certified =
            CertifiedKey::from_der(chain.clone(), key_der, &sluice_connectors::tls::provider())
                .map_err(|e| {
                    PulsarError::config(
                        "load the client certificate",
                        format!(
                            "tlsKeyFile {} does not go with tlsCertFile {}: {e}",
                            key.display(),
                            cert.display()
                        ),
                    )
                })?;
        Ok(Self {
            chain,
            key_pem,
            certified: Arc::new(certified),
        })
    }
}

/// Presents the one client certificate to every server that asks.
#[derive(Debug)]
pub(super) struct Present(pub(super) Arc<CertifiedKey>);

impl ResolvesClientCert for Present {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The TLS configuration of a binary-protocol connection to the broker:
/// verified against `tlsTrustCertsFilePath` when set (else the system's
/// CAs), by host name unless told not to, or not at all under
/// `tlsAllowInsecureConnection`; presenting `identity` when given.
/// `None` for `pulsar://`.
pub(crate) fn broker(
    settings: &PulsarSettings,
    identity: Option<&Identity>,
) -> Result<Option<Arc<rustls::ClientConfig>>, PulsarError> {
    if !settings.service_url.starts_with("pulsar+ssl://") {
        return Ok(None);
    }
    let context = "set up TLS to the broker";
    let verified = if settings.tls_allow_insecure_connection {
        rt::insecure_tls_config()
    } else if let Some(path) = &settings.tls_trust_certs_file_path {
        let pem = read_trust(path)?;
        if settings.tls_hostname_verification {
            rt::Client::tls_config_from_pem(&pem)
        } else {
            rt::tls_config_no_hostname(&pem)
        }
        .map_err(|e| PulsarError::config(context, e.to_string()))?
    } else {
        rt::default_tls_config().map_err(|e| PulsarError::config(context, e.to_string()))?
    };
    let Some(identity) = identity else {
        return Ok(Some(verified));
    };
    let mut config = (*verified).clone();
    config.client_auth_cert_resolver = Arc::new(Present(identity.certified.clone()));
    Ok(Some(Arc::new(config)))
}

/// An HTTP agent for the admin API (and an OAuth2 issuer) that verifies
/// servers as the broker connection does, and presents `identity` when
/// given.
pub(crate) fn http_agent(
    settings: &PulsarSettings,
    identity: Option<&Identity>,
) -> Result<ureq::Agent, PulsarError> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if settings.tls_allow_insecure_connection {
        tls = tls.disable_verification(true);
    } else if let Some(path) = &settings.tls_trust_certs_file_path {
        let pem = read_trust(path)?;
        let certs: Vec<Certificate<'static>> = certificates(&pem)
            .map_err(|e| PulsarError::config("read tlsTrustCertsFilePath", e))?
            .into_iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    if let Some(identity) = identity {
        let chain: Vec<Certificate<'static>> = identity
            .chain
            .iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        let key = PrivateKey::from_pem(&identity.key_pem)
            .map_err(|e| PulsarError::config("read the client key tlsKeyFile", e.to_string()))?;
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .tls_config(tls.build())
        .build()
        .into())
}

/// The PEM trust file `tlsTrustCertsFilePath`, read and checked to hold
/// certificates, so that a bad file is named as such wherever it is used.
pub(crate) fn read_trust(path: &Path) -> Result<Vec<u8>, PulsarError> {
    let fail = |e: String| {
        PulsarError::config(format!("read tlsTrustCertsFilePath {}", path.display()), e)
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if certificates(&pem).map_err(fail)?.is_empty() {
        return Err(fail("it holds no PEM certificate".to_owned()));
    }
    Ok(pem)
}
