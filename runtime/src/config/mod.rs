//! Config files: reading, `${NAME}` substitution, parsing, and pure
//! validation into the settings the engine runs with.
//!
//! Two kinds of file exist: a pipeline file (`pulsar`, `http`, `sources`,
//! `sinks`) for `sluice run`, and a Pulsar IO single-connector file for
//! `sluice localrun`. Every error names the file, the line and column, and
//! the field path.

mod auth;
mod env;
mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::auth::{OAuth2Settings, PulsarAuth, TokenSource};
pub use raw::{Compression, MissingTopics, SubscriptionPosition};
pub use sluice_connectors::Guarantee;
use sluice_connectors::{SinkSpec, SourceSpec};

/// Where the broker is and how to reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct PulsarSettings {
    /// `pulsar://host:6650` or `pulsar+ssl://host:6651`.
    pub service_url: String,
    /// The admin REST URL, for preflight checks.
    pub web_service_url: Option<String>,
    /// How to authenticate: `authPlugin` and `authParams`, or `authToken`.
    pub auth: PulsarAuth,
    /// CA certificates for `pulsar+ssl://` and `https://`; the system's
    /// otherwise.
    pub tls_trust_certs_file_path: Option<PathBuf>,
    /// Accept any server certificate. Insecure.
    pub tls_allow_insecure_connection: bool,
    /// Check that the server's certificate names the host connected to.
    pub tls_hostname_verification: bool,
    /// Bytes of message payload each connector holds for Pulsar at most:
    /// a source's publishes awaiting the broker's receipt (`memoryLimitBytes`;
    /// 0 is no limit).
    pub memory_limit_bytes: u64,
    /// Whether a token may go to an `http://` admin API or OAuth2 issuer,
    /// where anyone on the path reads it (`sendCredentialsOverPlainHttp`).
    pub send_credentials_over_plain_http: bool,
}

impl PulsarSettings {
    /// The files that hold this client's secrets, by what they are.
    pub fn secret_files(&self) -> Vec<(&'static str, &std::path::Path)> {
        match &self.auth {
            PulsarAuth::Token(TokenSource::File(path)) => vec![("the token file", path)],
            PulsarAuth::OAuth2(o) => vec![("the OAuth2 credentials file", &o.private_key)],
            PulsarAuth::Tls { key, .. } => vec![("the client key", key)],
            _ => Vec::new(),
        }
    }
}

/// The default broker, as `pulsar-admin` assumes it.
pub const DEFAULT_SERVICE_URL: &str = "pulsar://localhost:6650";

/// `memoryLimitBytes` unless set, as the Java client's default.
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// How a source publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerSettings {
    /// Sends awaiting the broker's receipt, at most (`maxPendingMessages`).
    pub max_pending_messages: usize,
    /// Compression of each batch.
    pub compression: Compression,
    /// Batching: `None` sends one message per frame.
    pub batching: Option<Batching>,
}

/// Producer batching limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Messages per batch, at most.
    pub max_messages: usize,
    /// Bytes per batch, at most.
    pub max_bytes: usize,
    /// How long a partial batch waits.
    pub max_delay: Duration,
    /// Each batch holds records of one key and carries it
    /// (`batchBuilder: KEY_BASED`): a Key_Shared subscription then hands
    /// each key to one consumer.
    pub by_key: bool,
}

/// `maxPendingMessages` unless set (Pulsar's default).
pub const DEFAULT_MAX_PENDING_MESSAGES: usize = 1000;
/// `batchingMaxMessages` unless set (Pulsar's default).
pub const DEFAULT_BATCH_MAX_MESSAGES: usize = 1000;
/// `batchingMaxBytes` unless set (Pulsar's default).
pub const DEFAULT_BATCH_MAX_BYTES: usize = 128 * 1024;
/// `batchingMaxPublishDelayMs` unless set (Pulsar's default).
pub const DEFAULT_BATCH_MAX_DELAY: Duration = Duration::from_millis(10);

/// One source connector, validated.
#[derive(Debug, Clone)]
pub struct SourceDef {
    /// The connector's name, unique in the pipeline.
    pub name: String,
    /// Tenant of its topics.
    pub tenant: String,
    /// Namespace of its topics.
    pub namespace: String,
    /// The default output topic, fully qualified.
    pub topic: Option<String>,
    /// The delivery guarantee.
    pub guarantee: Guarantee,
    /// How it publishes.
    pub producer: ProducerSettings,
    /// Whether records go out under their connector's schema, which the
    /// broker registers; `schemaType: BYTES` publishes plain bytes.
    pub publish_schema: bool,
    /// The connector and its settings.
    pub spec: SourceSpec,
}

