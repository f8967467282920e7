//! Consumers: a sink's records from its input topics, and their
//! acknowledgements.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use magnetar::MessageId;
use magnetar::proto::SubscribeRequest;
use magnetar::proto::pb::command_subscribe::{InitialPosition, SubType};
use magnetar::runtime_tokio as rt;
use sluice_connectors::{Origin, Sequence, SinkRecord};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{info, warn};

use self::mixed_keys::MixedKeys;
use super::unreadable::{self, Inspector};
use super::value_schemas::ValueSchemas;
use super::{Client, PulsarError, SEQUENCE_PROPERTY};
use super::{codecs, inflate};
use crate::config::{MissingTopics, SubscriptionPosition, SubscriptionType};

impl Client {
    /// A consumer over `topics`, on one subscription. A topic that does not
    /// exist is never created by subscribing to it: under
    /// [`MissingTopics::Wait`] the consumer reads the others and
    /// [`Consumer::follow`] picks it up once it exists; under
    /// [`MissingTopics::Fail`] this fails, naming it.
    pub async fn consumer(
        &self,
        topics: &[String],
        options: &ConsumerOptions,
    ) -> Result<Consumer, PulsarError> {
        if topics.is_empty() {
            return Err(PulsarError::config("subscribe", "no input topic"));
        }
        let (tx, rx) = mpsc::channel(options.receiver_queue);
        let budget = options.held_bytes.map(|b| {
            let b = usize::try_from(b.min(u64::from(u32::MAX))).unwrap_or(usize::MAX);
            (Arc::new(Semaphore::new(b)), b)
        });
        let admin = self
            .web_url()
            .and_then(|base| self.admin_get(&base).ok())
            .map(Arc::new);
        let mut consumer = Consumer {
            client: self.clone(),
            options: options.clone(),
            consumers: Vec::with_capacity(topics.len()),
            missing: Vec::new(),
            rx,
            tx,
            budget,
            admin,
            forwarders: Vec::with_capacity(topics.len()),
        };
        let started = options.started.lock().map(|s| s.clone()).ok().flatten();
        for topic in topics {
            // A topic that did not exist when the sink first subscribed is
            // read from its start: nothing published on it since is missed.
            let position = match &started {
                Some(known) if !known.contains(topic) => SubscriptionPosition::Earliest,
                _ => options.position,
            };
            if !consumer.subscribe(topic, position).await? {
                match options.missing {
                    MissingTopics::Fail => {
                        return Err(PulsarError::config(
                            format!("subscribe {} on {topic}", options.subscription),
                            "the topic does not exist, and sluice does not create input topics: \
                             create it (pulsar-admin topics create, or create-partitioned-topic), \
                             or set missingTopics: WAIT to read the other inputs meanwhile",
                        ));
                    }
                    MissingTopics::Wait => {
                        warn!(topic = %topic, subscription = %options.subscription,
                            "an input topic does not exist; reading the others, and this one from its start once it is created");
                        consumer.missing.push(topic.clone());
                    }
                }
            }
        }
        if let Ok(mut known) = options.started.lock()
            && known.is_none()
        {
            *known = Some(consumer.consumers.iter().map(|(t, _)| t.clone()).collect());
        }
        Ok(consumer)
    }
}

/// Whether subscribing failed because the topic does not exist.
fn not_found(e: &rt::ClientError) -> bool {
    matches!(e, rt::ClientError::Broker { code, .. }
        if *code == magnetar::proto::pb::ServerError::TopicNotFound as i32)
}

