//! Settings of the `http` source. `type`, `host` and `port` are the keys of
//! Pulsar's Netty source; the rest are sluice's.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigMap, ConfigReader, ConfigReport, Key, Kind, Secret, Unset};

/// The keys the `http` source takes.
#[rustfmt::skip]
pub(crate) const KEYS: &[Key] = &[
    Key::new("type", Kind::Text, Unset::Text("http"), "only `http`"),
    Key::new("host", Kind::Text, Unset::Text("127.0.0.1"), "the address to listen on"),
    Key::new("port", Kind::Integer, Unset::Int(10_999), "the port to listen on; 0 picks a free one"),
    Key::ignored("numberOfThreads", "requests are served by the runtime's threads"),
    Key::new("topicsFromPath", Kind::List, Unset::Nothing, "topics a request may name in its path"),
    Key::new("keyField", Kind::Text, Unset::Nothing, "a JSON object's field whose value becomes the message key"),
    Key::new("maxBodyBytes", Kind::Integer, Unset::Int(1 << 20), "the largest request body taken (at most 1 GiB)"),
    Key::new("maxPendingRequests", Kind::Integer, Unset::Int(1000), "requests accepted and not yet answered"),
    Key::new("maxPendingBytes", Kind::Integer, Unset::Int(64 << 20), "bytes that requests not yet answered may hold: twice each body, and 16 per element of a JSON array; at least twice `maxBodyBytes`"),
    Key::new("maxConnections", Kind::Integer, Unset::Int(256), "connections open at once; a quiet one gives way to a newcomer"),
    Key::new("readTimeoutMs", Kind::Integer, Unset::Int(30_000), "how long a request's headers, and then its body, may take to arrive"),
    Key::new("batchSize", Kind::Integer, Unset::Int(500), "records handed to the runtime at once; a larger request goes in several batches (one transaction under EFFECTIVELY_ONCE)"),
    Key::new("authToken", Kind::Secret, Unset::Nothing, "the bearer token every request must carry (at least 16 characters); set it under `secrets`. Without `tlsCertFile`, on a `host` other than loopback, a warning says clients send it in clear"),
    Key::new("signatureSecret", Kind::Secret, Unset::Nothing, "the HMAC key (at least 16 characters) of the `Sluice-Signature` every request must carry (the HTTP sink's scheme, below)"),
    Key::new("signatureHeader", Kind::Text, Unset::Text("Sluice-Signature"), "the header that carries the signature"),
    Key::new("signatureVersion", Kind::Text, Unset::Text("v2"), "`v2` takes only signatures over the method, path, content type, idempotency key and body; `v1` also takes the older form over the body alone, which a captured request can be replayed under to another topic or content type"),
    Key::new("signatureToleranceSeconds", Kind::Integer, Unset::Int(300), "how far a signature's time may be from the server's clock"),
    Key::new("stateDir", Kind::Text, Unset::Nothing, "where the idempotency journal is kept; required under EFFECTIVELY_ONCE"),
    Key::new("idempotencyKeyHeader", Kind::Text, Unset::Text("Idempotency-Key"), "the header that carries a request's idempotency key"),
    Key::new("idempotencyKeyField", Kind::Text, Unset::Nothing, "a JSON object's field that carries its key when the header is absent"),
    Key::new("idempotencyRetentionSeconds", Kind::Integer, Unset::Int(86_400), "how long a published key is remembered"),
    Key::new("tlsCertFile", Kind::Text, Unset::Nothing, "the server's certificate chain (PEM), with `tlsKeyFile`: requests are then taken over TLS only (TLS 1.2 and 1.3); a client has 10 s to finish its handshake"),
    Key::new("tlsKeyFile", Kind::Text, Unset::Nothing, "the private key (PEM) of `tlsCertFile`"),
];

