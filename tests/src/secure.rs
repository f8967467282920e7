//! The stack's secured broker (`scripts/stack up pulsar-secure`): TLS only,
//! token authentication and authorization, and an OAuth2 issuer. Its
//! credentials are files under the stack's folder.

use std::path::PathBuf;

use anyhow::{Context, ensure};

/// The broker's TLS endpoint; its certificate names `localhost` only.
pub const URL: &str = "pulsar+ssl://localhost:6651";
/// Its admin REST endpoint.
pub const ADMIN_URL: &str = "https://localhost:8443";
/// The OAuth2 issuer.
pub const ISSUER_URL: &str = "https://localhost:8459";
/// The namespace where the `sluice` and `sluice-oauth` roles may produce
/// and consume, and nothing more.
pub const NAMESPACE: &str = "public/secured";

/// A file of the secured broker's credentials.
pub fn auth_file(name: &str) -> PathBuf {
    crate::stack_dir().join("pulsar-secure/auth").join(name)
}

/// The `authPlugin`/`authParams` lines that present the client
/// certificate `cert` with its `key`.
pub fn certificate_auth(cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "  authPlugin: org.apache.pulsar.client.impl.auth.AuthenticationTls\n  \
         authParams: tlsCertFile:{},tlsKeyFile:{}\n",
        cert.display(),
        key.display()
    )
}

/// The stack's client certificate and key, for the role `sluice_cert`,
/// which may produce and consume on [`NAMESPACE`].
pub fn client_certificate() -> (PathBuf, PathBuf) {
    let tls = crate::stack_dir().join("tls");
    (tls.join("client.pem"), tls.join("client.key"))
}

/// A JWT for `subject`, signed with the broker's key (`secret.key`) or
/// another (`other.key`), expiring in `ttl` seconds (in the past when
/// negative; never when `None`).
pub fn mint(subject: &str, ttl: Option<i64>, key: &str) -> anyhow::Result<String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pulsar/jwt.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script).arg(auth_file(key)).arg(subject);
    if let Some(ttl) = ttl {
        cmd.arg(format!("--ttl={ttl}"));
    }
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "jwt.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// How many tokens the issuer has handed to each client.
pub fn issued() -> anyhow::Result<serde_json::Value> {
    let pem = std::fs::read(crate::pg::ca())?;
    let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        )
        .build()
        .into();
    let body = agent
        .get(format!("{ISSUER_URL}/stats"))
        .call()
        .context("ask the issuer")?
        .body_mut()
        .read_to_string()?;
    Ok(serde_json::from_str(&body)?)
}
