//! The Pulsar client, behind one module: every magnetar type stays in here
//! (docs/decisions/0001-pulsar-client.md). The engine sees producers that
//! send records, consumers that yield [`SinkRecord`]s with an ack handle,
//! and one error type.

mod auth;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use magnetar::proto::pb::ProducerAccessMode;
use magnetar::proto::pb::command_subscribe::{InitialPosition, SubType};
use magnetar::proto::types::CompressionKind;
use magnetar::proto::{CreateProducerRequest, SubscribeRequest};
use magnetar::runtime_tokio as rt;
use magnetar::{MessageId, OutgoingMessage};
use sluice_connectors::{Sequence, SinkRecord, SourceRecord};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::config::{
    Batching, Compression, PulsarSettings, SubscriptionPosition, SubscriptionType,
};

/// The property that carries a record's sequence.
pub const SEQUENCE_PROPERTY: &str = "sluice.seq";

/// A failure talking to the broker. Every one of them is worth retrying
/// after a backoff, except a refused configuration.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {message}")]
pub struct PulsarError {
    context: String,
    message: String,
    retryable: bool,
}

impl PulsarError {
    fn new(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self {
            context: context.into(),
            message: err.to_string(),
            retryable: true,
        }
    }

    /// An error described by a message alone.
    pub fn from_message(message: impl Into<String>) -> Self {
        Self {
            context: "pulsar".into(),
            message: message.into(),
            retryable: true,
        }
    }

    fn config(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// A connection to the broker.
#[derive(Clone)]
pub struct Client {
    inner: Arc<rt::Client>,
    settings: PulsarSettings,
    credentials: auth::Credentials,
    coordinator: Arc<tokio::sync::OnceCell<rt::Client>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// Connect to the broker.
pub async fn connect(settings: &PulsarSettings) -> Result<Client, PulsarError> {
    let credentials = auth::Credentials::open(settings).await?;
    let context = format!("connect to {}", settings.service_url);
    let inner = dial(settings, &credentials, &context).await?;
    Ok(Client {
        inner: Arc::new(inner),
        settings: settings.clone(),
        credentials,
        coordinator: Arc::new(tokio::sync::OnceCell::new()),
    })
}

/// A connection to the broker at `pulsar.serviceUrl`, with the
/// credentials and TLS of every connection sluice makes; `context` says
/// what failed in errors.
async fn dial(
    settings: &PulsarSettings,
    credentials: &auth::Credentials,
    context: &str,
) -> Result<rt::Client, PulsarError> {
    let mut config = magnetar::ConnectionConfig {
        operation_timeout: Duration::from_secs(30),
        ..magnetar::ConnectionConfig::default()
    };
    let provider = credentials.provider();
    if let Some(p) = &provider {
        config.auth_method_name = p.method().to_owned();
        config.auth_data = Some(
            p.initial()
                .map_err(|e| PulsarError::config(context, e.to_string()))?,
        );
    }
    let url = rt::ParsedUrl::parse(&settings.service_url)
        .map_err(|e| PulsarError::config(context, e.to_string()))?;
    let tls = tls::broker(settings, credentials.identity())?;
    rt::Client::connect_with(url, tls, config, provider)
        .await
        .map_err(|e| {
            let message = e.to_string();
            // A server that refuses the client's certificate ends the
            // handshake with an alert, or just closes.
            let refused = ["handshake failed", "received fatal alert"]
                .iter()
                .any(|m| message.contains(m));
            if credentials.identity().is_some() && refused {
                PulsarError::new(
                    context,
                    format!(
                        "{message}: the broker refused the TLS handshake; is tlsCertFile \
                         signed by a CA the broker trusts (its tlsTrustCertsFilePath)?"
                    ),
                )
            } else {
                PulsarError::new(context, message)
            }
        })
}

/// Who may publish on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any number of producers.
    Shared,
    /// This producer only; another is refused until it closes.
    Exclusive,
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
    /// A source's producers are named `<prefix>-<unique suffix>`, so that
    /// sinks can tell sluice's sequences from anyone else's; `None` lets
    /// the broker name the producer.
    pub name_prefix: Option<String>,
}

/// How the names of sluice's source producers start: a sink trusts the
/// `sluice.seq` of messages from such producers only.
pub const SOURCE_PRODUCER_PREFIX: &str = "sluice-";

/// A suffix no other producer of this process, or of another process
/// started at another moment, has: the time in nanoseconds and a counter.
fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}-{}-{n}", std::process::id())
}

