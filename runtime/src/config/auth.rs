//! How sluice authenticates to Pulsar: the `authPlugin` and `authParams`
//! keys of Pulsar's `client.conf`, as the Java client reads them, and the
//! `authToken` shorthand.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use sluice_connectors::Secret;

/// The Java client's token plugin.
pub(crate) const TOKEN_PLUGIN: &str = "org.apache.pulsar.client.impl.auth.AuthenticationToken";
/// The Java client's OAuth2 client-credentials plugin.
pub(crate) const OAUTH2_PLUGIN: &str =
    "org.apache.pulsar.client.impl.auth.oauth2.AuthenticationOAuth2";
/// The Java client's TLS-certificate plugin.
pub(crate) const TLS_PLUGIN: &str = "org.apache.pulsar.client.impl.auth.AuthenticationTls";

/// How to authenticate to the broker.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum PulsarAuth {
    /// Anonymous.
    #[default]
    None,
    /// A JWT.
    Token(TokenSource),
    /// OAuth2 client credentials, exchanged for a JWT at the issuer.
    OAuth2(OAuth2Settings),
    /// A client certificate (mTLS).
    Tls {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
}

/// Where a token comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    /// The token itself.
    Value(Secret),
    /// A file holding it, read again on each connection and each
    /// re-authentication, so that a rotated token is picked up.
    File(PathBuf),
}

/// OAuth2 client credentials, as Pulsar's `AuthenticationOAuth2` takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2Settings {
    /// The issuer: its `/.well-known/openid-configuration` names the token
    /// endpoint.
    pub issuer_url: String,
    /// The credentials file (`client_id`, `client_secret`).
    pub private_key: PathBuf,
    /// The audience asked for, if any.
    pub audience: Option<String>,
    /// The scope asked for, if any.
    pub scope: Option<String>,
}

/// `authParams`: a string as in `client.conf`, or a map.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawParams {
    Text(String),
    Map(BTreeMap<String, String>),
}

/// `file:///path`, `file:/path` or a bare path.
fn file_path(text: &str) -> PathBuf {
    let path = text
        .strip_prefix("file://")
        .or_else(|| text.strip_prefix("file:"))
        .unwrap_or(text);
    PathBuf::from(path)
}

/// The params as key-value pairs: a map as it is; a string as JSON, or as
/// `key:value,key:value` (how `client.conf` spells `AuthenticationTls`).
fn pairs(params: &RawParams) -> Result<BTreeMap<String, String>, String> {
    match params {
        RawParams::Map(map) => Ok(map.clone()),
        RawParams::Text(text) if text.trim_start().starts_with('{') => {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| format!("authParams is not valid JSON ({e})"))?;
            let object = value.as_object().ok_or("authParams is not a JSON object")?;
            Ok(object
                .iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), v)
                })
                .collect())
        }
        RawParams::Text(text) => text
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                p.split_once(':')
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| "authParams is not key:value pairs".to_owned())
            })
            .collect(),
    }
}