/// The subscription type a sink consumes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionType {
    /// One active consumer; order kept. `retainOrdering` or EFFECTIVELY_ONCE.
    Failover,
    /// Consumers share by key; per-key order kept. `retainKeyOrdering`.
    KeyShared,
    /// Consumers share messages freely.
    Shared,
}

/// One sink connector, validated.
#[derive(Debug, Clone)]
pub struct SinkDef {
    /// The connector's name, unique in the pipeline.
    pub name: String,
    /// Tenant, for relative topic names.
    pub tenant: String,
    /// Namespace, for relative topic names.
    pub namespace: String,
    /// Input topics, fully qualified.
    pub inputs: Vec<String>,
    /// A regex over topic names in the namespace, instead of `inputs`.
    pub topics_pattern: Option<String>,
    /// What to do about an input topic that does not exist.
    pub missing_topics: MissingTopics,
    /// The subscription name.
    pub subscription: String,
    /// Where a new subscription starts.
    pub position: SubscriptionPosition,
    /// The subscription type.
    pub subscription_type: SubscriptionType,
    /// The delivery guarantee.
    pub guarantee: Guarantee,
    /// Where records go after `max_retries` failed attempts.
    pub dead_letter_topic: Option<String>,
    /// Failed attempts before a record is dead-lettered.
    pub max_retries: u32,
    /// Delay before a negatively acknowledged message comes back.
    pub nack_delay: Duration,
    /// Redeliver a message not acknowledged within this time; `None` never.
    pub ack_timeout: Option<Duration>,
    /// Consumers on the subscription.
    pub parallelism: u32,
    /// The connector and its settings.
    pub spec: SinkSpec,
}

/// `maxMessageRetries` unless set.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// `negativeAckRedeliveryDelayMs` unless set (Pulsar's default, one minute,
/// is long for a connector that retries in place; sluice uses one second).
pub const DEFAULT_NACK_DELAY: Duration = Duration::from_secs(1);

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The broker.
    pub pulsar: PulsarSettings,
    /// Where `/metrics`, `/healthz`, `/readyz` and `/connectors` listen.
    pub http: Option<SocketAddr>,
    /// Source connectors.
    pub sources: Vec<SourceDef>,
    /// Sink connectors.
    pub sinks: Vec<SinkDef>,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 when the problem is the whole file.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// The field path, like `sinks[0].configs.batchSize`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn render(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A setting that is accepted but does nothing here.
pub type ConfigWarning = ConfigError;

/// A loaded config and what was ignored in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated pipeline.
    pub pipeline: Pipeline,
    /// Settings accepted with a warning.
    pub warnings: Vec<ConfigWarning>,
}

/// What `sluice localrun` overrides from its command line.
#[derive(Debug, Clone, Default)]
pub struct LocalrunOverrides {
    /// `--broker-service-url`.
    pub broker_service_url: Option<String>,
    /// `--web-service-url`.
    pub web_service_url: Option<String>,
    /// `--client-auth-plugin`.
    pub auth_plugin: Option<String>,
    /// `--client-auth-params`.
    pub auth_params: Option<String>,
    /// `--use-tls`.
    pub use_tls: bool,
    /// `--tls-trust-cert-path`.
    pub tls_trust_cert_path: Option<PathBuf>,
    /// `--tls-allow-insecure`.
    pub tls_allow_insecure: bool,
    /// `--tls-hostname-verification`: `None` keeps the default (on).
    pub tls_hostname_verification: Option<bool>,
}

/// Which single-connector file `sluice localrun` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorFileKind {
    /// `--source-config-file`.
    Source,
    /// `--sink-config-file`.
    Sink,
}

fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })
}

/// Load and validate a pipeline file, taking `${NAME}` from the environment.
pub fn load_pipeline(path: &Path) -> Result<Loaded, ConfigErrors> {
    let text = read(path)?;
    validate::pipeline_from_str(path, &text, |name| std::env::var(name).ok())
}

/// Load and validate a Pulsar IO single-connector file.
pub fn load_connector_file(
    path: &Path,
    kind: ConnectorFileKind,
    overrides: &LocalrunOverrides,
) -> Result<Loaded, ConfigErrors> {
    let text = read(path)?;
    validate::connector_file_from_str(path, &text, kind, overrides, |name| {
        std::env::var(name).ok()
    })
}

pub(crate) use validate::qualify_topic;

#[cfg(test)]
mod tests;
