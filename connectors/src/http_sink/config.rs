//! Settings of the `http` sink. `url` and `headers` are the keys of Pulsar's
//! own HTTP sink; the rest are sluice's.

use std::path::PathBuf;
use std::time::Duration;

use super::endpoint::Endpoint;
use crate::config::{ConfigMap, ConfigReader, ConfigReport, Key, Kind, Secret, Unset};
use crate::signature::Version;

/// The keys the `http` sink takes.
#[rustfmt::skip]
pub(crate) const KEYS: &[Key] = &[
    Key::new("url", Kind::Text, Unset::Required, "`http://` or `https://`; a user or password in it is refused (put credentials in `headers`)"),
    Key::new("headers", Kind::Map, Unset::Nothing, "a map of header names to values added to every request; kept out of logs and dead letters (also as an echo encodes them). To an `http://` URL other than loopback, a warning says they go in clear"),
    Key::new("bodyFormat", Kind::Text, Unset::Text("value"), "`value`: the record's value as it is; `record`: a JSON object with `value` (or `value_base64`), `topic`, `key`, `messageId`, `publishTime`, `eventTime` and `properties` (a dead letter's `sluice.error` among them)"),
    Key::new("filterPointer", Kind::Text, Unset::Nothing, "with `filterValues`: send only records whose JSON value holds one of `filterValues` at this JSON pointer (`/after/status` and `shipped` for Debezium updates that ship an order); the others are acknowledged unsent and counted as `skipped.filtered` (they count in `records_out` too)"),
    Key::new("filterValues", Kind::List, Unset::Nothing, "the values `filterPointer` selects"),
    Key::new("requestBatchSize", Kind::Integer, Unset::Int(1), "records per request (1 to 10000); over 1, a request's body is a JSON array (even of one record) of records shaped as `bodyFormat: record` describes, each with its own `idempotencyKey` (a group may be cut differently when records come again, so a receiver deduplicates by each item's key; the request carries no `Idempotency-Key` or `Pulsar*` headers). A refused request refuses all its records, which are then tried alone"),
    Key::new("batchSize", Kind::Integer, Unset::Int(100), "records per write"),
    Key::new("timeoutMs", Kind::Integer, Unset::Int(100), "a partial batch is written after this long"),
    Key::new("maxConcurrency", Kind::Integer, Unset::Int(8), "connections, and so requests in flight, at once (1 to 256)"),
    Key::new("requestTimeoutMs", Kind::Integer, Unset::Int(10_000), "one request, connecting included"),
    Key::new("maxAttempts", Kind::Integer, Unset::Int(4), "attempts per record within one write"),
    Key::new("retryBackoffMs", Kind::Integer, Unset::Int(100), "the first retry's delay; it doubles each time"),
    Key::new("maxRetryBackoffMs", Kind::Integer, Unset::Int(30_000), "the longest wait, `Retry-After` included"),
    Key::new("signatureSecret", Kind::Secret, Unset::Nothing, "the HMAC key (at least 16 characters); set it under `secrets`"),
    Key::new("signatureHeader", Kind::Text, Unset::Text("Sluice-Signature"), "the header that carries the signature"),
    Key::new("signatureVersion", Kind::Text, Unset::Text("v2"), "`v2` (over method, path, content type and body) or `v1` (over the body alone)"),
    Key::new("idempotencyKeyHeader", Kind::Text, Unset::Text("Idempotency-Key"), "the header that carries the idempotency key"),
    Key::new("tlsTrustCertsFilePath", Kind::Text, Unset::Said("the system's CA certificates"), "PEM file that verifies an `https` endpoint"),
];

/// Validated `http` sink settings.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSinkConfig {
    /// Where each record is POSTed.
    pub endpoint: Endpoint,
    /// Headers added to every request, as configured.
    pub headers: Vec<(String, Secret)>,
    /// What a request's body holds.
    pub body: BodyFormat,
    /// Send only records whose JSON value holds one of these values at
    /// this JSON pointer; the others are acknowledged unsent.
    pub filter: Option<(String, Vec<String>)>,
    /// Records per write.
    pub batch_size: u64,
    /// Records per request: 1, or a JSON array of up to this many.
    pub request_batch_size: usize,
    /// How long a partial batch waits.
    pub timeout: Duration,
    /// Requests in flight at once; records of one key go one after another.
    pub max_concurrency: usize,
    /// How long one request may take, connecting included.
    pub request_timeout: Duration,
    /// Attempts per record within one write before the write fails and
    /// the runtime retries it.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles, with jitter.
    pub retry_backoff: Duration,
    /// The longest delay between attempts, `Retry-After` included.
    pub max_retry_backoff: Duration,
    /// The key of the HMAC-SHA256 signature of each request, if any.
    pub signature_secret: Option<Secret>,
    /// The header that carries the signature.
    pub signature_header: String,
    /// Which form of signature it sends.
    pub signature_version: crate::signature::Version,
    /// The header that carries the idempotency key.
    pub idempotency_key_header: String,
    /// The CA certificates (PEM) that verify an `https` endpoint; the
    /// system's when unset.
    pub trust_file: Option<PathBuf>,
}