/// Read `authPlugin` with its `authParams`. Errors never quote the
/// params: they may hold a secret.
pub(crate) fn parse(plugin: &str, params: Option<&RawParams>) -> Result<PulsarAuth, String> {
    let required = || format!("authPlugin {plugin} needs authParams");
    match plugin {
        TOKEN_PLUGIN | "token" => {
            let token = match params.ok_or_else(required)? {
                RawParams::Text(text) => text.clone(),
                map @ RawParams::Map(_) => pairs(map)?
                    .remove("token")
                    .ok_or("authParams for a token needs `token`")?,
            };
            let token = token.trim();
            if let Some(value) = token.strip_prefix("token:") {
                Ok(PulsarAuth::Token(TokenSource::Value(Secret::new(value))))
            } else if token.starts_with("file:") {
                Ok(PulsarAuth::Token(TokenSource::File(file_path(token))))
            } else if token.is_empty() {
                Err(required())
            } else {
                Ok(PulsarAuth::Token(TokenSource::Value(Secret::new(token))))
            }
        }
        OAUTH2_PLUGIN | "oauth2" => {
            let mut p = pairs(params.ok_or_else(required)?)?;
            let issuer_url = p
                .remove("issuerUrl")
                .ok_or("authParams for OAuth2 needs `issuerUrl`")?;
            if !(issuer_url.starts_with("https://") || issuer_url.starts_with("http://")) {
                return Err(format!(
                    "issuerUrl \"{issuer_url}\" is not an http:// or https:// URL"
                ));
            }
            let private_key = p
                .remove("privateKey")
                .ok_or("authParams for OAuth2 needs `privateKey`, the credentials file")?;
            if private_key.starts_with("data:") {
                return Err(
                    "privateKey as a data: URL is not supported: put the credentials in a file and give file:///path"
                        .to_owned(),
                );
            }
            Ok(PulsarAuth::OAuth2(OAuth2Settings {
                issuer_url,
                private_key: file_path(&private_key),
                audience: p.remove("audience").filter(|a| !a.is_empty()),
                scope: p.remove("scope").filter(|s| !s.is_empty()),
            }))
        }
        TLS_PLUGIN | "tls" => {
            let mut p = pairs(params.ok_or_else(required)?)?;
            let cert = p
                .remove("tlsCertFile")
                .ok_or("authParams for TLS needs `tlsCertFile`")?;
            let key = p
                .remove("tlsKeyFile")
                .ok_or("authParams for TLS needs `tlsKeyFile`")?;
            Ok(PulsarAuth::Tls {
                cert: file_path(&cert),
                key: file_path(&key),
            })
        }
        other => Err(format!(
            "authPlugin {other} is not supported: use {TOKEN_PLUGIN}, {OAUTH2_PLUGIN} or {TLS_PLUGIN}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> RawParams {
        RawParams::Text(s.to_owned())
    }

    #[test]
    fn tokens_come_inline_or_from_a_file() {
        let inline = parse(TOKEN_PLUGIN, Some(&text("token:abc.def"))).unwrap();
        assert!(
            matches!(&inline, PulsarAuth::Token(TokenSource::Value(s)) if s.expose() == "abc.def")
        );
        assert_eq!(
            parse("token", Some(&text("file:///etc/t.jwt"))).unwrap(),
            PulsarAuth::Token(TokenSource::File("/etc/t.jwt".into()))
        );
        assert!(parse(TOKEN_PLUGIN, None).is_err());
    }

    #[test]
    fn oauth2_takes_the_java_clients_json() {
        let json = r#"{"issuerUrl":"https://auth.example/","privateKey":"file:///c.json","audience":"urn:pulsar"}"#;
        assert_eq!(
            parse(OAUTH2_PLUGIN, Some(&text(json))).unwrap(),
            PulsarAuth::OAuth2(OAuth2Settings {
                issuer_url: "https://auth.example/".into(),
                private_key: "/c.json".into(),
                audience: Some("urn:pulsar".into()),
                scope: None,
            })
        );
        let missing = parse(OAUTH2_PLUGIN, Some(&text(r#"{"issuerUrl":"https://a"}"#)));
        assert!(missing.unwrap_err().contains("privateKey"));
    }

    #[test]
    fn tls_takes_pairs_or_json_and_errors_quote_no_params() {
        let expected = PulsarAuth::Tls {
            cert: "/c.pem".into(),
            key: "/k.pem".into(),
        };
        assert_eq!(
            parse(
                TLS_PLUGIN,
                Some(&text("tlsCertFile:/c.pem,tlsKeyFile:/k.pem"))
            )
            .unwrap(),
            expected
        );
        assert_eq!(
            parse(
                TLS_PLUGIN,
                Some(&text(r#"{"tlsCertFile":"/c.pem","tlsKeyFile":"/k.pem"}"#))
            )
            .unwrap(),
            expected
        );
        let err = parse("com.example.Custom", Some(&text("secret-value"))).unwrap_err();
        assert!(!err.contains("secret-value"), "{err}");
    }
}
