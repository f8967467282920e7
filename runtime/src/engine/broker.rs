//! The seam between the engine and the broker: what the engine asks of
//! Pulsar, as four narrow traits. The Pulsar client ([`crate::pulsar`])
//! implements them by delegation, here; an in-memory broker implements
//! them for the engine's unit tests (`engine/memory`), so that batching,
//! retries, dead letters, acknowledgements, EFFECTIVELY_ONCE recovery and
//! supervision are tested without a broker. See docs/architecture.md.
//!
//! - [`Dial`] makes a [`Broker`] connection (a supervisor makes one per
//!   run).
//! - [`Broker`]: producers and consumers, topic lookups, and the
//!   transactions and offsets backlog that EFFECTIVELY_ONCE needs.
//! - [`Publish`]: a producer on one topic.
//! - [`Consume`]: a consumer over a sink's topics, on one subscription.
//! - [`ReadBacklog`]: a subscription's backlog, read without acknowledging.
//! - [`WatchTopic`]: the messages a topic gets from now on, as a standby
//!   watches the active instance's beats.
//!
//! Schema lookups stay inside the consumer: it decodes by the registered
//! schema before the engine sees a record.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_connectors::{RecordSchema, SourceRecord};

use crate::config::PulsarSettings;
use crate::pulsar::{
    self, AckHandle, Backlog, Client, Consumer, ConsumerOptions, Followed, OrphanEnd, Producer,
    ProducerOptions, PulsarError, Reading, Received, SendResult, Txn, Watch,
};

/// Makes connections to a broker.
pub(crate) trait Dial: Send + Sync + 'static {
    /// The connection.
    type Broker: Broker;

    /// Connect; `reading` says whether this connection consumes.
    fn connect(
        &self,
        reading: Reading,
    ) -> impl Future<Output = Result<Self::Broker, PulsarError>> + Send;
}

/// One connection to the broker.
pub(crate) trait Broker: Send + Sync + 'static {
    /// A producer it makes.
    type Producer: Publish;
    /// A consumer it makes.
    type Consumer: Consume;
    /// A backlog reader it makes.
    type Backlog: ReadBacklog;
    /// A topic watch it makes.
    type Watch: WatchTopic;

    /// A producer on `topic`.
    fn producer(
        &self,
        topic: &str,
        options: &ProducerOptions,
    ) -> impl Future<Output = Result<Self::Producer, PulsarError>> + Send;

    /// A consumer over `topics`, on one subscription.
    fn consumer(
        &self,
        topics: &[String],
        options: &ConsumerOptions,
    ) -> impl Future<Output = Result<Self::Consumer, PulsarError>> + Send;

    /// Topics of `namespace` whose names match `pattern`.
    fn topics_matching(
        &self,
        namespace: &str,
        pattern: &str,
    ) -> impl Future<Output = Result<Vec<String>, PulsarError>> + Send;

    /// `topics` with each partitioned topic as its partitions.
    fn partitions(
        &self,
        topics: &[String],
    ) -> impl Future<Output = Result<Vec<String>, PulsarError>> + Send;

    /// The payload bytes a connector may hold for the broker.
    fn memory_limit(&self) -> u64;

    /// When the connection's credentials must be renewed.
    fn renew_at(&self) -> Option<Instant>;

    /// Open a transaction that times out after `timeout`.
    fn begin(&self, timeout: Duration) -> impl Future<Output = Result<Txn, PulsarError>> + Send;

    /// Tell the coordinator that `txn` writes to `topic`.
    fn register(
        &self,
        txn: &Txn,
        topic: &str,
    ) -> impl Future<Output = Result<(), PulsarError>> + Send;

    /// Commit `txn`.
    fn commit(&self, txn: Txn) -> impl Future<Output = Result<(), PulsarError>> + Send;

    /// Abort `txn`.
    fn abort(&self, txn: Txn) -> impl Future<Output = Result<(), PulsarError>> + Send;

    /// Abort a transaction another connection opened.
    fn abort_orphan(&self, txn: Txn)
    -> impl Future<Output = Result<OrphanEnd, PulsarError>> + Send;

    /// The backlog of a durable subscription on `topic`.
    fn backlog(
        &self,
        topic: &str,
        subscription: &str,
    ) -> impl Future<Output = Result<Self::Backlog, PulsarError>> + Send;

    /// Watch the messages `topic` gets from now on, leaving nothing on it.
    fn watch(&self, topic: &str) -> impl Future<Output = Result<Self::Watch, PulsarError>> + Send;

    /// Close the connection.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Take `topic` from the producer that holds it: fence that one out, then
