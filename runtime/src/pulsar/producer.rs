//! Producers: publishing a source's records, alone or in a transaction.

use std::future::Future;

use futures_util::FutureExt;
use futures_util::future::Either;
use magnetar::OutgoingMessage;
use magnetar::proto::CreateProducerRequest;
use magnetar::proto::pb::ProducerAccessMode;
use magnetar::proto::pb::ServerError;
use magnetar::proto::types::CompressionKind;
use magnetar::runtime_tokio as rt;
use std::sync::Arc;

use sluice_connectors::{RecordSchema, SourceRecord};

use super::bundle::{self, Bundler};
use super::consumer::message_id_text;
use super::{Client, PulsarError, SEQUENCE_PROPERTY, Txn};
use crate::config::{Batching, Compression};

/// A last sequence id at or past this, for a producer name of sluice's,
/// was not sluice's: a million messages a second for 100,000 years stay
/// below it.
const FOREIGN_SEQUENCE: i64 = 1 << 62;

/// Who may publish on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any number of producers.
    Shared,
    /// This producer only; another is refused until it closes.
    Exclusive,
    /// This producer only, at once: the one that held the topic is fenced
    /// out (its sends fail from then on), as Pulsar's
    /// `ExclusiveWithFencing` does.
    Fencing,
}

/// How to build a producer.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Who may publish.
    pub access: Access,
    /// Batching, or `None` for one message per frame.
    pub batching: Option<Batching>,
    /// Batch compression.
    pub compression: Compression,
    /// The producer's name, the same across restarts: a source's full name,
    /// so that sinks hold each source's sequences to its own (decision
    /// 0016), and broker deduplication follows it across restarts. `None`
    /// lets the broker name the producer.
    pub name: Option<String>,
    /// The schema its records are published under; `None` for plain bytes.
    pub schema: Option<Arc<RecordSchema>>,
}

impl ProducerOptions {
    /// A producer of sluice's own small messages (markers, beats, dead
    /// letters): one message per frame, uncompressed, named by the broker,
    /// without a schema.
    pub fn plain(access: Access) -> Self {
        Self {
            access,
            batching: None,
            compression: Compression::None,
            name: None,
            schema: None,
        }
    }
}

/// A record whose value is over this many bytes may go out in chunks
/// (brokers take 5 MiB by default; a broker set lower chunks smaller
/// records), and is sealed before its send counts as done (see
/// [`Producer::publish`]).
const SEAL_OVER: usize = 1 << 20;