/// A producer on one topic.
pub struct Producer {
    inner: rt::Producer,
    topic: String,
    /// The batch byte limit, when batching.
    batch_bytes: Option<usize>,
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
    /// Close every connection of this client, the transaction
    /// coordinator's included. Without it the connections outlive the
    /// client. Only the last holder closes; clones just let go.
    pub async fn close(self) {
        let Self {
            inner, coordinator, ..
        } = self;
        if let Ok(coordinator) = Arc::try_unwrap(coordinator)
            && let Some(c) = coordinator.into_inner()
        {
            c.close().await;
        }
        if let Ok(inner) = Arc::try_unwrap(inner) {
            inner.close().await;
        }
    }

    /// When this client should be replaced by a new one, because the
    /// token it presents on every connection expires soon after; `None`
    /// when it does not expire.
    pub fn renew_at(&self) -> Option<std::time::Instant> {
        self.credentials.renew_at()
    }

    /// Payload bytes a connector may hold for Pulsar before it stops
    /// reading: `pulsar.memoryLimitBytes`, 0 meaning no limit. A batch read
    /// while under the limit goes out whole, so the bound is passed by at
    /// most one batch.
    pub fn memory_limit(&self) -> u64 {
        match self.settings.memory_limit_bytes {
            0 => u64::MAX,
            n => n,
        }
    }

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
            },
            producer_name: options
                .name_prefix
                .as_ref()
                .map(|prefix| format!("{prefix}-{}", unique_suffix())),
            ..CreateProducerRequest::default()
        };
        if let Some(b) = options.batching {
            request.enable_batching = true;
            request.max_messages_in_batch = b.max_messages;
            request.max_batch_size_bytes = b.max_bytes;
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
        let inner = self
            .inner
            .open_producer(request)
            .await
            .map_err(|e| PulsarError::new(context(), e))?;
        Ok(Producer {
            batch_bytes: options.batching.map(|b| b.max_bytes),
            inner,
            topic: topic.to_owned(),
        })
    }

    /// A consumer over `topics`, on one subscription.
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
        let mut consumers = Vec::with_capacity(topics.len());
        for topic in topics {
            let request = SubscribeRequest {
                topic: topic.clone(),
                subscription: options.subscription.clone(),
                sub_type: match options.subscription_type {
                    SubscriptionType::Failover => SubType::Failover,
                    SubscriptionType::KeyShared => SubType::KeyShared,
                    SubscriptionType::Shared => SubType::Shared,
                },
                initial_position: match options.position {
                    SubscriptionPosition::Latest => InitialPosition::Latest,
                    SubscriptionPosition::Earliest => InitialPosition::Earliest,
                },
                negative_ack_redelivery_delay: Some(options.nack_delay),
                receiver_queue_size: prefetch(options),
                consumer_name: options.consumer_name.clone(),
                ack_timeout: options.ack_timeout,
                ..SubscribeRequest::default()
            };
            let consumer = self.inner.subscribe(request).await.map_err(|e| {
                PulsarError::new(format!("subscribe {} on {topic}", options.subscription), e)
            })?;
            consumers.push((topic.clone(), consumer));
        }
        let mut forwarders = Vec::with_capacity(consumers.len());
        for (index, (topic, consumer)) in consumers.iter().enumerate() {
            forwarders.push(tokio::spawn(forward(
                index,
                topic.clone(),
                consumer.clone(),
                tx.clone(),
                budget.clone(),
            )));
        }
        Ok(Consumer {
            consumers,
            rx,
            forwarders,
        })
    }

    /// Topics of `namespace` (`tenant/namespace`) whose names match `pattern`.
    pub async fn topics_matching(
        &self,
        namespace: &str,
        pattern: &str,
    ) -> Result<Vec<String>, PulsarError> {
        self.inner
            .watch_topic_list(namespace, pattern)
            .await
            .map_err(|e| PulsarError::new(format!("list topics of {namespace}"), e))
    }
}

