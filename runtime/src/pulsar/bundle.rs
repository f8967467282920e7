//! Batches that carry their schema version, and are compressed whole.
//!
//! A consumer that decodes by schema (Java's `AUTO_CONSUME`, Pulsar
//! Functions and IO sinks, Pulsar SQL) reads each message with the schema
//! version stamped on it, and reads a message without one as bytes.
//! magnetar stamps no version on the batches it builds, and compresses
//! each of their records on its own, which no Pulsar consumer reads. So a
//! producer with a schema or with compression builds its own batches: the
//! records sent one after another on a topic are packed into one batch
//! message (Pulsar's batch format: each record's single-message metadata,
//! then its payload), stamped with the version, and handed to magnetar as
//! a message of that many records, which it compresses whole.
//!
//! A batch closes as magnetar's do: when it is full (`batchingMaxMessages`
//! or `batchingMaxBytes`), when a record of another transaction comes, when
//! it has been open `batchingMaxPublishDelayMs`, or when the producer
//! closes (decision 0011). Under `batchBuilder: KEY_BASED` it closes too
//! when a record of another key comes, and carries its key: a Key_Shared
//! broker hands a batch to the consumer of its key, and a batch of several
//! keys would take the others where they do not belong.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Either, Shared};
use magnetar::proto::TxnId;
use magnetar::proto::pb;
use magnetar::proto::producer::OutgoingMessage;
use magnetar::runtime_tokio as rt;
use prost::Message as _;
use sluice_connectors::SourceRecord;
use tokio::sync::oneshot;

use super::consumer::message_id_text;
use super::{PulsarError, SEQUENCE_PROPERTY, SendResult};

type Outcome = Shared<BoxFuture<'static, SendResult>>;

/// Packs a topic's records into batches stamped with a schema version.
#[derive(Clone)]
pub(super) struct Bundler {
    inner: rt::Producer,
    topic: Arc<str>,
    /// The schema version, as the 8 bytes Pulsar stamps; `None` when it
    /// could not be learnt.
    version: Option<Bytes>,
    limits: Limits,
    open: Arc<Mutex<Open>>,
}

/// When a batch closes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_messages: usize,
    pub(super) max_bytes: usize,
    pub(super) max_delay: std::time::Duration,
    /// A batch holds records of one key, and carries it.
    pub(super) by_key: bool,
}

/// The batch being filled, if any.
#[derive(Default)]
struct Open {
    batch: Option<Batch>,
    next_id: u64,
    /// The last batch's size: the next one's buffer starts at it, rather
    /// than growing (and copying) from nothing up to a full batch.
    last_len: usize,
}

struct Batch {
    id: u64,
    payload: BytesMut,
    count: usize,
    txn: Option<TxnId>,
    /// Its records' key, when batches are by key.
    key: Option<String>,
    /// Where the batch's outcome goes, once sent.
    done: oneshot::Sender<SendResult>,
    /// The outcome, for each of its records.
    outcome: Outcome,
}

impl Bundler {
    /// Batches for `inner`, a producer opened without batching, stamped
    /// with schema version `version`.
    pub(super) fn new(
        inner: rt::Producer,
        topic: &str,
        version: Option<u64>,
        limits: Limits,
    ) -> Self {
        Self {
            inner,
            topic: topic.into(),
            version: version.map(|v| Bytes::copy_from_slice(&v.to_be_bytes())),
            limits: Limits {
                max_messages: limits.max_messages.max(1),
                ..limits
            },
            open: Arc::default(),
        }
    }