/// hold the topic with an exclusive producer made with `options`. The
/// fencing producer is closed at once: the client makes a dropped producer
/// again with the access it was made with, and one made to fence would
/// fence again, silently, whoever holds the topic by then. An exclusive
/// one is refused instead, and its sends fail. Refused (held elsewhere)
/// when another producer took the topic in between.
pub(crate) async fn fence_out<B: Broker>(
    client: &B,
    topic: &str,
    options: &ProducerOptions,
) -> Result<B::Producer, PulsarError> {
    let fencing = ProducerOptions {
        access: pulsar::Access::Fencing,
        ..options.clone()
    };
    client.producer(topic, &fencing).await?.close().await;
    let exclusive = ProducerOptions {
        access: pulsar::Access::Exclusive,
        ..options.clone()
    };
    client.producer(topic, &exclusive).await
}

/// The messages a topic gets, as they come.
pub(crate) trait WatchTopic: Send {
    /// Wait for the next message. Cancel-safe.
    fn next(&mut self) -> impl Future<Output = Result<(), PulsarError>> + Send;

    /// Let go of the topic.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// A producer on one topic.
pub(crate) trait Publish: Send + 'static {
    /// A send on its way: resolves with the broker's receipt.
    type Sending: Future<Output = SendResult> + Send + 'static;

    /// Hand `record` to the broker, in `txn` if given; see
    /// [`Producer::publish`].
    fn publish(
        &mut self,
        record: SourceRecord,
        txn: Option<&Txn>,
    ) -> impl Future<Output = Self::Sending> + Send;

    /// Queue a small record (never chunked), in `txn` if given.
    fn send_in(&self, record: SourceRecord, txn: Option<&Txn>) -> Self::Sending;

    /// The topic.
    fn topic(&self) -> &str;

    /// Whether records of `schema` may go out on it.
    fn publishes(&mut self, schema: Option<&Arc<RecordSchema>>) -> bool;

    /// Publish what is batched and close.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// A consumer over a sink's topics.
pub(crate) trait Consume: Send + 'static {
    /// What acknowledges one message, and tells a delivery of it again.
    type Handle: Copy + Eq + std::hash::Hash + Send + Sync + std::fmt::Debug + 'static;

    /// The next message. Cancel-safe.
    fn receive(
        &mut self,
    ) -> impl Future<Output = Result<Received<Self::Handle>, PulsarError>> + Send;

    /// A message if one is waiting.
    fn try_receive(&mut self) -> Option<Result<Received<Self::Handle>, PulsarError>>;

    /// Acknowledge messages.
    fn ack(&self, handles: &[Self::Handle])
    -> impl Future<Output = Result<(), PulsarError>> + Send;

    /// Bring the consumer to `topics`, the inputs as they resolve now.
    fn follow(
        &mut self,
        topics: &[String],
    ) -> impl Future<Output = Result<Followed, PulsarError>> + Send;

    /// Stop receiving; what is not acknowledged is delivered again.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// A subscription's backlog, read without acknowledging.
pub(crate) trait ReadBacklog: Send {
    /// The payloads read so far, in topic order.
    fn payloads(&self) -> Vec<&[u8]>;

    /// Read on to the topic's end (or what an open transaction hides).
    fn read_more(&mut self) -> impl Future<Output = Result<(), PulsarError>> + Send;

    /// Acknowledge the messages before the `index`th.
    fn release_before(&self, index: usize) -> impl Future<Output = Result<(), PulsarError>> + Send;

    /// Let go of the subscription.
    fn close(self) -> impl Future<Output = ()> + Send;
}

// The Pulsar client behind the seam: delegation only.

impl Dial for PulsarSettings {
    type Broker = Client;

