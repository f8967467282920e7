//! The TLS pieces every connection of sluice's is built from, in one place:
//! the crypto provider (ring), PEM certificates and keys read from files
//! with errors that name the file, and configurations on TLS 1.2 and 1.3.
//! The connectors and the runtime build their clients and servers from
//! these, each adding only its own way of verifying.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ConfigBuilder, RootCertStore, ServerConfig, WantsVerifier};

/// The crypto provider of every TLS configuration sluice makes.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make [`provider`] the process's default, for the clients that take the
/// default rather than one handed to them (without one, such a client
/// panics when it first builds a TLS configuration). Later calls change
/// nothing.
pub fn install_default_provider() {
    // An error only says a default is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates of PEM text.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// The certificates of a PEM file: at least one, or an error naming it.
pub fn certificate_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = certificates(&pem).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn key_file(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "cannot read {}: it holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        )
    })
}

/// The certificates of a PEM file as trust anchors.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificate_file(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("cannot trust a certificate of {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A client configuration on TLS 1.2 and 1.3, to be given its verifier.
pub fn client(
    provider: &Arc<CryptoProvider>,
) -> Result<ConfigBuilder<ClientConfig, WantsVerifier>, String> {
    ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("set up TLS: {e}"))
}

/// A server configuration on TLS 1.2 and 1.3, to be given its verifier.
pub fn server(
    provider: &Arc<CryptoProvider>,
) -> Result<ConfigBuilder<ServerConfig, WantsVerifier>, String> {
    ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("set up TLS: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_named() {
        let dir = std::env::temp_dir().join(format!("sluice-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        assert_eq!(
            certificate_file(&empty).unwrap_err(),
            format!("{} holds no PEM certificate", empty.display())
        );
        let missing = dir.join("missing.pem");
        assert!(
            certificate_file(&missing)
                .unwrap_err()
                .starts_with(&format!("cannot read {}", missing.display()))
        );
        assert!(
            key_file(&empty)
                .unwrap_err()
                .contains("holds no PEM private key")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