/// How to build a consumer.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The subscription name.
    pub subscription: String,
    /// Its type.
    pub subscription_type: SubscriptionType,
    /// Where a new subscription starts.
    pub position: SubscriptionPosition,
    /// Messages buffered ahead of the sink, per input topic, at most.
    pub receiver_queue: usize,
    /// Payload bytes received and not yet released (see [`Received::held`])
    /// across all input topics, at most; `None`: no byte limit. A message
    /// larger than the limit still passes, alone.
    pub held_bytes: Option<u64>,
    /// Payload bytes the client prefetches per input topic, about: the
    /// receiver queue holds as many messages as this at the average size
    /// seen so far, at least one.
    pub prefetch_bytes: Option<u64>,
    /// Delay before a negatively acknowledged message comes back.
    pub nack_delay: Duration,
    /// Redeliver what is not acknowledged within this time.
    pub ack_timeout: Option<Duration>,
    /// The consumer name; Failover picks the active consumer by it.
    pub consumer_name: Option<String>,
    /// What to do about an input topic that does not exist.
    pub missing: MissingTopics,
    /// The topics subscribed when the sink first subscribed, shared by its
    /// runs: any other topic is new since, and is read from its start.
    pub started: Arc<std::sync::Mutex<Option<HashSet<String>>>>,
}

/// Identifies a received message for acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckHandle {
    consumer: usize,
    id: MessageId,
}

/// A received message: the record and what acknowledges it.
#[derive(Debug)]
pub struct Received<H = AckHandle> {
    /// The record, for the sink.
    pub record: SinkRecord,
    /// For [`Consumer::ack`] and [`Consumer::nack`].
    pub handle: H,
    /// How often the broker delivered it before.
    pub redelivery_count: u32,
    /// The message's share of [`ConsumerOptions::held_bytes`], given back
    /// when this is dropped: keep it until the message is acknowledged.
    pub held: Option<OwnedSemaphorePermit>,
}

/// How long a record's chunks may take to come in whole.
const CHUNKED_MESSAGE_PATIENCE: Duration = Duration::from_secs(600);

/// The largest message a broker takes by default (`maxMessageSize`); a
/// larger record travels in chunks of at most this size, each taking a
/// permit of the receiver queue.
const BROKER_MAX_MESSAGE: u64 = 5 << 20;

/// The receiver queue of each input topic: `receiver_queue` messages, or
/// under a byte budget as many of the largest messages as it holds, at
/// least one. The queue is fixed for the subscription's life: the broker
/// holds the permits it was given, so a queue that grew on small messages
/// could fill with large ones.
fn prefetch(options: &ConsumerOptions) -> usize {
    match options.prefetch_bytes {
        None => options.receiver_queue,
        Some(bytes) => usize::try_from(bytes / BROKER_MAX_MESSAGE)
            .unwrap_or(usize::MAX)
            .clamp(1, options.receiver_queue.max(1)),
    }
}

/// A consumer over one or more topics on one subscription.
pub struct Consumer {
    client: Client,
    options: ConsumerOptions,
    consumers: Vec<(String, rt::Consumer)>,
    /// Input topics that did not exist when last tried.
    missing: Vec<String>,
    rx: mpsc::Receiver<Result<Received, PulsarError>>,
    tx: mpsc::Sender<Result<Received, PulsarError>>,
    budget: Option<(Arc<Semaphore>, usize)>,
    admin: Option<Arc<super::admin::Get>>,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

/// What [`Consumer::follow`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// The consumer reads every topic of the list that exists.
    Current,
    /// A topic it reads is no longer in the list: subscribe again.
    Removed,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics: Vec<&str> = self.consumers.iter().map(|(t, _)| t.as_str()).collect();
        f.debug_struct("Consumer")
            .field("topics", &topics)
            .finish_non_exhaustive()
    }
}