    async fn connect(&self, reading: Reading) -> Result<Client, PulsarError> {
        pulsar::connect(self, reading).await
    }
}

impl Broker for Client {
    type Producer = Producer;
    type Consumer = Consumer;
    type Backlog = Backlog;
    type Watch = Watch;

    async fn producer(
        &self,
        topic: &str,
        options: &ProducerOptions,
    ) -> Result<Producer, PulsarError> {
        Client::producer(self, topic, options).await
    }

    async fn consumer(
        &self,
        topics: &[String],
        options: &ConsumerOptions,
    ) -> Result<Consumer, PulsarError> {
        Client::consumer(self, topics, options).await
    }

    async fn topics_matching(
        &self,
        namespace: &str,
        pattern: &str,
    ) -> Result<Vec<String>, PulsarError> {
        Client::topics_matching(self, namespace, pattern).await
    }

    async fn partitions(&self, topics: &[String]) -> Result<Vec<String>, PulsarError> {
        Client::partitions(self, topics).await
    }

    fn memory_limit(&self) -> u64 {
        Client::memory_limit(self)
    }

    fn renew_at(&self) -> Option<Instant> {
        Client::renew_at(self)
    }

    async fn begin(&self, timeout: Duration) -> Result<Txn, PulsarError> {
        Client::begin(self, timeout).await
    }

    async fn register(&self, txn: &Txn, topic: &str) -> Result<(), PulsarError> {
        Client::register(self, txn, topic).await
    }

    async fn commit(&self, txn: Txn) -> Result<(), PulsarError> {
        Client::commit(self, txn).await
    }

    async fn abort(&self, txn: Txn) -> Result<(), PulsarError> {
        Client::abort(self, txn).await
    }

    async fn abort_orphan(&self, txn: Txn) -> Result<OrphanEnd, PulsarError> {
        Client::abort_orphan(self, txn).await
    }

    async fn backlog(&self, topic: &str, subscription: &str) -> Result<Backlog, PulsarError> {
        Client::backlog(self, topic, subscription).await
    }

    async fn watch(&self, topic: &str) -> Result<Watch, PulsarError> {
        Client::watch(self, topic).await
    }

    async fn close(self) {
        Client::close(self).await;
    }
}

impl Publish for Producer {
    type Sending = std::pin::Pin<Box<dyn Future<Output = SendResult> + Send + 'static>>;

    async fn publish(&mut self, record: SourceRecord, txn: Option<&Txn>) -> Self::Sending {
        Box::pin(Producer::publish(self, record, txn).await)
    }

    fn send_in(&self, record: SourceRecord, txn: Option<&Txn>) -> Self::Sending {
        Box::pin(Producer::send_in(self, record, txn))
    }

    fn topic(&self) -> &str {
        Producer::topic(self)
    }

    fn publishes(&mut self, schema: Option<&Arc<RecordSchema>>) -> bool {
        Producer::publishes(self, schema)
    }

    async fn close(self) {
        Producer::close(self).await;
    }
}

impl Consume for Consumer {
    type Handle = AckHandle;

    async fn receive(&mut self) -> Result<Received, PulsarError> {
        Consumer::receive(self).await
    }

    fn try_receive(&mut self) -> Option<Result<Received, PulsarError>> {
        Consumer::try_receive(self)
    }

    async fn ack(&self, handles: &[AckHandle]) -> Result<(), PulsarError> {
        Consumer::ack(self, handles).await
    }

    async fn follow(&mut self, topics: &[String]) -> Result<Followed, PulsarError> {
        Consumer::follow(self, topics).await
    }

    async fn close(self) {
        Consumer::close(self).await;
    }
}

impl ReadBacklog for Backlog {
    fn payloads(&self) -> Vec<&[u8]> {
        Backlog::payloads(self).collect()
    }

    async fn read_more(&mut self) -> Result<(), PulsarError> {
        Backlog::read_more(self).await
    }

    async fn release_before(&self, index: usize) -> Result<(), PulsarError> {
        Backlog::release_before(self, index).await
    }

    async fn close(self) {
        Backlog::close(self).await;
    }
}

impl WatchTopic for Watch {
    async fn next(&mut self) -> Result<(), PulsarError> {
        Watch::next(self).await
    }

    async fn close(self) {
        Watch::close(self).await;
    }
}
