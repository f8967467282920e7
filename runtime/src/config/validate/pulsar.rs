//! The `pulsar:` section (or the localrun flags that stand for it):
//! the broker's URL, authentication and TLS, checked together.

use std::path::PathBuf;

use serde_saphyr::Location;
use sluice_connectors::Secret;

use super::Ctx;
use crate::config::auth::RawParams;
use crate::config::{
    DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_SERVICE_URL, PulsarAuth, PulsarSettings, TokenSource,
};

pub(super) fn check_service_url(url: &str, at: Option<&Location>, path: &str, ctx: &mut Ctx) {
    if !(url.starts_with("pulsar://") || url.starts_with("pulsar+ssl://")) {
        ctx.error(
            at,
            path,
            format!("\"{url}\" is not a broker URL: it starts with pulsar:// or pulsar+ssl://"),
        );
    }
}

pub(super) fn pulsar_settings(
    section: Option<crate::config::raw::PulsarSection>,
    ctx: &mut Ctx,
) -> PulsarSettings {
    let Some(s) = section else {
        return PulsarSettings {
            service_url: DEFAULT_SERVICE_URL.to_owned(),
            web_service_url: None,
            auth: PulsarAuth::None,
            tls_trust_certs_file_path: None,
            tls_allow_insecure_connection: false,
            tls_hostname_verification: true,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            send_credentials_over_plain_http: false,
        };
    };
    let service_url = match &s.service_url {
        Some(url) => {
            check_service_url(&url.value, Some(&url.referenced), "pulsar.serviceUrl", ctx);
            url.value.clone()
        }
        None => DEFAULT_SERVICE_URL.to_owned(),
    };
    if let Some(url) = &s.web_service_url
        && !(url.value.starts_with("http://") || url.value.starts_with("https://"))
    {
        ctx.error(
            Some(&url.referenced),
            "pulsar.webServiceUrl",
            format!("\"{}\" is not an http:// or https:// URL", url.value),
        );
    }
    let token = s.auth_token.filter(|t| !t.is_empty());
    let auth = match (&s.auth_plugin, token) {
        (Some(plugin), Some(_)) => {
            ctx.error(
                Some(&plugin.referenced),
                "pulsar.authToken",
                "is a shorthand for authPlugin AuthenticationToken: give one or the other",
            );
            PulsarAuth::None
        }
        (Some(plugin), None) => auth_of(
            &plugin.value,
            s.auth_params.as_ref(),
            Some(&plugin.referenced),
            "pulsar.authPlugin",
            ctx,
        ),
        (None, Some(token)) => PulsarAuth::Token(TokenSource::Value(Secret::new(token))),
        (None, None) => {
            if s.auth_params.is_some() {
                ctx.error(None, "pulsar.authParams", "is given without authPlugin");
            }
            PulsarAuth::None
        }
    };
    let settings = PulsarSettings {
        service_url,
        web_service_url: s.web_service_url.map(|u| u.value),
        auth,
        tls_trust_certs_file_path: s.tls_trust_certs_file_path.map(PathBuf::from),
        tls_allow_insecure_connection: s.tls_allow_insecure_connection.unwrap_or(false),
        tls_hostname_verification: s.tls_enable_hostname_verification.unwrap_or(true),
        memory_limit_bytes: s.memory_limit_bytes.unwrap_or(DEFAULT_MEMORY_LIMIT_BYTES),
        send_credentials_over_plain_http: s.send_credentials_over_plain_http.unwrap_or(false),
    };
    check_tls(&settings, "pulsar.tlsAllowInsecureConnection", ctx);
    settings
}

/// The authentication `plugin` with `params` asks for.
pub(super) fn auth_of(
    plugin: &str,
    params: Option<&RawParams>,
    at: Option<&Location>,
    path: &str,
    ctx: &mut Ctx,
) -> PulsarAuth {
    match crate::config::auth::parse(plugin, params) {
        Ok(auth) => auth,
        Err(message) => {
            ctx.error(at, path, message);
            PulsarAuth::None
        }
    }
}

/// TLS settings that cannot work together, or that protect nothing; and
/// credentials that would cross plain HTTP.
pub(super) fn check_tls(settings: &PulsarSettings, path: &str, ctx: &mut Ctx) {
    let tls = settings.service_url.starts_with("pulsar+ssl://");
    let issuer = match &settings.auth {
        PulsarAuth::OAuth2(o) => Some(o.issuer_url.as_str()),
        _ => None,
    };
    if settings.tls_allow_insecure_connection {
        // Every connection whose certificate is no longer checked.
        let mut weakened = Vec::new();
        if tls {
            weakened.push(format!("the broker ({})", settings.service_url));
        }
        if let Some(web) = &settings.web_service_url
            && web.starts_with("https://")
        {
            weakened.push(format!("the admin API ({web})"));
        } else if settings.web_service_url.is_none() && tls {
            weakened.push("the admin API (the broker's host, on 8443)".to_owned());
        }
        if let Some(issuer) = issuer.filter(|i| i.starts_with("https://")) {
            weakened.push(format!("the OAuth2 issuer ({issuer})"));
        }
        if !weakened.is_empty() {
            ctx.warn(
                None,
                path,
                format!(
                    "accepts any certificate from {}: anyone on the path can pose as them and read the credentials",
                    weakened.join(", ")
                ),
            );
        }
    }
    let bearer = matches!(settings.auth, PulsarAuth::Token(_) | PulsarAuth::OAuth2(_));
    if !settings.send_credentials_over_plain_http {
        if bearer
            && let Some(web) = settings
                .web_service_url
                .as_deref()
                .filter(|w| w.starts_with("http://"))
        {
            ctx.error(
                None,
                "pulsar.webServiceUrl",
                format!(
                    "{web} is plain HTTP, and the token would go to it readable by anyone on the path: \
                     use https://, or set pulsar.sendCredentialsOverPlainHttp: true to send it anyway"
                ),
            );
        }
        if let Some(issuer) = issuer.filter(|i| i.starts_with("http://")) {
            ctx.error(
                None,
                "pulsar.authParams",
                format!(
                    "issuerUrl {issuer} is plain HTTP, and the client secret would go to it readable by anyone on the path: \
                     use https://, or set pulsar.sendCredentialsOverPlainHttp: true to send it anyway"
                ),
            );
        }
    }
    if !tls && matches!(settings.auth, PulsarAuth::Tls { .. }) {
        ctx.error(
            None,
            "pulsar.authPlugin",
            "AuthenticationTls presents a client certificate in the TLS handshake, so pulsar.serviceUrl must be pulsar+ssl://",
        );
    } else if !tls && settings.auth != PulsarAuth::None {
        ctx.warn(
            None,
            "pulsar.serviceUrl",
            "is not pulsar+ssl://: the credentials go to the broker unencrypted",
        );
    }
    if !settings.tls_hostname_verification
        && settings.tls_trust_certs_file_path.is_none()
        && !settings.tls_allow_insecure_connection
        && tls
    {
        ctx.error(
            None,
            "pulsar.tlsEnableHostnameVerification",
            "false needs tlsTrustCertsFilePath: the client checks the certificate's chain against it, not the host name",
        );
    }
}