/// Validated `http` source settings.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSourceConfig {
    /// The address to listen on.
    pub host: String,
    /// The port to listen on; 0 picks a free one.
    pub port: u16,
    /// Topics a request may name in its path (`POST /topics/<name>`);
    /// others go to the connector's `topicName`.
    pub topics_from_path: Vec<String>,
    /// A JSON object's field whose value becomes the record's key.
    pub key_field: Option<String>,
    /// The largest request body taken.
    pub max_body_bytes: usize,
    /// Requests accepted and not yet answered, at most; past it new ones
    /// are answered 503 with `Retry-After`.
    pub max_pending_requests: usize,
    /// Bytes held for requests not yet answered, at most: twice each body
    /// (the body as read, and its records); past it new ones are answered
    /// 503 with `Retry-After`.
    pub max_pending_bytes: usize,
    /// Connections open at once, at most; more wait to be accepted.
    pub max_connections: usize,
    /// How long a request's headers, and then its body, may take to arrive.
    pub read_timeout: Duration,
    /// Records per batch handed to the runtime, at most.
    pub batch_size: usize,
    /// The bearer token every request must carry, if any.
    pub auth_token: Option<Secret>,
    /// The key of the HMAC-SHA256 signature every request must carry, if any.
    pub signature_secret: Option<Secret>,
    /// The header that carries the signature.
    pub signature_header: String,
    /// Whether the older form of signature, over the body only, is taken.
    pub accept_v1_signatures: bool,
    /// How far a signature's time may be from this clock.
    pub signature_tolerance: Duration,
    /// Where the idempotency journal is kept (EFFECTIVELY_ONCE).
    pub state_dir: Option<PathBuf>,
    /// The header that carries a request's idempotency key.
    pub idempotency_key_header: String,
    /// A JSON object's field that carries its idempotency key, when the
    /// header is absent.
    pub idempotency_key_field: Option<String>,
    /// How long a published key is remembered.
    pub idempotency_retention: Duration,
    /// The server's certificate chain and private key (PEM): requests are
    /// then taken over TLS only.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for HttpSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSourceConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("topics_from_path", &self.topics_from_path)
            .field("token", &self.auth_token.is_some())
            .field("signed", &self.signature_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpSourceConfig {
    /// Validate a `configs` map. Pure: no I/O.
    pub fn from_configs(configs: &ConfigMap) -> (Option<Self>, ConfigReport) {
        let r = ConfigReader::new(configs, KEYS, "the http source");
        match r.string("type").as_deref() {
            None | Some("http") => {}
            Some(other) => r.error(
                "type",
                format!("\"{other}\" is not served: sluice's http source takes type http only"),
            ),
        }
        let host = r.text("host");
        let port = r.int_within("port", 0, u64::from(u16::MAX));
        let topics_from_path = topics_from_path(&r);
        let key_field = r.string("keyField");
        let max_body_bytes = r.int_within("maxBodyBytes", 1, 1 << 30);
        let max_pending_bytes = r.int("maxPendingBytes");
        if max_pending_bytes < 2 * max_body_bytes || max_pending_bytes > 1 << 40 {
            r.error(
                "maxPendingBytes",
                format!(
                    "must be at least twice maxBodyBytes ({})",
                    2 * max_body_bytes
                ),
            );
        }
        let max_connections = r.int_within("maxConnections", 1, 65_536);
        let read_timeout = Duration::from_millis(r.int_within("readTimeoutMs", 1, u64::MAX));
        let max_pending_requests = r.int_within("maxPendingRequests", 1, u64::MAX);
        let batch_size = r.int_within("batchSize", 1, u64::MAX);
        let (auth_token, signature_secret) = credentials(&r, &host);
        let signature_header = r.text("signatureHeader");
        let accept_v1_signatures = r.one_of("signatureVersion", &[("v2", false), ("v1", true)]);
        let signature_tolerance = Duration::from_secs(r.int("signatureToleranceSeconds"));
        let state_dir = r.string("stateDir").map(PathBuf::from);
        let idempotency_key_header = r.text("idempotencyKeyHeader");
        let idempotency_key_field = r.string("idempotencyKeyField");
        let idempotency_retention = Duration::from_secs(r.int("idempotencyRetentionSeconds"));
        let tls = tls_files(&r);
        let report = r.finish();
        let config = report.errors.is_empty().then_some(Self {
            host,
            port: port as u16,
            topics_from_path,
            key_field,
            max_body_bytes: max_body_bytes as usize,
            max_pending_requests: max_pending_requests as usize,
            max_pending_bytes: max_pending_bytes as usize,
            max_connections: max_connections as usize,
            read_timeout,
            batch_size: batch_size as usize,
            auth_token,
            signature_secret,
            signature_header,
            accept_v1_signatures,
            signature_tolerance,
            state_dir,
            idempotency_key_header,
            idempotency_key_field,
            idempotency_retention,
            tls,
        });
        (config, report)
    }
}

/// `topicsFromPath`: names of topics in the connector's namespace.
fn topics_from_path(r: &ConfigReader<'_>) -> Vec<String> {
    let topics_from_path = r.string_list("topicsFromPath").unwrap_or_default();
    for t in &topics_from_path {
        if t.is_empty() || t.contains('/') || t.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            r.error(
                "topicsFromPath",
                format!("\"{t}\" is not a topic name of the connector's namespace"),
            );
        }
    }
    topics_from_path
}