/// An open Pulsar transaction. magnetar does not register the topics a
/// transaction writes (decision record 0001): [`Client::register`] must be
/// called for each before the first send, or their readers stall until the
/// transaction times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Txn {
    id: magnetar::proto::TxnId,
}

impl Txn {
    /// The id as text (`most:least`), to find the transaction again.
    pub fn id_text(&self) -> String {
        format!("{}:{}", self.id.most_sig_bits, self.id.least_sig_bits)
    }

    /// A transaction from [`Txn::id_text`].
    pub fn from_id_text(text: &str) -> Option<Self> {
        let (most, least) = text.split_once(':')?;
        Some(Self {
            id: magnetar::proto::TxnId {
                most_sig_bits: most.parse().ok()?,
                least_sig_bits: least.parse().ok()?,
            },
        })
    }
}

impl Client {
    /// The connection that talks to the transaction coordinator, opened on
    /// first use. It is apart from magnetar's client, whose transaction
    /// handle cannot be rebuilt from an id, which aborting a crashed
    /// instance's transaction needs.
    async fn coordinator(&self) -> Result<&rt::Client, PulsarError> {
        self.coordinator
            .get_or_try_init(|| async {
                // The same credentials and TLS as the main client's.
                let context = format!(
                    "connect to the transaction coordinator at {}",
                    self.settings.service_url
                );
                dial(&self.settings, &self.credentials, &context).await
            })
            .await
    }

    /// Open a transaction that the coordinator aborts after `timeout`.
    pub async fn begin(&self, timeout: Duration) -> Result<Txn, PulsarError> {
        let id = self
            .coordinator()
            .await?
            .new_txn(timeout)
            .await
            .map_err(|e| PulsarError::new("open a transaction", e))?;
        Ok(Txn { id })
    }

    /// Tell the coordinator that `txn` writes to `topic`.
    pub async fn register(&self, txn: &Txn, topic: &str) -> Result<(), PulsarError> {
        self.coordinator()
            .await?
            .add_partition_to_txn(txn.id, topic)
            .await
            .map_err(|e| PulsarError::new(format!("add {topic} to a transaction"), e))
    }

    /// Commit: everything sent in the transaction becomes visible at once.
    pub async fn commit(&self, txn: Txn) -> Result<(), PulsarError> {
        let state = self
            .coordinator()
            .await?
            .end_txn(txn.id, magnetar::proto::TxnAction::Commit)
            .await
            .map_err(|e| PulsarError::new("commit a transaction", e))?;
        match state {
            magnetar::TxnState::Committed => Ok(()),
            other => Err(PulsarError::from_message(format!(
                "the transaction ended {other:?}, not committed"
            ))),
        }
    }

    /// Abort: nothing sent in the transaction becomes visible.
    pub async fn abort(&self, txn: Txn) -> Result<(), PulsarError> {
        self.coordinator()
            .await?
            .end_txn(txn.id, magnetar::proto::TxnAction::Abort)
            .await
            .map(|_| ())
            .map_err(|e| PulsarError::new("abort a transaction", e))
    }