impl std::fmt::Debug for HttpSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpSinkConfig")
            .field("endpoint", &self.endpoint)
            .field("headers", &names)
            .field("batch_size", &self.batch_size)
            .field("max_concurrency", &self.max_concurrency)
            .field("signed", &self.signature_secret.is_some())
            .finish_non_exhaustive()
    }
}

/// What a request's body holds: `bodyFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// The record's value as it is, as Pulsar's HTTP sink sends it.
    Value,
    /// A JSON object with the record's value and everything known about
    /// it: topic, key, properties (a dead letter's `sluice.error` among
    /// them), message id and times. For notifications and alerts.
    Record,
}

/// Headers sluice sets on each request, which `headers` may not replace.
const RESERVED: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

impl HttpSinkConfig {
    /// Validate a `configs` map. Pure: no I/O.
    pub fn from_configs(configs: &ConfigMap) -> (Option<Self>, ConfigReport) {
        let r = ConfigReader::new(configs, KEYS, "the http sink");
        let endpoint = r
            .required_string("url")
            .and_then(|url| match Endpoint::parse(&url) {
                Ok(e) => Some(e),
                Err(why) => {
                    r.error("url", why);
                    None
                }
            });
        let headers = headers(&r, endpoint.as_ref());
        let body = r.one_of(
            "bodyFormat",
            &[("value", BodyFormat::Value), ("record", BodyFormat::Record)],
        );
        let filter = filter(&r);
        let batch_size = r.int_within("batchSize", 1, u64::MAX);
        let request_batch_size = r.int_within("requestBatchSize", 1, 10_000);
        let timeout = Duration::from_millis(r.int("timeoutMs"));
        let max_concurrency = r.int_within("maxConcurrency", 1, 256);
        let request_timeout = Duration::from_millis(r.int("requestTimeoutMs"));
        let max_attempts = r.int_within("maxAttempts", 1, u64::MAX);
        let retry_backoff = Duration::from_millis(r.int("retryBackoffMs"));
        let max_retry_backoff = Duration::from_millis(r.int("maxRetryBackoffMs"));
        let signature_secret = r.secret("signatureSecret");
        if signature_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 16)
        {
            r.error(
                "signatureSecret",
                "is shorter than 16 characters: use a long random key",
            );
        }
        let signature_header = header_name(&r, "signatureHeader");
        let signature_version = r.one_of(
            "signatureVersion",
            &[("v2", Version::V2), ("v1", Version::V1)],
        );
        let idempotency_key_header = header_name(&r, "idempotencyKeyHeader");
        let trust_file = r.string("tlsTrustCertsFilePath").map(PathBuf::from);
        let report = r.finish();
        let config = match endpoint {
            Some(endpoint) if report.errors.is_empty() => Some(Self {
                endpoint,
                headers,
                body,
                filter,
                batch_size,
                request_batch_size: request_batch_size as usize,
                timeout,
                max_concurrency: max_concurrency as usize,
                request_timeout,
                max_attempts: max_attempts as u32,
                retry_backoff,
                max_retry_backoff,
                signature_secret,
                signature_header,
                signature_version,
                idempotency_key_header,
                trust_file,
            }),
            _ => None,
        };
        (config, report)
    }
}

/// `headers`: names a header can have, values without line breaks, none
/// the sink sets itself; a warning when they would cross the network in
/// clear.
fn headers(r: &ConfigReader<'_>, endpoint: Option<&Endpoint>) -> Vec<(String, Secret)> {
    let headers = r.secret_map("headers").unwrap_or_default();
    for (name, value) in &headers {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            r.error("headers", format!("\"{name}\" is not an HTTP header name"));
        } else if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            r.error("headers", format!("{name} is set by the sink itself"));
        }
        if value.expose().bytes().any(|b| b == b'\r' || b == b'\n') {
            r.error("headers", format!("the value of {name} holds a line break"));
        }
    }
    if let Some(e) = endpoint
        && !e.tls
        && !headers.is_empty()
        && !crate::config::is_loopback(&e.host)
    {
        r.warn(
            "headers",
            format!(
                "go to {} over plain http://, readable by anyone on the path: use https://",
                e.authority
            ),
        );
    }
    headers
}