/// Move one topic's messages, with the definitions of the schemas they were
/// written with, into the shared channel until either side ends, or until
/// the topic holds an entry the client cannot read.
async fn forward(
    index: usize,
    topic: String,
    consumer: rt::Consumer,
    tx: mpsc::Sender<Result<Received, PulsarError>>,
    budget: Option<(Arc<Semaphore>, usize)>,
    (mut inspector, mut schemas): (Inspector, ValueSchemas),
    key_shared: bool,
) {
    let mut mixed = key_shared.then(MixedKeys::default);
    loop {
        let Ok(next) = tokio::time::timeout(unreadable::IDLE, consumer.receive()).await else {
            match inspector.check(&consumer).await {
                Some(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                None => continue,
            }
        };
        let item = match next {
            Ok(msg) => {
                if let Some(m) = &mut mixed {
                    let key = msg.single_metadata.as_ref().and_then(|s| {
                        s.ordering_key
                            .as_deref()
                            .or(s.partition_key.as_deref().map(str::as_bytes))
                    });
                    if m.first_mixed(&msg.message_id, key) {
                        warn!(topic = %topic, "this topic holds batches of several keys: under Key_Shared (retainKeyOrdering) the broker hands each batch to one process by its first key, so one key's messages can reach two processes and be applied out of order; have its producers batch by key (a sluice source: producerConfig.batchBuilder: KEY_BASED; Java: BatcherBuilder.KEY_BASED) or not batch");
                    }
                }
                // Unacknowledged, the message comes again after a failure.
                let schema = match schemas
                    .value_schema(msg.metadata.schema_version.as_ref())
                    .await
                {
                    Ok(schema) => schema,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let mut r = match received(index, &topic, msg) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                r.record.value_schema = schema;
                if let Some((budget, limit)) = &budget {
                    let size = r.record.value.as_ref().map_or(0, Vec::len).clamp(1, *limit);
                    // Wait here, with the client's queue as the only buffer,
                    // until enough of what is held is acknowledged.
                    match Arc::clone(budget).acquire_many_owned(size as u32).await {
                        Ok(permit) => r.held = Some(permit),
                        Err(_) => return,
                    }
                }
                Ok(r)
            }
            Err(e) => Err(PulsarError::new(format!("receive from {topic}"), e)),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// The message id sluice's connectors see.
pub(super) fn message_id(id: &MessageId) -> sluice_connectors::api::MessageId {
    sluice_connectors::api::MessageId {
        ledger: id.ledger_id,
        entry: id.entry_id,
        partition: id.partition,
        batch: id.batch_index,
    }
}

/// `ledger:entry:partition:batch`.
pub(super) fn message_id_text(id: &MessageId) -> String {
    message_id(id).to_string()
}

/// The largest message in chunks that a sink inflates.
const CHUNKED_INFLATED_MAX: usize = 128 << 20;

/// A message that came in compressed chunks, inflated whole now that the
/// client has put it together (decision 0019).
fn inflate_chunked(
    topic: &str,
    msg: &mut magnetar::proto::IncomingMessage,
) -> Result<(), PulsarError> {
    let Some(at) = msg
        .metadata
        .properties
        .iter()
        .position(|p| p.key == inflate::CHUNKS_COMPRESSED)
    else {
        return Ok(());
    };
    let mark = std::sync::Arc::make_mut(&mut msg.metadata)
        .properties
        .remove(at)
        .value;
    let fail = |e: String| {
        PulsarError::new(
            format!("receive from {topic}"),
            format!(
                "the message {} came in chunks compressed as one, and {e}",
                message_id_text(&msg.message_id)
            ),
        )
    };
    let (codec, size) = mark
        .split_once(':')
        .and_then(|(c, n)| {
            Some((
                magnetar::proto::pb::CompressionType::try_from(c.parse::<i32>().ok()?).ok()?,
                n.parse::<usize>().ok()?,
            ))
        })
        .ok_or_else(|| fail(format!("its codec is unreadable ({mark})")))?;
    let payload = codecs::decompress(codec, &msg.payload, size, CHUNKED_INFLATED_MAX)
        .map_err(|e| fail(format!("it does not decompress: {e}")))?;
    msg.payload = payload.into();
    Ok(())
}

/// Turn a delivered message into a [`SinkRecord`]. A batched message
/// carries its key, properties and event time in its single-message
/// metadata.
fn received(
    index: usize,
    topic: &str,
    mut msg: magnetar::proto::IncomingMessage,
) -> Result<Received, PulsarError> {
    if msg.single_metadata.is_none() {
        inflate_chunked(topic, &mut msg)?;
    }
    // magnetar hands a batch of one over without unpacking it: the payload is
    // still the batch container. Unpack it here (decision record 0001).
    if msg.single_metadata.is_none()
        && msg.metadata.num_messages_in_batch == Some(1)
        && let Some((single, body)) = unpack_single(&msg.payload)
    {
        msg.payload = body;
        msg.single_metadata = Some(single);
    }
    let (key, key_b64, props, event_time) = match &msg.single_metadata {
        Some(single) => (
            single.partition_key.clone(),
            single.partition_key_b64_encoded,
            &single.properties,
            single.event_time,
        ),
        None => (
            msg.metadata.partition_key.clone(),
            msg.metadata.partition_key_b64_encoded,
            &msg.metadata.properties,
            msg.metadata.event_time,
        ),
    };
    let key = key.map(|k| {
        if key_b64 == Some(true) {
            key_text(k)
        } else {
            k
        }
    });
    let properties: Vec<(String, String)> = props
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let sequence = properties
        .iter()
        .find(|(k, _)| k == SEQUENCE_PROPERTY)
        .and_then(|(_, v)| v.parse::<Sequence>().ok());
    let empty = msg.payload.is_empty()
        || msg
            .single_metadata
            .as_ref()
            .and_then(|s| s.null_value)
            .unwrap_or(false);
    Ok(Received {
        record: SinkRecord {
            topic: topic.to_owned(),
            key,
            value: (!empty).then(|| msg.payload.to_vec()),
            properties,
            event_time_ms: event_time.filter(|t| *t > 0),
            publish_time_ms: msg.metadata.publish_time,
            origin: Origin::new(msg.metadata.producer_name.as_str(), sequence),
            message_id: message_id(&msg.message_id),
            value_schema: None,
        },
        handle: AckHandle {
            consumer: index,
            id: msg.message_id,
        },
        redelivery_count: msg.redelivery_count,
        held: None,
    })
}

/// A key sent as base64 (a `KEY_VALUE` schema's key, as Pulsar's Java
/// producers and Debezium source send it): its text when it decodes to
/// UTF-8, such as a JSON key; else the base64 as sent.
pub(crate) fn key_text(b64: String) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or(b64)
}

/// Split a batch container holding one message into its single-message
/// metadata and payload: `[u32 size][SingleMessageMetadata][payload]`.
pub(crate) fn unpack_single(
    container: &bytes::Bytes,
) -> Option<(magnetar::proto::pb::SingleMessageMetadata, bytes::Bytes)> {
    use prost::Message as _;
    let size = u32::from_be_bytes(container.get(0..4)?.try_into().ok()?) as usize;
    let meta_end = 4usize.checked_add(size)?;
    let single =
        magnetar::proto::pb::SingleMessageMetadata::decode(container.get(4..meta_end)?).ok()?;
    let body_end = meta_end.checked_add(usize::try_from(single.payload_size).ok()?)?;
    (body_end <= container.len()).then(|| (single, container.slice(meta_end..body_end)))
}

impl Consumer {
    /// Subscribe to `topic` and forward its messages; `false` when the topic
    /// does not exist. The subscription never creates it.
    async fn subscribe(
        &mut self,
        topic: &str,
        position: SubscriptionPosition,
    ) -> Result<bool, PulsarError> {
        let options = &self.options;
        let request = SubscribeRequest {
            topic: topic.to_owned(),
            subscription: options.subscription.clone(),
            sub_type: match options.subscription_type {
                SubscriptionType::Failover => SubType::Failover,
                SubscriptionType::KeyShared => SubType::KeyShared,
                SubscriptionType::Shared => SubType::Shared,
            },
            initial_position: match position {
                SubscriptionPosition::Latest => InitialPosition::Latest,
                SubscriptionPosition::Earliest => InitialPosition::Earliest,
            },
            negative_ack_redelivery_delay: Some(options.nack_delay),
            receiver_queue_size: prefetch(options),
            consumer_name: options.consumer_name.clone(),
            ack_timeout: options.ack_timeout,
            force_topic_creation: Some(false),
            // A large record's chunks come in as the sink frees room; a
            // slow target can hold them back longer than the client's
            // default minute, after which it would drop the chunks it has.
            expire_time_of_incomplete_chunked_message: Some(CHUNKED_MESSAGE_PATIENCE),
            ..SubscribeRequest::default()
        };
        let consumer = match self.client.inner.subscribe(request).await {
            Ok(c) => c,
            Err(e) if not_found(&e) => return Ok(false),
            Err(e) => {
                return Err(PulsarError::new(
                    format!("subscribe {} on {topic}", options.subscription),
                    e,
                ));
            }
        };
        let index = self.consumers.len();
        let inspector = Inspector::new(self.admin.clone(), topic, &options.subscription);
        let schemas = ValueSchemas::new(self.admin.clone(), topic);
        self.forwarders.push(tokio::spawn(forward(
            index,
            topic.to_owned(),
            consumer.clone(),
            self.tx.clone(),
            self.budget.clone(),
            (inspector, schemas),
            options.subscription_type == SubscriptionType::KeyShared,
        )));
        self.consumers.push((topic.to_owned(), consumer));
        Ok(true)
    }

    /// Bring the consumer to `topics`, the sink's inputs as they resolve
    /// now: subscribe, from their start, to topics new in the list (a
    /// partition added, a topic matching `topicsPattern`) and to missing
    /// ones that now exist. A topic it reads that left the list asks for a
    /// new subscription.
    pub async fn follow(&mut self, topics: &[String]) -> Result<Followed, PulsarError> {
        let listed: HashSet<&str> = topics.iter().map(String::as_str).collect();
        if self
            .consumers
            .iter()
            .map(|(t, _)| t)
            .chain(&self.missing)
            .any(|t| !listed.contains(t.as_str()))
        {
            return Ok(Followed::Removed);
        }
        for topic in std::mem::take(&mut self.missing) {
            if self
                .subscribe(&topic, SubscriptionPosition::Earliest)
                .await?
            {
                info!(topic = %topic, subscription = %self.options.subscription,
                    "a missing input topic exists now; reading it from its start");
            } else {
                self.missing.push(topic);
            }
        }
        let known: HashSet<String> = self
            .consumers
            .iter()
            .map(|(t, _)| t.clone())
            .chain(self.missing.iter().cloned())
            .collect();
        for topic in topics.iter().filter(|t| !known.contains(*t)) {
            if self
                .subscribe(topic, SubscriptionPosition::Earliest)
                .await?
            {
                info!(topic = %topic, subscription = %self.options.subscription,
                    "a new input topic; reading it from its start");
            } else {
                self.missing.push(topic.clone());
            }
        }
        Ok(Followed::Current)
    }

    /// The topics it reads.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.consumers.iter().map(|(t, _)| t.as_str())
    }

    /// The next message from any input topic. Cancel-safe.
    pub async fn receive(&mut self) -> Result<Received, PulsarError> {
        match self.rx.recv().await {
            Some(item) => item,
            None => Err(PulsarError::new("receive", "the consumer is closed")),
        }
    }

    /// A message if one is already waiting.
    pub fn try_receive(&mut self) -> Option<Result<Received, PulsarError>> {
        self.rx.try_recv().ok()
    }

    /// Acknowledge messages, each on its own: the broker will not deliver
    /// them again. Never cumulatively, even on a Failover subscription: the
    /// client takes in entries it does not hand over (a compressed batch
    /// it cannot read, the first chunk of a record still coming in), which
    /// a cumulative acknowledgement of a later message would take with it.
    pub async fn ack(&self, handles: &[AckHandle]) -> Result<(), PulsarError> {
        for (index, (topic, consumer)) in self.consumers.iter().enumerate() {
            let ids: Vec<MessageId> = handles
                .iter()
                .filter(|h| h.consumer == index)
                .map(|h| h.id)
                .collect();
            if !ids.is_empty() {
                consumer
                    .ack_batch(ids)
                    .await
                    .map_err(|e| PulsarError::new(format!("acknowledge on {topic}"), e))?;
            }
        }
        Ok(())
    }

    /// Stop receiving and close the subscription's consumers. Messages
    /// received and not acknowledged are delivered again later.
    pub async fn close(self) {
        for f in &self.forwarders {
            f.abort();
        }
        for (_, consumer) in self.consumers {
            let _ = consumer.close().await;
        }
    }
}

mod mixed_keys;
#[cfg(test)]
mod tests;