/// A producer on one topic.
pub struct Producer {
    inner: rt::Producer,
    /// What opened `inner`, to open it again after a seal.
    client: Client,
    request: CreateProducerRequest,
    options: ProducerOptions,
    /// The schema version the bundler stamps.
    version: Option<u64>,
    /// A seal closed `inner` and could not open it again.
    closed: bool,
    topic: String,
    /// The batch byte limit, when batching.
    batch_bytes: Option<usize>,
    schema: Option<Arc<RecordSchema>>,
    /// With a schema, the batches are sluice's (see [`Bundler`]).
    bundler: Option<Bundler>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn compression_kind(c: Compression) -> CompressionKind {
    match c {
        Compression::None => CompressionKind::None,
        Compression::Lz4 => CompressionKind::Lz4,
        Compression::Zlib => CompressionKind::Zlib,
        Compression::Zstd => CompressionKind::Zstd,
        Compression::Snappy => CompressionKind::Snappy,
    }
}

impl Client {
    /// A producer on `topic`.
    pub async fn producer(
        &self,
        topic: &str,
        options: &ProducerOptions,
    ) -> Result<Producer, PulsarError> {
        // Chunking: a record over the broker's maxMessageSize goes out in
        // chunks that the consumer puts back together, rather than fail to
        // publish (and fail again on every restart). Records under the limit
        // are sent as before.
        let mut request = CreateProducerRequest {
            topic: topic.to_owned(),
            compression: compression_kind(options.compression),
            enable_chunking: true,
            // magnetar does not honour WaitForExclusive (see the decision
            // record): a standby retries Exclusive access instead.
            access_mode: match options.access {
                Access::Shared => ProducerAccessMode::Shared,
                Access::Exclusive => ProducerAccessMode::Exclusive,
                Access::Fencing => ProducerAccessMode::ExclusiveWithFencing,
            },
            producer_name: options.name.clone(),
            schema: options.schema.as_deref().map(super::schema::key_value),
            ..CreateProducerRequest::default()
        };
        // With a schema, compression, or batches by key, sluice batches
        // (see bundle.rs): magnetar compresses each record of its batches
        // on its own, which no consumer (Java's included) can read, and
        // stamps no key on a batch.
        let own_batches = options.schema.is_some()
            || options.batching.is_some_and(|b| b.by_key)
            || (options.batching.is_some() && options.compression != Compression::None);
        if let Some(b) = options.batching.filter(|_| !own_batches) {
            request.enable_batching = true;
            request.max_messages_in_batch = b.max_messages;
            request.max_batch_size_bytes = b.max_bytes.min(SEAL_OVER);
            request.batching_max_publish_delay = Some(b.max_delay);
        }
        let context = || format!("create a producer on {topic}");
        // A partitioned topic would be refused with a broker error that
        // does not say why; say it.
        let partitions = self
            .inner
            .partitioned_topic_metadata(topic)
            .await
            .map_err(|e| PulsarError::new(context(), e))?;
        if partitions > 0 {
            return Err(PulsarError::config(
                context(),
                format!(
                    "the topic is partitioned ({partitions} partitions); sluice publishes to non-partitioned topics"
                ),
            ));
        }
        let inner = self.open_named(request.clone(), options).await?;
        let version = match (&options.schema, own_batches) {
            (Some(schema), true) => self.stamped_version(topic, schema).await,
            _ => None,
        };
        let bundler =
            own_batches.then(|| Bundler::new(inner.clone(), topic, version, batch_limits(options)));
        Ok(Producer {
            batch_bytes: options.batching.map(|b| b.max_bytes.min(SEAL_OVER)),
            inner,
            client: self.clone(),
            request,
            options: options.clone(),
            version,
            closed: false,
            topic: topic.to_owned(),
            schema: options.schema.clone(),
            bundler,
        })
    }

    /// Open the producer `request` describes. A named producer on a
    /// namespace that deduplicates goes on from the last sequence id the
    /// broker recorded for its name: the client would start again at 0,
    /// and the broker would drop those messages as duplicates (decision
    /// 0001). So when the broker reports one, the producer is opened again
    /// from the next.
    async fn open_named(
        &self,
        request: CreateProducerRequest,
        options: &ProducerOptions,
    ) -> Result<rt::Producer, PulsarError> {
        self.open_named_after(request, options)
            .await
            .map(|(producer, _)| producer)
    }

    /// [`Client::open_named`], with the last sequence id the broker
    /// recorded for the name (-1 for none, or without deduplication).
    async fn open_named_after(
        &self,
        request: CreateProducerRequest,
        options: &ProducerOptions,
    ) -> Result<(rt::Producer, i64), PulsarError> {
        let topic = request.topic.clone();
        let open = |request: CreateProducerRequest| async {
            self.inner
                .open_producer(request)
                .await
                .map_err(|e| refused(&topic, options, e))
        };
        let producer = open(request.clone()).await?;
        let last = producer.last_sequence_id_published();
        if request.producer_name.is_none() || last < 0 {
            return Ok((producer, last));
        }
        let _ = producer.close().await;
        if last >= FOREIGN_SEQUENCE {
            // The broker compares sequence ids as signed 64-bit numbers:
            // going on from there would make every message a duplicate,
            // dropped, and its send would never be answered.
            return Err(PulsarError::config(
                format!("create a producer on {topic}"),
                format!(
                    "the broker's last sequence id for the producer name {name} is {last}, more than sluice ever publishes: \
                     another client published under this source's name. Give only the source's role produce on the topic \
                     (docs/guarantees.md, \"What the broker must guard\"); to go on, rename the connector or clear the \
                     topic's deduplication state",
                    name = request.producer_name.as_deref().unwrap_or_default()
                ),
            ));
        }
        open(CreateProducerRequest {
            initial_sequence_id: Some(last.unsigned_abs() + 1),
            ..request
        })
        .await
        .map(|producer| (producer, last))
    }