    /// Abort a transaction that another connection opened, such as one a
    /// crashed instance left open.
    pub async fn abort_orphan(&self, txn: Txn) -> Result<(), PulsarError> {
        let coordinator = self.coordinator().await?;
        // The coordinator answers only once a transaction was opened on the
        // connection; a fresh connection opens and aborts one first.
        let probe = coordinator
            .new_txn(Duration::from_secs(10))
            .await
            .map_err(|e| PulsarError::new("open a transaction", e))?;
        let _ = coordinator
            .end_txn(probe, magnetar::proto::TxnAction::Abort)
            .await;
        coordinator
            .end_txn(txn.id, magnetar::proto::TxnAction::Abort)
            .await
            .map(|_| ())
            .map_err(|e| PulsarError::new("abort a transaction", e))
    }

    /// Whether the broker runs transactions: open one and abort it.
    pub async fn check_transactions(&self) -> Result<(), PulsarError> {
        let txn = self.begin(Duration::from_secs(10)).await?;
        self.abort(txn).await
    }

    /// Whether the broker deduplicates messages on `namespace`
    /// (`tenant/namespace`): the namespace's policy, else the broker's
    /// default. `Ok(None)` when no `webServiceUrl` is configured to ask.
    pub async fn deduplication(&self, namespace: &str) -> Result<Option<bool>, PulsarError> {
        let Some(web) = &self.settings.web_service_url else {
            return Ok(None);
        };
        let context = || format!("read the deduplication policy of {namespace}");
        let base = web.trim_end_matches('/').to_owned();
        let agent = tls::http_agent(&self.settings, self.credentials.identity())?;
        let bearer = self.credentials.bearer()?;
        let get = move |path: String| -> Result<String, String> {
            let url = format!("{base}{path}");
            let mut request = agent.get(&url);
            if let Some(token) = &bearer {
                request = request.header("Authorization", format!("Bearer {}", token.expose()));
            }
            let mut response = request.call().map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            if status == 401 || status == 403 {
                return Err(format!(
                    "{url} answered {status}: the role may not read it (reading a namespace's policies takes tenant admin)"
                ));
            }
            if !status.is_success() {
                return Err(format!("{url} answered {status}"));
            }
            response
                .body_mut()
                .read_to_string()
                .map_err(|e| e.to_string())
        };
        let namespace_path = format!("/admin/v2/namespaces/{namespace}/deduplication");
        let answer: Result<bool, String> = tokio::task::spawn_blocking(move || {
            let policy = get(namespace_path)?;
            match policy.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                // No policy on the namespace: the broker's default applies.
                _ => {
                    let config = get("/admin/v2/brokers/configuration/runtime".to_owned())?;
                    let config: serde_json::Value =
                        serde_json::from_str(&config).map_err(|e| e.to_string())?;
                    Ok(config["brokerDeduplicationEnabled"].as_str() == Some("true"))
                }
            }
        })
        .await
        .map_err(|e| PulsarError::new(context(), e))?;
        answer.map(Some).map_err(|e| PulsarError::new(context(), e))
    }

    /// The messages of `topic` visible to the durable `subscription`, from
    /// its first unacknowledged one to the topic's end: see [`Backlog`].
    ///
    /// Committed transactional messages are visible; aborted ones are not,
    /// and an open transaction hides everything after its first message
    /// until it ends.
    pub async fn backlog(&self, topic: &str, subscription: &str) -> Result<Backlog, PulsarError> {
        let consumer = self
            .inner
            .subscribe(SubscribeRequest {
                topic: topic.to_owned(),
                subscription: subscription.to_owned(),
                sub_type: SubType::Exclusive,
                initial_position: InitialPosition::Earliest,
                ..SubscribeRequest::default()
            })
            .await
            .map_err(|e| PulsarError::new(format!("read the backlog of {topic}"), e))?;
        let mut backlog = Backlog {
            consumer,
            topic: topic.to_owned(),
            messages: Vec::new(),
        };
        if let Err(e) = backlog.read_more().await {
            backlog.close().await;
            return Err(e);
        }
        Ok(backlog)
    }
}

