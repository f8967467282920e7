//! The connector API: what a source and a sink implement, and the records
//! they exchange with the runtime.
//!
//! The runtime owns Pulsar. A source hands it records and learns, through
//! [`Commit::commit`], which of its positions are durable. A sink receives
//! records and tells the runtime, by returning from [`Sink::write`], that
//! they are durable in its target.

use std::future::Future;
use std::time::Duration;

use crate::config::{ConfigMap, ConfigReport, Key};
pub use crate::message_id::{MessageId, NotAMessageId};

/// A point in a source's stream that it can resume from, such as a Postgres
/// LSN or a generator's count. Positions only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(pub u64);

/// A record's place in its source stream, strictly increasing per source.
/// It is published as the `sluice.seq` property and is the dedup key.
///
/// The Postgres source builds it from the commit LSN (high 64 bits) and the
/// record's ordinal in its transaction (low 64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Sequence(pub u128);

impl Sequence {
    /// A sequence from a commit position and an ordinal inside it.
    pub fn from_parts(high: u64, low: u64) -> Self {
        Self((u128::from(high) << 64) | u128::from(low))
    }
}

impl std::fmt::Display for Sequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Sequence {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// One record from a source, to be published as one Pulsar message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceRecord {
    /// The topic name, relative to the connector's tenant and namespace
    /// (`retail.public.orders`). `None` publishes to the connector's
    /// configured topic.
    pub topic: Option<String>,
    /// The message key; Pulsar routes and Key_Shared-dispatches by it.
    pub key: Option<String>,
    /// The message value. `None` publishes a null value, as Pulsar's clients
    /// do for a record that only names its key (a delete, to compacting
    /// readers and to sinks that delete on a null value).
    pub value: Option<Vec<u8>>,
    /// Message properties.
    pub properties: Vec<(String, String)>,
    /// When the change happened, in milliseconds since the Unix epoch.
    pub event_time_ms: Option<u64>,
    /// The record's sequence, published as `sluice.seq`.
    pub sequence: Option<Sequence>,
    /// What the key and value hold, for consumers that read by schema.
    /// `None` publishes plain bytes.
    pub schema: Option<std::sync::Arc<RecordSchema>>,
}

impl SourceRecord {
    /// The value's length in bytes; 0 for a null value.
    pub fn value_len(&self) -> usize {
        self.value.as_ref().map_or(0, Vec::len)
    }
}

/// The schema of a record whose key and value are both JSON: each described
/// by an Avro record definition, as JSON text (the form in which schema
/// registries, Pulsar's among them, describe JSON data).
///
/// Records of one table share one `Arc`; a new one means the table changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSchema {
    /// The key's definition.
    pub key: String,
    /// The value's definition.
    pub value: String,
}

/// What [`Source::read`] returns: records in source order, and optionally the
/// position the source may resume from once they, and every record before
/// them, are durable.
///
/// A batch with a checkpoint ends a source transaction: under
/// EFFECTIVELY_ONCE the runtime publishes the records from one checkpoint to
/// the next as one unit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceBatch {
    /// The records, in the order they must be published.
    pub records: Vec<SourceRecord>,
    /// The position covered once these records are durable.
    pub checkpoint: Option<Position>,
    /// With a checkpoint: what else the source needs to resume from it, as
    /// text only the source reads (the Postgres source's snapshot
    /// progress). Under EFFECTIVELY_ONCE the runtime commits it with the
    /// records, in the same transaction, and hands the last committed one
    /// back in [`SourceContext::state`]; under the other guarantees the
    /// source keeps it itself when [`Commit::commit`] says the checkpoint
    /// is durable.
    pub state: Option<String>,
}

/// Who published a record, and where it stands in that producer's stream.
///
/// A sequence counts only against the same producer's earlier ones
/// (decision 0016), so the two travel together and a sink asks
/// [`Origin::held`] for the pair it may deduplicate by: it is there only
/// when the producer set a sequence under a name that can be kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    producer: String,
    sequence: Option<Sequence>,
}

impl Origin {
    /// The longest producer name whose sequences are held, in bytes: the
    /// sinks' key columns hold 255 characters with the topic beside it.
    pub const MAX_PRODUCER_NAME: usize = 200;