    /// The version the broker gave `schema`, to stamp on its messages.
    /// Without it the records still go out, and typed consumers still read
    /// them; consumers that decode by version read them as bytes, which the
    /// warning says.
    async fn stamped_version(&self, topic: &str, schema: &RecordSchema) -> Option<u64> {
        match self.schema_version(topic, schema).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(topic, error = %e,
                    "messages will not carry their schema version: consumers that decode by version (AUTO_CONSUME, Functions, IO sinks) read them as bytes; set pulsar.webServiceUrl");
                None
            }
        }
    }
}

/// Why the broker refused a producer, saying what to do when it is the
/// table's schema.
fn refused(topic: &str, options: &ProducerOptions, e: rt::ClientError) -> PulsarError {
    let context = format!("create a producer on {topic}");
    let text = e.to_string();
    if options.schema.is_some() && text.contains("ncompatible") {
        PulsarError::config(
            context,
            format!(
                "the broker refused the table's schema: {text}. The namespace's schema compatibility strategy does not allow this change; \
                 set the strategy (pulsar-admin namespaces set-schema-compatibility-strategy), or publish plain bytes with schemaType: BYTES"
            ),
        )
    } else if matches!(&e, rt::ClientError::Broker { code, .. }
        if *code == ServerError::ProducerBusy as i32 || *code == ServerError::ProducerFenced as i32)
    {
        PulsarError::held_elsewhere(context, e.to_string())
    } else {
        PulsarError::new(context, e)
    }
}

/// A bundler's limits: the batching settings, or batches of one record.
fn batch_limits(options: &ProducerOptions) -> bundle::Limits {
    options.batching.map_or(
        bundle::Limits {
            max_messages: 1,
            max_bytes: 0,
            max_delay: std::time::Duration::ZERO,
            by_key: false,
        },
        |b| bundle::Limits {
            max_messages: b.max_messages,
            max_bytes: b.max_bytes.min(SEAL_OVER),
            max_delay: b.max_delay,
            by_key: b.by_key,
        },
    )
}

/// The outcome of one publish: the message id as text.
pub type SendResult = Result<String, PulsarError>;