/// The messages a durable subscription has not acknowledged, read in
/// order. Nothing is acknowledged until [`Backlog::release_before`].
pub struct Backlog {
    consumer: rt::Consumer,
    topic: String,
    messages: Vec<(MessageId, Vec<u8>)>,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog")
            .field("topic", &self.topic)
            .field("messages", &self.messages.len())
            .finish_non_exhaustive()
    }
}

impl Backlog {
    /// The payloads read so far, in topic order.
    pub fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        self.messages.iter().map(|(_, p)| p.as_slice())
    }

    /// Read on to the topic's last message, or until a quiet second: the
    /// last id can be a transaction marker, which is never delivered, or
    /// sit behind an open transaction. Call again after ending a
    /// transaction that held messages back.
    pub async fn read_more(&mut self) -> Result<(), PulsarError> {
        let topic = self.topic.clone();
        let context = || format!("read the backlog of {topic}");
        let last = self
            .consumer
            .last_message_id()
            .await
            .map_err(|e| PulsarError::new(context(), e))?;
        if last.entry_id == u64::MAX || last.ledger_id == u64::MAX {
            return Ok(());
        }
        let target = (last.ledger_id, last.entry_id);
        loop {
            if self
                .messages
                .last()
                .is_some_and(|(id, _)| (id.ledger_id, id.entry_id) >= target)
            {
                return Ok(());
            }
            let wait = if self.messages.is_empty() { 5 } else { 1 };
            match tokio::time::timeout(Duration::from_secs(wait), self.consumer.receive()).await {
                Ok(msg) => {
                    let msg = msg.map_err(|e| PulsarError::new(context(), e))?;
                    self.messages.push((msg.message_id, msg.payload.to_vec()));
                }
                Err(_) => return Ok(()),
            }
        }
    }

    /// Acknowledge the messages before the `index`th, so that retention
    /// may drop them; the rest are read again by the next [`Client::backlog`].
    pub async fn release_before(&self, index: usize) -> Result<(), PulsarError> {
        for (id, _) in self.messages.iter().take(index) {
            self.consumer
                .ack(*id)
                .await
                .map_err(|e| PulsarError::new(format!("acknowledge on {}", self.topic), e))?;
        }
        Ok(())
    }

    /// Let go of the subscription.
    pub async fn close(self) {
        let _ = self.consumer.close().await;
    }
}

/// The outcome of one publish: the message id as text.
pub type SendResult = Result<String, PulsarError>;

impl Producer {
    /// Queue a record for publishing. The returned future resolves when the
    /// broker has persisted it, or with the reason it did not.
    pub fn send(&self, record: SourceRecord) -> impl Future<Output = SendResult> + Send + 'static {
        self.send_in(record, None)
    }

    /// [`Producer::send`], inside a transaction when one is given.
    pub fn send_in(
        &self,
        record: SourceRecord,
        txn: Option<&Txn>,
    ) -> impl Future<Output = SendResult> + Send + 'static {
        let payload_len = record.value.len();
        let mut msg = OutgoingMessage::with_payload(record.value);
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
        let fut = self.inner.send(msg.into());
        let topic = self.topic.clone();
        async move {
            fut.await
                .map(|id| message_id_text(&id))
                .map_err(|e| PulsarError::new(format!("publish to {topic}"), e))
        }
    }

    /// The topic this producer publishes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publish what is batched and close.
    pub async fn close(self) {
        let _ = self.inner.flush().await;
        let _ = self.inner.close().await;
    }
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
}

/// Identifies a received message for acknowledgement.
#[derive(Debug, Clone, Copy)]
pub struct AckHandle {
    consumer: usize,
    id: MessageId,
}

/// A received message: the record and what acknowledges it.
#[derive(Debug)]
pub struct Received {
    /// The record, for the sink.
    pub record: SinkRecord,
    /// For [`Consumer::ack`] and [`Consumer::nack`].
    pub handle: AckHandle,
    /// How often the broker delivered it before.
    pub redelivery_count: u32,
    /// The message's share of [`ConsumerOptions::held_bytes`], given back
    /// when this is dropped: keep it until the message is acknowledged.
    pub held: Option<OwnedSemaphorePermit>,
}

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
    consumers: Vec<(String, rt::Consumer)>,
    rx: mpsc::Receiver<Result<Received, PulsarError>>,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics: Vec<&str> = self.consumers.iter().map(|(t, _)| t.as_str()).collect();
        f.debug_struct("Consumer")
            .field("topics", &topics)
            .finish_non_exhaustive()
    }
}

