//! The config files as written: Pulsar IO `SourceConfig` and `SinkConfig`
//! entries, and the pipeline file that lists them. Only parsing happens
//! here; `validate` turns these into the runtime's settings.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;
use sluice_connectors::Guarantee;

/// A pipeline file: client settings and lists of connectors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelineFile {
    #[serde(default)]
    pub(crate) pulsar: Option<PulsarSection>,
    #[serde(default)]
    pub(crate) http: Option<HttpSection>,
    #[serde(default)]
    pub(crate) sources: Vec<Spanned<SourceEntry>>,
    #[serde(default)]
    pub(crate) sinks: Vec<Spanned<SinkEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PulsarSection {
    pub(crate) service_url: Option<Spanned<String>>,
    pub(crate) web_service_url: Option<Spanned<String>>,
    pub(crate) auth_token: Option<String>,
    pub(crate) auth_plugin: Option<Spanned<String>>,
    pub(crate) auth_params: Option<super::auth::RawParams>,
    pub(crate) tls_trust_certs_file_path: Option<String>,
    pub(crate) tls_allow_insecure_connection: Option<bool>,
    pub(crate) tls_enable_hostname_verification: Option<bool>,
    pub(crate) memory_limit_bytes: Option<u64>,
    pub(crate) send_credentials_over_plain_http: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpSection {
    pub(crate) listen: Spanned<String>,
}

/// `sourceSubscriptionPosition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SubscriptionPosition {
    /// Start after the newest message when the subscription is created.
    Latest,
    /// Start from the oldest retained message when the subscription is created.
    Earliest,
}

/// `missingTopics`: what a sink does about an input topic that does not
/// exist. sluice never creates one by subscribing: a topic created so would
/// shadow a partitioned topic made later under the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum MissingTopics {
    /// Warn, naming it, read the other inputs, and read it from its start
    /// once it exists.
    #[default]
    #[serde(rename = "WAIT")]
    Wait,
    /// Fail the run, naming it (retried with backoff, as any failed run).
    #[serde(rename = "FAIL")]
    Fail,
}

/// A value under `configs` or `secrets`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawValue {
    Null(()),
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<RawValue>),
    Map(BTreeMap<String, RawValue>),
}

pub(crate) type RawConfigs = BTreeMap<String, Spanned<RawValue>>;

/// Pulsar IO `SourceConfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SourceEntry {
    pub(crate) tenant: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) class_name: Option<Spanned<String>>,
    pub(crate) topic_name: Option<Spanned<String>>,
    pub(crate) processing_guarantees: Option<Guarantee>,
    pub(crate) parallelism: Option<Spanned<u32>>,
    pub(crate) producer_config: Option<ProducerConfig>,
    pub(crate) configs: Option<RawConfigs>,
    pub(crate) secrets: Option<RawConfigs>,
    /// Names the connector when `className` does not; ignored otherwise.
    pub(crate) archive: Option<Spanned<String>>,
    /// The built-in connector (`debezium-postgres`), when neither
    /// `className` nor `archive` names one.
    pub(crate) source_type: Option<Spanned<String>>,
    // Pulsar IO fields that mean nothing here: accepted with a warning.
    pub(crate) resources: Option<IgnoredAny>,
    pub(crate) runtime_flags: Option<IgnoredAny>,
    pub(crate) custom_runtime_options: Option<IgnoredAny>,
    pub(crate) serde_class_name: Option<IgnoredAny>,
    /// `BYTES` publishes plain bytes instead of the connector's schema.
    pub(crate) schema_type: Option<Spanned<String>>,
}

/// Pulsar IO `ProducerConfig`, the parts that apply.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ProducerConfig {
    pub(crate) max_pending_messages: Option<Spanned<u32>>,
    pub(crate) compression_type: Option<Compression>,
    pub(crate) batching_config: Option<BatchingConfig>,
    pub(crate) batch_builder: Option<BatchBuilder>,
}

/// `batchBuilder`: how records are put together into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum BatchBuilder {
    /// Records in the order they come, whatever their keys.
    Default,
    /// Each batch of one key, stamped with it.
    KeyBased,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BatchingConfig {
    pub(crate) enabled: Option<bool>,
    pub(crate) batching_max_publish_delay_ms: Option<u64>,
    pub(crate) batching_max_messages: Option<Spanned<u32>>,
    pub(crate) batching_max_bytes: Option<Spanned<u32>>,
}

/// `compressionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Compression {
    /// No compression.
    None,
    /// LZ4.
    Lz4,
    /// zlib.
    Zlib,
    /// Zstandard.
    Zstd,
    /// Snappy.
    Snappy,
}

/// Pulsar IO `SinkConfig`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SinkEntry {
    pub(crate) tenant: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) class_name: Option<Spanned<String>>,
    pub(crate) inputs: Option<Spanned<Vec<String>>>,
    pub(crate) topics_pattern: Option<Spanned<String>>,
    /// sluice's own: see [`MissingTopics`].
    pub(crate) missing_topics: Option<MissingTopics>,
    pub(crate) source_subscription_name: Option<String>,
    pub(crate) source_subscription_position: Option<SubscriptionPosition>,
    pub(crate) processing_guarantees: Option<Guarantee>,
    pub(crate) retain_ordering: Option<bool>,
    pub(crate) retain_key_ordering: Option<bool>,
    pub(crate) dead_letter_topic: Option<Spanned<String>>,
    pub(crate) max_message_retries: Option<Spanned<i32>>,
    pub(crate) negative_ack_redelivery_delay_ms: Option<u64>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) auto_ack: Option<bool>,
    pub(crate) parallelism: Option<Spanned<u32>>,
    pub(crate) cleanup_subscription: Option<bool>,
    pub(crate) configs: Option<RawConfigs>,
    pub(crate) secrets: Option<RawConfigs>,
    /// Names the connector when `className` does not; ignored otherwise.
    pub(crate) archive: Option<Spanned<String>>,
    /// The built-in connector (`jdbc-postgres`), when neither `className`
    /// nor `archive` names one.
    pub(crate) sink_type: Option<Spanned<String>>,
    // Pulsar IO fields that mean nothing here: accepted with a warning.
    pub(crate) resources: Option<IgnoredAny>,
    pub(crate) runtime_flags: Option<IgnoredAny>,
    pub(crate) custom_runtime_options: Option<IgnoredAny>,
    pub(crate) topic_to_serde_class_name: Option<IgnoredAny>,
    pub(crate) topic_to_schema_type: Option<IgnoredAny>,
}