/// `authToken` and `signatureSecret`, each long enough to guess at no
/// better than chance; a warning when the token would cross the network
/// in clear.
fn credentials(r: &ConfigReader<'_>, host: &str) -> (Option<Secret>, Option<Secret>) {
    let auth_token = r.secret("authToken");
    let signature_secret = r.secret("signatureSecret");
    for (key, secret) in [
        ("authToken", &auth_token),
        ("signatureSecret", &signature_secret),
    ] {
        if secret.as_ref().is_some_and(|s| s.expose().len() < 16) {
            r.error(
                key,
                "is shorter than 16 characters: use a long random value",
            );
        }
    }
    let plain = r.string("tlsCertFile").is_none();
    if plain && auth_token.is_some() && !crate::config::is_loopback(host) {
        r.warn(
            "authToken",
            format!(
                "clients send it to {host} over plain HTTP, readable by anyone on the path: \
                 set tlsCertFile and tlsKeyFile"
            ),
        );
    }
    (auth_token, signature_secret)
}

/// `tlsCertFile` and `tlsKeyFile`, set together.
fn tls_files(r: &ConfigReader<'_>) -> Option<(PathBuf, PathBuf)> {
    r.pair("tlsCertFile", "tlsKeyFile")
        .map(|(cert, key)| (PathBuf::from(cert), PathBuf::from(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigValue;

    fn read(pairs: &[(&str, &str)]) -> (Option<HttpSourceConfig>, ConfigReport) {
        let map: ConfigMap = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ConfigValue::String((*v).to_owned())))
            .collect();
        HttpSourceConfig::from_configs(&map)
    }

    #[test]
    fn the_netty_sources_keys_are_taken() {
        let (config, report) = read(&[
            ("type", "http"),
            ("host", "0.0.0.0"),
            ("port", "10999"),
            ("numberOfThreads", "4"),
        ]);
        let config = config.unwrap();
        assert_eq!((config.host.as_str(), config.port), ("0.0.0.0", 10999));
        assert_eq!(report.warnings.len(), 1, "numberOfThreads is ignored");
        let (config, report) = read(&[("type", "tcp")]);
        assert!(config.is_none());
        assert!(format!("{report:?}").contains("type http only"));
    }

    #[test]
    fn a_token_taken_over_plain_http_from_elsewhere_is_warned_about() {
        let token = "a-token-of-sixteen-or-more";
        let (_, report) = read(&[("host", "0.0.0.0"), ("authToken", token)]);
        assert_eq!(report.warnings.len(), 1, "{report:?}");
        assert!(report.warnings[0].message.contains("plain HTTP"));
        let (_, report) = read(&[("authToken", token)]);
        assert!(report.warnings.is_empty(), "loopback: {report:?}");
    }

    #[test]
    fn short_secrets_and_bad_topics_are_refused() {
        let (config, report) = read(&[
            ("authToken", "short"),
            ("topicsFromPath", "orders,tenant/ns/x"),
        ]);
        assert!(config.is_none());
        let text = format!("{report:?}");
        assert!(text.contains("authToken"), "{text}");
        assert!(text.contains("tenant/ns/x"), "{text}");
    }
}