    /// The producer's name as the broker recorded it, and the record's
    /// `sluice.seq`, if it had one. sluice's sources keep one name across
    /// restarts.
    pub fn new(producer: impl Into<String>, sequence: Option<Sequence>) -> Self {
        Self {
            producer: producer.into(),
            sequence,
        }
    }

    /// The producer's name; empty when the broker recorded none.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// The sequence the producer set, whether or not it is held.
    pub fn sequence(&self) -> Option<Sequence> {
        self.sequence
    }

    /// The producer and sequence the record is held to, when it carries a
    /// sequence and its producer has a name that can be kept (not empty,
    /// at most [`Self::MAX_PRODUCER_NAME`] bytes). Otherwise a sink holds
    /// it to its message id alone.
    pub fn held(&self) -> Option<(&str, Sequence)> {
        let sequence = self.sequence?;
        let named = !self.producer.is_empty() && self.producer.len() <= Self::MAX_PRODUCER_NAME;
        named.then_some((self.producer.as_str(), sequence))
    }
}

/// One record delivered to a sink.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkRecord {
    /// The full topic name the record came from.
    pub topic: String,
    /// The message key, if any.
    pub key: Option<String>,
    /// The message value; `None` when the message had an empty payload
    /// (a tombstone, for `nullValueAction`).
    pub value: Option<Vec<u8>>,
    /// Message properties.
    pub properties: Vec<(String, String)>,
    /// Event time in milliseconds since the Unix epoch, if the producer set one.
    pub event_time_ms: Option<u64>,
    /// When the broker received the message, in milliseconds since the epoch.
    pub publish_time_ms: u64,
    /// The producer that published it and, when the record carries
    /// `sluice.seq`, its place in that producer's stream.
    pub origin: Origin,
    /// The Pulsar message id, assigned by the broker: it grows along a
    /// topic partition.
    pub message_id: MessageId,
    /// The definition of the value's schema, when its producer registered
    /// one: the Avro JSON that Pulsar's schema registry holds for a JSON or
    /// Avro schema, or for the value of a `KEY_VALUE` one. Records of one
    /// schema version share it.
    pub value_schema: Option<std::sync::Arc<str>>,
}

/// Records a sink passed over, by reason. The runtime shows them on
/// `/connectors` and in `/metrics`.
#[derive(Debug, Default)]
pub struct Skips {
    /// Delivered again by the broker after they were applied: their
    /// message id is at or below the last applied one.
    pub redelivered: std::sync::atomic::AtomicU64,
    /// Published again by their producer (a source, after its restart):
    /// their sequence is at or below that producer's last applied one.
    pub republished: std::sync::atomic::AtomicU64,
    /// Passed over on purpose: the sink's filter does not select them.
    pub filtered: std::sync::atomic::AtomicU64,
    /// Delivered by the broker again while the sink held them, received
    /// and not yet acknowledged (passed over before the sink sees them).
    pub delivered_twice: std::sync::atomic::AtomicU64,
}

impl SinkRecord {
    /// The value of a property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The system is unavailable or busy: the same work may succeed later.
    Retryable,
    /// The input is wrong: the same work fails again. A sink's record with
    /// this error is the record's fault: it may be dead-lettered.
    Permanent,
    /// The setup is wrong (a missing privilege or table): no record is at
    /// fault, and every one would fail alike until an operator acts. A sink
    /// stops and is retried with backoff; nothing is dead-lettered.
    Configuration,
}