/// `filterPointer` and `filterValues`, set together.
fn filter(r: &ConfigReader<'_>) -> Option<(String, Vec<String>)> {
    match (r.string("filterPointer"), r.string_list("filterValues")) {
        (None, None) => None,
        (Some(pointer), Some(values)) if pointer.starts_with('/') && !values.is_empty() => {
            Some((pointer, values))
        }
        (Some(pointer), Some(_)) if !pointer.starts_with('/') => {
            r.error(
                "filterPointer",
                format!("\"{pointer}\" is not a JSON pointer (it starts with /, as /after/status)"),
            );
            None
        }
        (Some(_), _) => {
            r.error("filterValues", "is required with filterPointer");
            None
        }
        (None, Some(_)) => {
            r.error("filterPointer", "is required with filterValues");
            None
        }
    }
}

/// A header name the sink sends under.
fn header_name(r: &ConfigReader<'_>, key: &str) -> String {
    let name = r.text(key);
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        r.error(key, format!("\"{name}\" is not an HTTP header name"));
    }
    name
}

/// A byte of an HTTP token (RFC 9110): what a header name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigValue;

    fn configs(pairs: &[(&str, ConfigValue)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> ConfigValue {
        ConfigValue::String(v.to_owned())
    }

    #[test]
    fn pulsars_keys_are_read_and_defaults_fill_the_rest() {
        let headers = ConfigValue::Map(
            [("Authorization".to_owned(), s("Bearer abc"))]
                .into_iter()
                .collect(),
        );
        let (config, report) = HttpSinkConfig::from_configs(&configs(&[
            ("url", s("https://hooks.example.com:8443/orders?x=1")),
            ("headers", headers),
        ]));
        assert!(report.errors.is_empty(), "{report:?}");
        let config = config.unwrap();
        assert_eq!(config.endpoint.host, "hooks.example.com");
        assert_eq!(config.endpoint.port, 8443);
        assert_eq!(config.endpoint.path, "/orders?x=1");
        assert_eq!(config.headers[0].1.expose(), "Bearer abc");
        assert_eq!(config.max_concurrency, 8);
        assert_eq!(config.idempotency_key_header, "Idempotency-Key");
        // The header's value stays out of Debug.
        assert!(!format!("{config:?}").contains("abc"));
    }

    #[test]
    fn headers_to_plain_http_elsewhere_are_warned_about() {
        let headers = ConfigValue::Map(
            [("X-Api-Key".to_owned(), s("k-123456"))]
                .into_iter()
                .collect(),
        );
        let warnings = |url: &str| {
            let (_, report) = HttpSinkConfig::from_configs(&configs(&[
                ("url", s(url)),
                ("headers", headers.clone()),
            ]));
            report.warnings
        };
        let far = warnings("http://hooks.example.com/orders");
        assert_eq!(far.len(), 1, "{far:?}");
        assert!(far[0].message.contains("plain http://"), "{far:?}");
        assert!(warnings("http://127.0.0.1:9102/alerts").is_empty());
        assert!(warnings("http://[::1]:9102/alerts").is_empty());
        assert!(warnings("https://hooks.example.com/orders").is_empty());
    }

    #[test]
    fn bad_settings_are_named() {
        let headers = ConfigValue::Map(
            [
                ("Host".to_owned(), s("evil")),
                ("X-A".to_owned(), s("a\r\nX-B: b")),
                ("bad name".to_owned(), s("v")),
            ]
            .into_iter()
            .collect(),
        );
        let (config, report) = HttpSinkConfig::from_configs(&configs(&[
            ("url", s("ftp://example.com/")),
            ("headers", headers),
            ("maxConcurrency", ConfigValue::Int(0)),
            ("signatureSecret", s("short")),
        ]));
        assert!(config.is_none());
        let text = format!("{:?}", report.errors);
        for expected in [
            "http or https",
            "Host is set by the sink itself",
            "the value of X-A holds a line break",
            "\\\"bad name\\\" is not an HTTP header name",
            "must be from 1 to 256",
            "shorter than 16 characters",
        ] {
            assert!(text.contains(expected), "{expected} not in {text}");
        }
    }
}