impl Producer {
    /// Hand `record` to the broker, inside `txn` when one is given; the
    /// returned future resolves when the broker has persisted it, or with
    /// the reason it did not.
    ///
    /// A record large enough to go out in chunks is waited for here, and
    /// sealed: magnetar answers a chunked send on its first chunk's
    /// receipt, while the rest may still be on their way, so a transaction
    /// committed (or a position confirmed) then could leave the record
    /// without its last chunks. The broker answers a producer's close only
    /// once every publish it received is persisted, so the producer is
    /// closed and opened again before the send counts as done. Records
    /// after it wait for the seal, and so keep their order. A producer a
    /// seal could not open again is opened before the next record.
    pub async fn publish(
        &mut self,
        record: SourceRecord,
        txn: Option<&Txn>,
    ) -> impl Future<Output = SendResult> + Send + 'static {
        let done = |result| Either::Right(futures_util::future::ready(result));
        if self.closed
            && let Err(e) = self.reopen().await
        {
            return done(Err(e));
        }
        if record.value_len() <= SEAL_OVER {
            return Either::Left(self.send_in(record, txn));
        }
        let connection = self.inner.last_disconnected_timestamp();
        let sending = self.send_in(record, txn);
        let sequence = self.inner.last_sequence_id();
        done(match sending.await {
            Ok(id) => self.seal(connection, sequence).await.map(|()| id),
            Err(e) => Err(e),
        })
    }

    /// Close the producer once all it sent is persisted, and open it again.
    /// The chunked record (sequence id `sequence`) is then whole, unless
    /// chunks were dropped on the way: after a reconnect (`connection` is
    /// when the connection last went down before the send), or a broker
    /// that closed the producer meanwhile, which the broker's last sequence
    /// id for the name shows where it deduplicates. magnetar does not send
    /// them again, so the send fails rather than counting as done.
    async fn seal(
        &mut self,
        connection: Option<std::time::SystemTime>,
        sequence: i64,
    ) -> Result<(), PulsarError> {
        let context = format!("publish a chunked record to {}", self.topic);
        let closing = self.inner.clone();
        self.closed = true;
        let closed = async {
            closing.flush().await?;
            closing.close().await
        }
        .await;
        let reconnected = self.inner.last_disconnected_timestamp() != connection;
        let persisted = self.reopen().await?;
        closed.map_err(|e| PulsarError::new(context.clone(), e))?;
        if reconnected || (0..sequence).contains(&persisted) {
            return Err(PulsarError::from_message(format!(
                "{context}: some of its chunks may not have reached the broker (it reconnected, or closed the producer, meanwhile); it is sent again"
            )));
        }
        Ok(())
    }

    /// Open the producer again, with its bundler; the broker's last
    /// sequence id for its name (-1 for none).
    async fn reopen(&mut self) -> Result<i64, PulsarError> {
        let (inner, last) = self
            .client
            .open_named_after(self.request.clone(), &self.options)
            .await?;
        if self.bundler.is_some() {
            self.bundler = Some(Bundler::new(
                inner.clone(),
                &self.topic,
                self.version,
                batch_limits(&self.options),
            ));
        }
        self.inner = inner;
        self.closed = false;
        Ok(last)
    }

    /// Queue a record for publishing. The returned future resolves when the
    /// broker has persisted it, or with the reason it did not. For records
    /// small enough never to go out in chunks (markers, intents); any
    /// other goes through [`Producer::publish`].
    pub fn send(&self, record: SourceRecord) -> impl Future<Output = SendResult> + Send + 'static {
        self.send_in(record, None)
    }

    /// [`Producer::send`], inside a transaction when one is given.
    pub fn send_in(
        &self,
        record: SourceRecord,
        txn: Option<&Txn>,
    ) -> impl Future<Output = SendResult> + Send + 'static {
        if let Some(bundler) = &self.bundler {
            return Either::Left(bundler.send(record, txn.map(|t| t.id)));
        }
        let payload_len = record.value_len();
        let null_value = record.value.is_none();
        let mut msg = OutgoingMessage::with_payload(record.value.unwrap_or_default());
        if let Some(txn) = txn {
            msg = msg.txn(txn.id);
        }
        if let Some(key) = record.key {
            msg = msg.key(key);
        }
        if let Some(t) = record.event_time_ms {
            msg = msg.event_time_ms(t);
        }
        for (k, v) in record.properties {
            msg = msg.property(k, v);
        }
        if let Some(seq) = record.sequence {
            msg = msg.property(SEQUENCE_PROPERTY, seq.to_string());
        }
        // magnetar sends a message that does not fit the open batch on its
        // own, ahead of that batch (decision record 0001). Flush the batch
        // first so that publish order stays record order. The first poll of
        // `flush` hands the batch to the connection; its wait for receipts
        // is not needed here.
        if let Some(limit) = self.batch_bytes
            && self.inner.batch_len() > 0
            && self.inner.batch_bytes() + payload_len > limit
        {
            let _ = self.inner.flush().now_or_never();
        }
        let mut outgoing: magnetar::proto::producer::OutgoingMessage = msg.into();
        if null_value {
            outgoing.metadata.null_value = Some(true);
        }
        let fut = self.inner.send(outgoing);
        let topic = self.topic.clone();
        Either::Right(async move {
            fut.await
                .map(|id| message_id_text(&id))
                .map_err(|e| PulsarError::new(format!("publish to {topic}"), e))
        })
    }

    /// The topic this producer publishes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether records of `schema` may go out on this producer: it was
    /// opened with the same schema (or both have none). A schema equal in
    /// content but held elsewhere is adopted, so that the next check is a
    /// pointer comparison.
    pub fn publishes(&mut self, schema: Option<&Arc<RecordSchema>>) -> bool {
        match (&self.schema, schema) {
            (None, None) => true,
            (Some(mine), Some(theirs)) if Arc::ptr_eq(mine, theirs) => true,
            (Some(mine), Some(theirs)) if mine == theirs => {
                self.schema = Some(Arc::clone(theirs));
                true
            }
            _ => false,
        }
    }

    /// Publish what is batched and close.
    pub async fn close(self) {
        if let Some(bundler) = &self.bundler {
            bundler.close_open();
        }
        let _ = self.inner.flush().await;
        let _ = self.inner.close().await;
    }
}