/// An error from a connector, classified for the retry policy.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ConnectorError {
    /// An error that may go away if the same work is tried again.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
            source: None,
        }
    }

    /// An error that the same work will meet again.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
            source: None,
        }
    }

    /// An error of the setup, which an operator must fix: see
    /// [`ErrorKind::Configuration`].
    pub fn configuration(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Configuration,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Whether retrying can help.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True for [`ErrorKind::Retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }
}

/// How serious a preflight finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The run would work, but something is worth the operator's attention.
    Warning,
    /// The run would fail or break its guarantee.
    Error,
}

/// One preflight finding: what is wrong and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// What is wrong and how to fix it, in one or two sentences.
    pub message: String,
}

impl Finding {
    /// A finding that breaks the run.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
        }
    }

    /// A finding worth attention.
    pub fn warning(message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            message: message.into(),
        }
    }
}

/// A source of records.
///
/// The runtime reads from one task. It polls every `read` it begins to its
/// end: a `read` is never dropped halfway while the source goes on, so a
/// source need not survive being cancelled at an await. Positions found
/// durable meanwhile go to the source's [`Commit`], which works while a
/// `read` is under way. After an error, or when the run stops, the runtime
/// drops any `read` under way, calls [`Source::close`] exactly once and
/// drops the instance; a restart builds a new one, which resumes from the
/// last position committed, or from its own durable state.
pub trait Source: Send {
    /// What commits this source's positions.
    type Committer: Commit;

    /// The source's committer. The runtime takes it once, before its first
    /// `read`.
    fn committer(&self) -> Self::Committer;

    /// The next records, in source order. Waits until at least one record or
    /// a checkpoint is available. `Ok(None)` means the source is exhausted
    /// and the connector is done.
    ///
    /// A source must not let unacknowledged work grow without bound: the
    /// runtime begins no `read` while its in-flight limit is reached, and
    /// the source must then hold back (for Postgres, by not reading the
    /// replication stream).
    fn read(&mut self) -> impl Future<Output = Result<Option<SourceBatch>, ConnectorError>> + Send;

    /// Release resources. Called once; must not fail.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// Commits a source's positions: every record up to the batch that carried
/// `position` is durable under the connector's guarantee, so the source
/// may forget it and confirm the position to its origin. Positions passed
/// here never decrease, only a contiguous durable prefix is ever reported,
/// and one commit ends before the next begins. A commit may come while a
/// `read` of the source is under way.
pub trait Commit: Send + Sync + 'static {
    /// Commit `position`.
    fn commit(&self, position: Position)
    -> impl Future<Output = Result<(), ConnectorError>> + Send;
}

/// The delivery guarantee a connector runs under: `processingGuarantees`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum Guarantee {
    /// Records may be lost, never duplicated.
    #[serde(rename = "ATMOST_ONCE")]
    AtMostOnce,
    /// Records are never lost, may be duplicated.
    #[default]
    #[serde(rename = "ATLEAST_ONCE")]
    AtLeastOnce,
    /// Records are never lost nor applied twice.
    #[serde(rename = "EFFECTIVELY_ONCE")]
    EffectivelyOnce,
}

/// One table's copy in a snapshot, as a source reports it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TableCopy {
    /// `schema.table`.
    pub table: String,
    /// Rows copied (handed to the runtime) so far.
    pub rows: u64,
    /// The rows the table holds, as its statistics estimate them.
    pub estimate: Option<u64>,
    /// Every row is copied.
    pub done: bool,
    /// The chunk being read or waiting for the stream, in words.
    pub chunk: Option<String>,
    /// Rows a second since this table's copy (re)started.
    pub rows_per_second: Option<f64>,
    /// Seconds left at that rate, against the estimate.
    pub eta_seconds: Option<u64>,
}

/// A snapshot in progress, and what it costs the origin meanwhile.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SnapshotReport {
    /// Every table of the snapshot, in copy order.
    pub tables: Vec<TableCopy>,
    /// Bytes of WAL the server keeps for the source's slot.
    pub wal_retained_bytes: Option<u64>,
    /// The slot's `wal_status`: `reserved`, `extended`, `unreserved` or
    /// `lost`.
    pub wal_status: Option<String>,
    /// Bytes of WAL that may still be written before the slot is at risk
    /// (`safe_wal_size`; none without `max_slot_wal_keep_size`).
    pub wal_safe_bytes: Option<i64>,
}

/// Where a source reports its snapshot, for the runtime to show on
/// `/connectors` and in `/metrics`.
#[derive(Debug, Default)]
pub struct SnapshotBoard {
    report: std::sync::Mutex<Option<SnapshotReport>>,
}

impl SnapshotBoard {
    /// The last report; `None` before the source made one (a source that
    /// streams reports its slot's WAL, with no tables when it took no
    /// snapshot).
    pub fn get(&self) -> Option<SnapshotReport> {
        self.report.lock().ok().and_then(|r| r.clone())
    }

    /// Replace the report.
    pub fn set(&self, report: SnapshotReport) {
        if let Ok(mut r) = self.report.lock() {
            *r = Some(report);
        }
    }
}

/// What the runtime tells a source when it opens it.
#[derive(Debug, Clone, Default)]
pub struct SourceContext {
    /// The source's full name, `tenant/namespace/name`.
    pub name: String,
    /// The guarantee the source runs under. Under ATMOST_ONCE nothing may be
    /// published twice, so a source that would repeat work after a crash
    /// (such as an interrupted snapshot) skips it instead.
    pub guarantee: Guarantee,
    /// Under EFFECTIVELY_ONCE, the highest sequence already published, as
    /// the runtime recovered it before opening the source: records at or
    /// below it are skipped, and none above it was published. `None` when
    /// nothing was, or under the other guarantees.
    pub published: Option<Sequence>,
    /// Under EFFECTIVELY_ONCE, the [`SourceBatch::state`] committed last,
    /// as the runtime recovered it; `None` otherwise.
    pub state: Option<String>,
    /// Under EFFECTIVELY_ONCE, true when this instance took over from an
    /// active one that had stopped beating, and fenced it out of the
    /// broker: that instance may still hold what the source reads (for
    /// Postgres, its replication slot's walsender) and cannot publish
    /// anything more, so the source may take it from it.
    pub took_over: bool,
    /// Where the source reports a snapshot's progress.
    pub snapshot: std::sync::Arc<SnapshotBoard>,
}

/// What the runtime tells a sink when it opens it.
#[derive(Debug, Clone, Default)]
pub struct SinkContext {
    /// The sink's full name, `tenant/namespace/name`: it identifies the
    /// sink's progress in its target.
    pub name: String,
    /// The guarantee the sink runs under. Under EFFECTIVELY_ONCE a sink that
    /// can keeps, in the same transaction as the rows, the last record it
    /// applied per topic and partition, and skips records at or below it.
    pub guarantee: Guarantee,
    /// Where the sink counts what it skips, for the runtime to show.
    pub skips: std::sync::Arc<Skips>,
}

/// How a sink wants its records grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// At most this many records per [`Sink::write`].
    pub max_records: usize,
    /// Write a partial batch once its first record has waited this long.
    pub max_wait: Duration,
}

/// A destination for records.
///
/// The runtime calls one instance from one task, one call at a time, and
/// calls [`Sink::close`] exactly once before dropping it.
pub trait Sink: Send {
    /// How to group records for [`Sink::write`].
    fn batch_policy(&self) -> BatchPolicy;

    /// Write records, in order. When it returns `Ok`, every record is durable
    /// in the target (committed, fsynced): the runtime then acknowledges
    /// them and they are never delivered again under EFFECTIVELY_ONCE.
    ///
    /// On `Err`, nothing of the batch may be visible: the runtime retries
    /// the batch after a retryable error, and after a permanent one writes
    /// it again in smaller parts, down to single records, to find the ones
    /// the target rejects. A sink whose target takes records one by one
    /// (an HTTP endpoint) answers [`Written::AllBut`] instead, naming the
    /// records refused, when every other one is durable.
    /// Delivery is at least once, so writes must tolerate a record seen
    /// twice.
    fn write(
        &mut self,
        batch: &[SinkRecord],
    ) -> impl Future<Output = Result<Written, ConnectorError>> + Send;

    /// What makes a batch ready for [`Sink::write_prepared`] away from the
    /// sink: the work that needs no connection (decoding records into
    /// rows). The runtime runs it on another thread for the next batch
    /// while this one is written. `None`, the default: every batch goes
    /// through [`Sink::write`].
    fn preparer(&self) -> Option<std::sync::Arc<dyn Prepare>> {
        None
    }

    /// [`Sink::write`], for a batch the sink's [`Sink::preparer`] made
    /// ready. The same contract; by default it writes as `write` does.
    fn write_prepared(
        &mut self,
        batch: &[SinkRecord],
        prepared: Prepared,
    ) -> impl Future<Output = Result<Written, ConnectorError>> + Send {
        drop(prepared);
        self.write(batch)
    }

    /// Release resources. Called once; must not fail.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// What a [`Sink::write`] made durable.
#[derive(Debug)]
pub enum Written {
    /// Every record of the batch.
    All,
    /// Every record but these, each refused for its own reason and named
    /// by its index in the batch. The runtime treats each as a record the
    /// target rejects (tried alone again, then dead-lettered), and does
    /// not write the others again.
    AllBut(Vec<(usize, ConnectorError)>),
}

/// Makes batches ready to write: see [`Sink::preparer`]. It must not
/// fail: what it cannot read, it keeps as the error to return when the
/// record is written (a record the sink then skips needs no reading).
pub trait Prepare: Send + Sync + 'static {
    /// Make `batch` ready.
    fn prepare(&self, batch: &[SinkRecord]) -> Prepared;
}

/// A batch made ready by a [`Prepare`], for its sink alone to read.
pub struct Prepared(Box<dyn std::any::Any + Send>);

impl Prepared {
    /// Wrap what the sink made.
    pub fn new<T: Send + 'static>(ready: T) -> Self {
        Self(Box::new(ready))
    }

    /// What the sink made, if it is a `T`.
    pub fn take<T: 'static>(self) -> Option<T> {
        self.0.downcast().ok().map(|b| *b)
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

/// A kind of source connector: how a pipeline file names it, how its
/// `configs` are read, and how it opens. The type is the open source itself.
///
/// A connector is registered by one line in `lib.rs`; see decision 0008.
pub trait SourceConnector: Source + std::fmt::Debug + Sized + 'static {
    /// The `className` values that select it: its short name first, then
    /// the Pulsar IO Java class names it stands in for.
    const CLASS_NAMES: &'static [&'static str];
    /// The Pulsar IO connector archives it stands in for, by their built-in
    /// name (`debezium-postgres`): a file without `className` that names
    /// `builtin://debezium-postgres` or `pulsar-io-debezium-postgres-4.0.7.nar`
    /// as its `archive` runs this connector.
    const ARCHIVES: &'static [&'static str] = &[];
    /// True when it picks each record's topic itself, so that `topicName`
    /// is optional.
    const NAMES_ITS_TOPICS: bool = false;
    /// The keys of its `configs`: what [`SourceConnector::configure`]
    /// reads, and what docs/configuration.md lists.
    const KEYS: &'static [Key];
    /// Its validated settings.
    type Config: std::fmt::Debug + Clone + Send + Sync + 'static;

    /// Read and validate `configs`. Pure: no I/O. Every problem is in the
    /// report; a config comes back only when there is no error.
    fn configure(configs: &ConfigMap) -> (Option<Self::Config>, ConfigReport);

    /// What the source reads, in words that stay the same across restarts
    /// and differ between two sources (for Postgres, the database and the
    /// slot). Under EFFECTIVELY_ONCE the runtime records it with the
    /// progress and refuses to resume a source from another's progress,
    /// which would skip its records as published. `None`, the default:
    /// not checked.
    fn origin(config: &Self::Config) -> Option<String> {
        let _ = config;
        None
    }

    /// Connect and get ready to read.
    fn open(
        config: Self::Config,
        context: &SourceContext,
    ) -> impl Future<Output = Result<Self, ConnectorError>> + Send;

    /// What about the source's system would break a run (`sluice check`),
    /// found without changing anything there.
    fn preflight(config: &Self::Config) -> impl Future<Output = Vec<Finding>> + Send;
}

/// A kind of sink connector; see [`SourceConnector`].
pub trait SinkConnector: Sink + std::fmt::Debug + Sized + 'static {
    /// The `className` values that select it: its short name first, then
    /// the Pulsar IO Java class names it stands in for.
    const CLASS_NAMES: &'static [&'static str];
    /// The Pulsar IO connector archives it stands in for; see
    /// [`SourceConnector::ARCHIVES`].
    const ARCHIVES: &'static [&'static str] = &[];
    /// The keys of its `configs`; see [`SourceConnector::KEYS`].
    const KEYS: &'static [Key];
    /// Its validated settings.
    type Config: std::fmt::Debug + Clone + Send + Sync + 'static;

    /// Read and validate `configs`. Pure: no I/O.
    fn configure(configs: &ConfigMap) -> (Option<Self::Config>, ConfigReport);

    /// Connect and get ready to write.
    fn open(
        config: Self::Config,
        context: &SinkContext,
    ) -> impl Future<Output = Result<Self, ConnectorError>> + Send;

    /// What about the sink's target would break a run (`sluice check`),
    /// found without changing anything there.
    fn preflight(config: &Self::Config) -> impl Future<Output = Vec<Finding>> + Send;
}