/// Move one topic's messages into the shared channel until either side ends.
async fn forward(
    index: usize,
    topic: String,
    consumer: rt::Consumer,
    tx: mpsc::Sender<Result<Received, PulsarError>>,
    budget: Option<(Arc<Semaphore>, usize)>,
) {
    loop {
        let item = match consumer.receive().await {
            Ok(msg) => {
                let mut r = received(index, &topic, msg);
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

fn message_id_text(id: &MessageId) -> String {
    format!(
        "{}:{}:{}:{}",
        id.ledger_id, id.entry_id, id.partition, id.batch_index
    )
}

/// Turn a delivered message into a [`SinkRecord`]. A batched message
/// carries its key, properties and event time in its single-message
/// metadata.
fn received(index: usize, topic: &str, mut msg: magnetar::proto::IncomingMessage) -> Received {
    // magnetar hands a batch of one over without unpacking it: the payload is
    // still the batch container. Unpack it here (decision record 0001).
    if msg.single_metadata.is_none()
        && msg.metadata.num_messages_in_batch == Some(1)
        && let Some((single, body)) = unpack_single(&msg.payload)
    {
        msg.payload = body;
        msg.single_metadata = Some(single);
    }
    let (key, props, event_time) = match &msg.single_metadata {
        Some(single) => (
            single.partition_key.clone(),
            &single.properties,
            single.event_time,
        ),
        None => (
            msg.metadata.partition_key.clone(),
            &msg.metadata.properties,
            msg.metadata.event_time,
        ),
    };
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
    Received {
        record: SinkRecord {
            topic: topic.to_owned(),
            key,
            value: (!empty).then(|| msg.payload.to_vec()),
            properties,
            event_time_ms: event_time.filter(|t| *t > 0),
            publish_time_ms: msg.metadata.publish_time,
            sequence,
            message_id: message_id_text(&msg.message_id),
            // Only sluice's sources name their producers so, and the broker
            // keeps names unique among connected producers.
            sequence_trusted: msg
                .metadata
                .producer_name
                .starts_with(SOURCE_PRODUCER_PREFIX),
        },
        handle: AckHandle {
            consumer: index,
            id: msg.message_id,
        },
        redelivery_count: msg.redelivery_count,
        held: None,
    }
}

/// Split a batch container holding one message into its single-message
/// metadata and payload: `[u32 size][SingleMessageMetadata][payload]`.
fn unpack_single(
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

    /// Acknowledge messages: the broker will not deliver them again.
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

    /// Ask the broker to deliver a message again after the nack delay.
    pub fn nack(&self, handle: AckHandle) {
        if let Some((_, consumer)) = self.consumers.get(handle.consumer) {
            consumer.negative_ack(handle.id);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefetch_holds_its_bytes_in_messages_of_the_largest_size() {
        let options = |prefetch_bytes| ConsumerOptions {
            subscription: "s".into(),
            subscription_type: SubscriptionType::Failover,
            position: SubscriptionPosition::Earliest,
            receiver_queue: 1000,
            held_bytes: None,
            prefetch_bytes,
            nack_delay: Duration::from_secs(1),
            ack_timeout: None,
            consumer_name: None,
        };
        assert_eq!(prefetch(&options(None)), 1000);
        assert_eq!(prefetch(&options(Some(16 << 20))), 3);
        assert_eq!(prefetch(&options(Some(1 << 20))), 1, "at least one");
        assert_eq!(prefetch(&options(Some(1 << 40))), 1000, "at most the queue");
    }
}