    /// Queue `record`; the future resolves with its batch's outcome.
    pub(super) fn send(
        &self,
        record: SourceRecord,
        txn: Option<TxnId>,
    ) -> Either<Outcome, BoxFuture<'static, SendResult>> {
        let (metadata, value) = parts(record);
        let metadata_len = metadata.encoded_len();
        let size = 4 + metadata_len + value.len();
        let mut open = self.lock();
        if let Some(batch) = &open.batch
            && (batch.txn != txn
                || batch.count >= self.limits.max_messages
                || batch.payload.len() + size > self.limits.max_bytes
                || (self.limits.by_key && batch.key != metadata.partition_key))
        {
            self.close(&mut open);
        }
        // A record over the batch size goes out alone, after what came
        // before it (and in chunks, when it is over the broker's limit).
        if size > self.limits.max_bytes {
            drop(open);
            return Either::Right(self.send_alone(metadata, value, txn));
        }
        let batch = match &mut open.batch {
            Some(batch) => batch,
            None => {
                let id = open.next_id;
                open.next_id += 1;
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(this.limits.max_delay).await;
                    this.close_if_open(id);
                });
                let (done, outcome) = oneshot::channel();
                let topic = Arc::clone(&self.topic);
                let capacity = open.last_len.max(size).min(self.limits.max_bytes);
                open.batch.insert(Batch {
                    id,
                    payload: BytesMut::with_capacity(capacity),
                    count: 0,
                    txn,
                    key: metadata
                        .partition_key
                        .clone()
                        .filter(|_| self.limits.by_key),
                    done,
                    outcome: outcome
                        .map(move |sent| {
                            sent.unwrap_or_else(|_| {
                                Err(PulsarError::from_message(format!(
                                    "publish to {topic}: the producer closed with the batch unsent"
                                )))
                            })
                        })
                        .boxed()
                        .shared(),
                })
            }
        };
        let len = u32::try_from(metadata_len).unwrap_or(u32::MAX);
        batch.payload.extend_from_slice(&len.to_be_bytes());
        // Encoding into a growable buffer cannot fail.
        let _ = metadata.encode(&mut batch.payload);
        batch.payload.extend_from_slice(&value);
        batch.count += 1;
        let outcome = batch.outcome.clone();
        drop(open);
        Either::Left(outcome)
    }

    fn send_alone(
        &self,
        single: pb::SingleMessageMetadata,
        value: Vec<u8>,
        txn: Option<TxnId>,
    ) -> BoxFuture<'static, SendResult> {
        let metadata = pb::MessageMetadata {
            partition_key: single.partition_key,
            partition_key_b64_encoded: single.partition_key_b64_encoded,
            properties: single.properties,
            event_time: single.event_time,
            schema_version: self.version.clone(),
            ..pb::MessageMetadata::default()
        };
        let payload = Bytes::from(value);
        self.publish(OutgoingMessage {
            uncompressed_size: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            payload,
            metadata,
            num_messages: 1,
            txn_id: txn,
            source_message_id: None,
        })
    }

    fn publish(&self, message: OutgoingMessage) -> BoxFuture<'static, SendResult> {
        let sent = self.inner.send(message);
        let topic = Arc::clone(&self.topic);
        async move {
            sent.await
                .map(|id| message_id_text(&id))
                .map_err(|e| PulsarError::new(format!("publish to {topic}"), e))
        }
        .boxed()
    }

    /// Send the open batch now.
    pub(super) fn close_open(&self) {
        let mut open = self.lock();
        self.close(&mut open);
    }

    /// Send batch `id` now, unless it has gone already.
    fn close_if_open(&self, id: u64) {
        let mut open = self.lock();
        if open.batch.as_ref().is_some_and(|b| b.id == id) {
            self.close(&mut open);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hand the open batch to magnetar, in order after those before it.
    fn close(&self, open: &mut Open) {
        let Some(batch) = open.batch.take() else {
            return;
        };
        open.last_len = batch.payload.len();
        let count = i32::try_from(batch.count).unwrap_or(i32::MAX);
        let metadata = pb::MessageMetadata {
            num_messages_in_batch: Some(count),
            schema_version: self.version.clone(),
            partition_key_b64_encoded: batch.key.as_ref().map(|_| false),
            partition_key: batch.key,
            ..pb::MessageMetadata::default()
        };
        let payload = batch.payload.freeze();
        let sent = self.publish(OutgoingMessage {
            uncompressed_size: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            payload,
            metadata,
            num_messages: count,
            txn_id: batch.txn,
            source_message_id: None,
        });
        let done = batch.done;
        tokio::spawn(async move {
            let _ = done.send(sent.await);
        });
    }
}

/// A record as Pulsar's single-message metadata (key, properties with its
/// sequence, event time) and its payload.
fn parts(record: SourceRecord) -> (pb::SingleMessageMetadata, Vec<u8>) {
    let mut properties: Vec<pb::KeyValue> = record
        .properties
        .into_iter()
        .map(|(key, value)| pb::KeyValue { key, value })
        .collect();
    if let Some(seq) = record.sequence {
        properties.push(pb::KeyValue {
            key: SEQUENCE_PROPERTY.to_owned(),
            value: seq.to_string(),
        });
    }
    let metadata = pb::SingleMessageMetadata {
        properties,
        partition_key_b64_encoded: record.key.as_ref().map(|_| false),
        partition_key: record.key,
        payload_size: i32::try_from(record.value.as_ref().map_or(0, Vec::len)).unwrap_or(i32::MAX),
        null_value: record.value.is_none().then_some(true),
        event_time: record.event_time_ms,
        ..pb::SingleMessageMetadata::default()
    };
    (metadata, record.value.unwrap_or_default())
}
