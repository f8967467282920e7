//! A source under EFFECTIVELY_ONCE: whole source transactions are published
//! in Pulsar transactions, each with a progress marker, by one instance at a
//! time.
//!
//! - **Fencing.** The instance that holds the exclusive producer on the
//!   source's offsets topic (`sluice-offsets.<name>`) publishes; another
//!   instance of the same source waits as a standby until it can take that
//!   producer, which happens when the first one stops or dies. The table
//!   topics' producers are exclusive too.
//! - **Transactions.** The records from one checkpoint to the next (a source
//!   transaction, or a chunk of a snapshot) and a marker holding the last
//!   record's `sluice.seq`, the checkpoint, the source's state there and
//!   the transaction's id are committed as one Pulsar transaction. Several source transactions may
//!   share one Pulsar transaction; a source transaction is never split
//!   across two. Readers see whole source transactions or nothing.
//! - **Pipelining.** A transaction commits in the background while the next
//!   fills; one commits at a time, in order. The next transaction is opened
//!   ahead (begun, its likely topics registered), so that records never
//!   wait for the coordinator.
//! - **Recovery.** On start, the last committed marker gives the highest
//!   sequence already published; the source resumes from its own committed
//!   position, which is never past it, and every record at or below that
//!   sequence is skipped.
//! - **Orphans.** Before its use, a transaction's id is published (outside
//!   it) on the offsets topic. An instance that dies leaves its
//!   transactions open, and an open transaction holds back every reader of
//!   the topics it wrote. The next instance aborts every transaction whose
//!   intent has no marker at once, rather than letting readers wait for its
//!   timeout.
//! - **Resends.** A resend inside a run (after a reconnect) carries the same
//!   producer sequence id, so the broker's deduplication drops it when the
//!   namespace has deduplication on; `sluice check` says when it does not.
//! - **The source's position** is committed only after the transaction that
//!   holds its records has committed.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_connectors::{ConnectorError, Position, Sequence, Source, SourceRecord};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::TaskError;
use super::broker::{Broker, Publish, ReadBacklog};
use super::source_task::{Finished, Publisher};
use super::status::{ConnectorStatus, State};
use crate::config::SourceDef;
use crate::pulsar::{self, Access, ProducerOptions, PulsarError, Txn};

/// The subscription that keeps the last marker from retention.
const RECOVERY_SUBSCRIPTION: &str = "sluice-recovery";
/// The coordinator aborts a transaction left open this long: a crashed
/// instance's transaction never becomes visible. A source transaction, or
/// a snapshot's chunk, must fit in it.
const TXN_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long a transaction that could commit waits for more source
/// transactions to share it. Under load a transaction grows anyway while
/// the one before it commits, so this only sets the latency of a light
/// stream.
const LINGER: Duration = Duration::from_millis(10);
/// A transaction opened ahead and not used for this long is replaced, so
/// that the one a record goes into has most of [`TXN_TIMEOUT`] ahead.
const SPARE_MAX_AGE: Duration = Duration::from_secs(60);
/// How often a standby tries to take over.
const STANDBY_RETRY: Duration = Duration::from_secs(1);

/// The topic holding a source's progress markers.
pub(crate) fn offsets_topic(def: &SourceDef) -> String {
    format!(
        "persistent://{}/{}/sluice-offsets.{}",
        def.tenant, def.namespace, def.name
    )
}

/// What a message on the offsets topic says: on a marker, the progress
/// its transaction commits, and which transaction that is; on an intent,
/// the transaction opened, and the progress committed when it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// The highest sequence published.
    pub(crate) sequence: Option<Sequence>,
    /// The last source position committed.
    pub(crate) position: Option<Position>,
    /// On an intent: the id of the transaction it opens.
    pub(crate) open: Option<String>,
    /// On a marker: the id of the transaction it belongs to (absent on
    /// markers written before transactions were opened ahead).
    pub(crate) txn: Option<String>,
    /// The source's state at the position (see `SourceBatch::state`).
    pub(crate) state: Option<String>,
}

impl Progress {
    fn to_json(&self) -> Vec<u8> {
        let mut doc = serde_json::json!({
            "sequence": self.sequence.map(|s| s.to_string()),
            "position": self.position.map(|p| p.0),
        });
        if let Some(open) = &self.open {
            doc["open"] = serde_json::Value::String(open.clone());
        }
        if let Some(txn) = &self.txn {
            doc["txn"] = serde_json::Value::String(txn.clone());
        }
        if let Some(state) = &self.state {
            doc["state"] = serde_json::Value::String(state.clone());
        }
        doc.to_string().into_bytes()
    }

    fn from_json(bytes: &[u8]) -> Option<Self> {
        let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let sequence = match &doc["sequence"] {
            serde_json::Value::Null => None,
            v => Some(v.as_str()?.parse().ok()?),
        };
        let position = match &doc["position"] {
            serde_json::Value::Null => None,
            v => Some(Position(v.as_u64()?)),
        };
        let text = |key: &str| match &doc[key] {
            serde_json::Value::Null => Some(None),
            v => v.as_str().map(|t| Some(t.to_owned())),
        };
        Some(Self {
            sequence,
            position,
            open: text("open")?,
            txn: text("txn")?,
            state: text("state")?,
        })
    }
}

/// Take the exclusive producer on the offsets topic, waiting as a standby
/// while another instance holds it. `None` when shutdown came first.
pub(crate) async fn fence<B: Broker>(
    def: &SourceDef,
    client: &B,
    status: &ConnectorStatus,
    shutdown: &CancellationToken,
) -> Result<Option<B::Producer>, TaskError> {
    let topic = offsets_topic(def);
    let options = ProducerOptions {
        access: Access::Exclusive,
        batching: None,
        compression: crate::config::Compression::None,
        name: None,
        schema: None,
    };
    let mut waiting = false;
    loop {
        match client.producer(&topic, &options).await {
            Ok(producer) => {
                if waiting {
                    info!(connector = %def.name, "the other instance is gone; taking over");
                }
                return Ok(Some(producer));
            }
            Err(e) if !e.is_retryable() => return Err(e.into()),
            Err(e) => {
                if !waiting {
                    info!(connector = %def.name, reason = %e, "another instance publishes for this source; waiting as a standby");
                    status.set_state(State::Standby);
                    waiting = true;
                } else {
                    debug!(connector = %def.name, reason = %e, "still a standby");
                }
                if !super::pause(STANDBY_RETRY, shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// The progress the last committed marker records, after aborting every
/// transaction an earlier instance left open.
///
/// The offsets topic holds, in order, each transaction's intent (outside
/// it) and its marker (inside it). A transaction's intent can follow the
/// previous transaction's marker before that one commits, so the last
/// message is not always a marker: the progress is the last marker's, and
/// every intent after it names a transaction that never committed. Such a
/// transaction, while open, hides what follows it; once aborted, the rest
/// is read.
pub(crate) async fn recover<B: Broker>(def: &SourceDef, client: &B) -> Result<Progress, TaskError> {
    let topic = offsets_topic(def);
    let mut backlog = client.backlog(&topic, RECOVERY_SUBSCRIPTION).await?;
    let result = recover_from(def, client, &topic, &mut backlog).await;
    backlog.close().await;
    result
}

async fn recover_from<B: Broker>(
    def: &SourceDef,
    client: &B,
    topic: &str,
    backlog: &mut B::Backlog,
) -> Result<Progress, TaskError> {
    let mut aborted = HashSet::new();
    loop {
        let messages = backlog
            .payloads()
            .into_iter()
            .map(Progress::from_json)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ConnectorError::permanent(format!(
                    "a message on {topic} is not a sluice progress marker"
                ))
            })?;
        let (keep, progress, orphans) = committed(&messages);
        let orphans: Vec<&String> = orphans
            .into_iter()
            .filter(|id| !aborted.contains(*id))
            .collect();
        if orphans.is_empty() {
            backlog.release_before(keep).await?;
            if messages.is_empty() {
                info!(connector = %def.name, "no progress marker: nothing was published before");
            } else {
                info!(
                    connector = %def.name,
                    sequence = ?progress.sequence.map(|s| s.to_string()),
                    position = ?progress.position.map(|p| p.0),
                    "recovered the published progress"
                );
            }
            return Ok(progress);
        }
        for open in orphans {
            let txn = Txn::from_id_text(open).ok_or_else(|| {
                ConnectorError::permanent(format!("a transaction id on {topic} is malformed"))
            })?;
            // It may have timed out already; either way it never commits.
            match client.abort_orphan(txn).await {
                Ok(()) => {
                    info!(connector = %def.name, txn = %open, "aborted a transaction a previous instance left open");
                }
                Err(e) => {
                    debug!(connector = %def.name, txn = %open, error = %e, "the previous instance's transaction is already gone");
                }
            }
            aborted.insert(open.clone());
        }
        // What the aborted transactions held back is visible now.
        backlog.read_more().await?;
    }
}

/// Of the messages on an offsets topic, in order: how many precede the
/// last marker (they may be released), the progress committed (the last
/// marker's), and the transactions whose intent has no marker, which never
/// committed. A transaction is opened ahead of its use, so its intent can
/// come before an earlier transaction's marker. Without a marker, the
/// first intent's progress is the committed one: it was written when that
/// was the latest.
fn committed(messages: &[Progress]) -> (usize, Progress, Vec<&String>) {
    let last_marker = messages.iter().rposition(|m| m.open.is_none());
    let (keep, progress) = match last_marker {
        Some(i) => (
            i,
            Progress {
                txn: None,
                ..messages[i].clone()
            },
        ),
        None => (
            0,
            messages
                .first()
                .map(|m| Progress {
                    open: None,
                    ..m.clone()
                })
                .unwrap_or_default(),
        ),
    };
    let marked: HashSet<&String> = messages.iter().filter_map(|m| m.txn.as_ref()).collect();
    // A marker that names no transaction was written when transactions
    // were opened one at a time: every intent before it committed.
    let legacy = messages
        .iter()
        .rposition(|m| m.open.is_none() && m.txn.is_none())
        .map_or(0, |i| i + 1);
    let orphans = messages[legacy..]
        .iter()
        .filter_map(|m| m.open.as_ref())
        .filter(|id| !marked.contains(id))
        .collect();
    (keep, progress, orphans)
}

/// A send in flight: it settles its own accounting when it completes.
type SendFut<'a> = Pin<Box<dyn Future<Output = Result<(), PulsarError>> + Send + 'a>>;

/// A transaction being filled.
struct OpenTxn<'a> {
    txn: Txn,
    topics: HashSet<String>,
    records: usize,
    opened: Instant,
    /// The last sequence sent in it.
    last: Option<Sequence>,
    /// The checkpoint it ends at, while no record came after it: only then
    /// may it commit.
    checkpoint: Option<Position>,
    /// The last state the source reached in it (a batch without one
    /// leaves it unchanged).
    state: Option<String>,
    /// Its sends awaiting the broker's receipt.
    sends: FuturesUnordered<SendFut<'a>>,
}

impl OpenTxn<'_> {
    /// Whether it has waited or grown enough to commit at its checkpoint.
    fn ripe(&self, max_records: usize) -> bool {
        self.checkpoint.is_some()
            && (self.records >= max_records || self.opened.elapsed() >= LINGER)
    }
}

/// A transaction being opened ahead: begun, with the topics it will
/// likely write registered.
type PrepareFut<'a> =
    Pin<Box<dyn Future<Output = Result<(Txn, HashSet<String>), PulsarError>> + Send + 'a>>;

/// A transaction opened ahead, its intent published or on its way.
struct Spare {
    txn: Txn,
    topics: HashSet<String>,
    intent: Pin<Box<dyn Future<Output = pulsar::SendResult> + Send>>,
    made: Instant,
}

/// Open a transaction and register `topics` with it, all at once.
fn prepare<B: Broker>(client: &B, topics: Vec<String>) -> PrepareFut<'_> {
    Box::pin(async move {
        let txn = client.begin(TXN_TIMEOUT).await?;
        futures_util::future::try_join_all(topics.iter().map(|t| client.register(&txn, t))).await?;
        Ok((txn, topics.into_iter().collect()))
    })
}

/// What a committed transaction moved forward.
struct Committed {
    records: usize,
    last: Option<Sequence>,
    checkpoint: Option<Position>,
    state: Option<String>,
}

type CommitFut<'a> = Pin<Box<dyn Future<Output = Result<Committed, TaskError>> + Send + 'a>>;

/// The bytes and count of sends in flight, across transactions.
#[derive(Default)]
struct InFlight {
    bytes: AtomicU64,
    sends: AtomicUsize,
}

struct Run<'a, B: Broker> {
    def: &'a SourceDef,
    client: &'a B,
    publisher: Publisher<'a, B>,
    /// The producer on the offsets topic, which fences other instances.
    marker: B::Producer,
    status: &'a ConnectorStatus,
    /// The transaction being filled.
    open: Option<OpenTxn<'a>>,
    /// The transaction before it, while it commits: at most one at a time,
    /// so transactions commit in order.
    committing: Option<CommitFut<'a>>,
    /// A checkpoint reached with no transaction open while one committed:
    /// durable once that one has, with the source's state at it.
    pending_checkpoint: Option<Position>,
    pending_state: Option<String>,
    /// The next transaction, opened ahead so that a record never waits for
    /// the coordinator: being opened, or ready.
    preparing: Option<PrepareFut<'a>>,
    spare: Option<Spare>,
    /// The topics the last transaction wrote, registered ahead with the next.
    last_topics: HashSet<String>,
    /// The highest sequence in a committed transaction.
    published: Option<Sequence>,
    /// The last position committed to the source.
    position: Option<Position>,
    /// The source's state last committed, or reached with nothing to commit.
    state: Option<String>,
    skipped: u64,
    in_flight: &'a InFlight,
}

/// Publish until the source is exhausted, shutdown is requested, or
/// something fails.
pub(crate) async fn run<B: Broker, S: Source>(
    def: &SourceDef,
    client: &B,
    marker: B::Producer,
    progress: Progress,
    source: &mut S,
    status: &Arc<ConnectorStatus>,
    shutdown: &CancellationToken,
) -> Result<Finished, TaskError> {
    let in_flight = InFlight::default();
    let mut run = Run {
        def,
        client,
        publisher: Publisher::new(def, client, Access::Exclusive),
        marker,
        status,
        open: None,
        committing: None,
        pending_checkpoint: None,
        pending_state: None,
        preparing: None,
        spare: None,
        last_topics: HashSet::new(),
        published: progress.sequence,
        position: progress.position,
        state: progress.state,
        skipped: 0,
        in_flight: &in_flight,
    };
    let result = run.pump(source, shutdown).await;
    // Whatever was not committed is read again on the next start. A
    // transaction that was committing may have committed: recovery tells.
    let Run {
        publisher,
        marker,
        open,
        committing,
        preparing,
        spare,
        ..
    } = run;
    drop((committing, preparing));
    for txn in open.map(|o| o.txn).into_iter().chain(spare.map(|s| s.txn)) {
        let _ = client.abort(txn).await;
    }
    publisher.close().await;
    marker.close().await;
    result
}

impl<'a, B: Broker> Run<'a, B> {
    async fn pump<S: Source>(
        &mut self,
        source: &mut S,
        shutdown: &CancellationToken,
    ) -> Result<Finished, TaskError> {
        let max_in_flight = self.def.producer.max_pending_messages;
        let max_in_flight_bytes = self.client.memory_limit();
        self.status.set_state(State::Running);
        loop {
            let linger = self
                .open
                .as_ref()
                .filter(|t| t.checkpoint.is_some() && self.committing.is_none())
                .map(|t| tokio::time::Instant::from_std(t.opened + LINGER));
            let sending = self.open.as_ref().is_some_and(|t| !t.sends.is_empty());
            let room = self.in_flight.sends.load(Ordering::Relaxed) < max_in_flight
                && self.in_flight.bytes.load(Ordering::Relaxed) < max_in_flight_bytes;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    self.finish(source).await?;
                    if self.open.as_ref().is_some_and(|t| t.checkpoint.is_some()) {
                        self.start_commit();
                        self.finish(source).await?;
                    }
                    return Ok(Finished::Stopped);
                }
                done = async { self.committing.as_mut().expect("guarded").await }, if self.committing.is_some() => {
                    self.committing = None;
                    if self.open.as_ref().is_some_and(|t| t.records > 0) {
                        crate::failpoint::pass("eo-committed-while-next-fills");
                    }
                    self.committed(done?, source).await?;
                    if self.open.as_ref().is_some_and(|t| t.ripe(max_in_flight)) {
                        self.start_commit();
                    }
                }
                prepared = async { self.preparing.as_mut().expect("guarded").await }, if self.preparing.is_some() => {
                    self.preparing = None;
                    self.spare = Some(self.spare_of(prepared?));
                }
                Some(sent) = async { self.open.as_mut().expect("guarded").sends.next().await }, if sending => {
                    sent?;
                    if self.committing.is_some() {
                        crate::failpoint::pass("eo-send-during-commit");
                    }
                }
                () = tokio::time::sleep_until(linger.unwrap_or_else(tokio::time::Instant::now)), if linger.is_some() => {
                    self.start_commit();
                }
                read = source.read(), if room => {
                    let Some(batch) = read? else {
                        // Exhausted: what was read is whole, publish it.
                        self.finish(source).await?;
                        if self.open.is_some() {
                            self.start_commit();
                            self.finish(source).await?;
                        }
                        return Ok(Finished::Exhausted);
                    };
                    for record in batch.records {
                        self.publish(record).await?;
                    }
                    if let Some(checkpoint) = batch.checkpoint {
                        match &mut self.open {
                            // Nothing open: every record up to here is
                            // durable once the committing transaction is.
                            None if self.committing.is_some() => {
                                self.pending_checkpoint = Some(checkpoint);
                                if batch.state.is_some() {
                                    self.pending_state = batch.state;
                                }
                            }
                            None => {
                                // Nothing to commit it with: the next marker
                                // carries it.
                                if batch.state.is_some() {
                                    self.state = batch.state;
                                }
                                source.commit(checkpoint).await?;
                            }
                            Some(t) => {
                                t.checkpoint = Some(checkpoint);
                                if batch.state.is_some() {
                                    t.state = batch.state;
                                }
                                if self.committing.is_none() && t.ripe(max_in_flight) {
                                    self.start_commit();
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Send one record in the open transaction (opening one if needed), or
    /// skip it if a committed transaction already holds it.
    async fn publish(&mut self, record: SourceRecord) -> Result<(), TaskError> {
        let bytes = record.value_len() as u64;
        self.status.count_in(1, bytes);
        let Some(sequence) = record.sequence else {
            return Err(ConnectorError::permanent(
                "EFFECTIVELY_ONCE needs records that carry a sequence; this source's do not",
            )
            .into());
        };
        if self.published.is_some_and(|p| sequence <= p) {
            self.skipped += 1;
            return Ok(());
        }
        if self.skipped > 0 {
            info!(connector = %self.def.name, records = self.skipped, "skipped records that were already published");
            self.skipped = 0;
        }
        if self.open.is_none() {
            self.open = Some(self.begin().await?);
        }
        let producer = self.publisher.producer(&record).await?;
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if !open.topics.contains(producer.topic()) {
            self.client.register(&open.txn, producer.topic()).await?;
            open.topics.insert(producer.topic().to_owned());
        }
        open.records += 1;
        open.last = Some(sequence);
        // Its checkpoint is passed; the state reached stays: a batch with
        // no state leaves it as it was, and a chunk's progress must commit
        // with the chunk's rows even when stream records follow them.
        open.checkpoint = None;
        let event_ms = record.event_time_ms;
        let send = producer.publish(record, Some(&open.txn)).await;
        let (status, in_flight) = (self.status, self.in_flight);
        in_flight.bytes.fetch_add(bytes, Ordering::Relaxed);
        in_flight.sends.fetch_add(1, Ordering::Relaxed);
        open.sends.push(Box::pin(async move {
            let result = send.await;
            in_flight.bytes.fetch_sub(bytes, Ordering::Relaxed);
            in_flight.sends.fetch_sub(1, Ordering::Relaxed);
            result?;
            // Its record counts as delivered when the transaction commits.
            status.count_out(0, bytes);
            if let Some(t) = event_ms {
                status.observe_lag(t);
            }
            Ok(())
        }));
        Ok(())
    }

    /// A transaction opened ahead, made a spare by publishing its intent
    /// (outside it) now: should this instance die with it open, the next
    /// one finds the intent without a marker and aborts it. The intent
    /// holds the progress committed so far.
    fn spare_of(&self, (txn, topics): (Txn, HashSet<String>)) -> Spare {
        let intent = Progress {
            sequence: self.published,
            position: self.position,
            open: Some(txn.id_text()),
            txn: None,
            state: self.state.clone(),
        };
        let intent = self.marker.send_in(
            SourceRecord {
                value: Some(intent.to_json()),
                ..SourceRecord::default()
            },
            None,
        );
        Spare {
            txn,
            topics,
            intent: Box::pin(intent),
            made: Instant::now(),
        }
    }

    /// The transaction for the next records: the spare, once its intent
    /// is durable (opened now if there is none, or it waited too long).
    /// The next spare starts opening at once.
    async fn begin(&mut self) -> Result<OpenTxn<'a>, TaskError> {
        let started = Instant::now();
        if let Some(stale) = self.spare.take_if(|s| s.made.elapsed() >= SPARE_MAX_AGE) {
            let _ = self.client.abort(stale.txn).await;
        }
        let mut ahead = self.last_topics.clone();
        ahead.insert(self.marker.topic().to_owned());
        let ahead: Vec<String> = ahead.into_iter().collect();
        let spare = match self.spare.take() {
            Some(spare) => spare,
            None => {
                let prepared = match self.preparing.take() {
                    Some(preparing) => preparing.await?,
                    None => prepare(self.client, ahead.clone()).await?,
                };
                self.spare_of(prepared)
            }
        };
        spare.intent.await?;
        self.preparing = Some(prepare(self.client, ahead));
        debug!(connector = %self.def.name, took_us = started.elapsed().as_micros() as u64, "transaction opened");
        Ok(OpenTxn {
            txn: spare.txn,
            topics: spare.topics,
            records: 0,
            opened: Instant::now(),
            last: None,
            checkpoint: None,
            state: None,
            sends: FuturesUnordered::new(),
        })
    }

    /// Close the open transaction with its marker and commit it in the
    /// background, while the next one fills. Called only when no other
    /// commit is under way, so that transactions commit in order. The
    /// marker is queued now, ahead of the next transaction's intent.
    fn start_commit(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        debug_assert!(self.committing.is_none());
        let progress = Progress {
            sequence: open.last.or(self.published),
            position: open.checkpoint.or(self.position),
            open: None,
            txn: Some(open.txn.id_text()),
            state: open.state.clone().or_else(|| self.state.clone()),
        };
        self.last_topics.clone_from(&open.topics);
        let marker = self.marker.send_in(
            SourceRecord {
                value: Some(progress.to_json()),
                ..SourceRecord::default()
            },
            Some(&open.txn),
        );
        let client = self.client;
        let name = self.def.name.clone();
        let filled_us = open.opened.elapsed().as_micros() as u64;
        let state = progress.state.clone();
        let OpenTxn {
            txn,
            records,
            last,
            checkpoint,
            mut sends,
            ..
        } = open;
        self.committing = Some(Box::pin(async move {
            let started = Instant::now();
            let outcome = async {
                while let Some(sent) = sends.next().await {
                    sent?;
                }
                marker.await?;
                Ok::<_, TaskError>(())
            }
            .await;
            if let Err(e) = outcome {
                let _ = client.abort(txn).await;
                return Err(e);
            }
            let drained_us = started.elapsed().as_micros() as u64;
            client.commit(txn).await?;
            debug!(connector = %name, records, filled_us, drained_us, took_us = started.elapsed().as_micros() as u64, "transaction committed");
            Ok(Committed {
                records,
                last,
                checkpoint,
                state,
            })
        }));
    }

    /// A transaction committed: its records are published, and its
    /// checkpoint (or a later one reached meanwhile) is durable.
    async fn committed<S: Source>(
        &mut self,
        done: Committed,
        source: &mut S,
    ) -> Result<(), TaskError> {
        self.status.count_out(done.records as u64, 0);
        self.published = done.last.or(self.published);
        let checkpoint = match (done.checkpoint, self.pending_checkpoint.take()) {
            (_, Some(later)) => Some(later),
            (c, None) => c,
        };
        if done.state.is_some() {
            self.state = done.state;
        }
        if let Some(later) = self.pending_state.take() {
            self.state = Some(later);
        }
        if let Some(checkpoint) = checkpoint {
            self.position = Some(checkpoint);
            source.commit(checkpoint).await?;
        }
        Ok(())
    }

    /// Wait for the transaction under commit, if any.
    async fn finish<S: Source>(&mut self, source: &mut S) -> Result<(), TaskError> {
        if let Some(committing) = self.committing.take() {
            let done = committing.await?;
            self.committed(done, source).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        let p = Progress {
            sequence: Some(Sequence::from_parts(7, 3)),
            position: Some(Position(9)),
            open: None,
            txn: Some("1:1".into()),
            state: Some("{\"tables\":[]}".into()),
        };
        assert_eq!(Progress::from_json(&p.to_json()), Some(p.clone()));
        let intent = Progress {
            open: Some("1:2".into()),
            txn: None,
            ..p
        };
        assert_eq!(Progress::from_json(&intent.to_json()), Some(intent));
        assert_eq!(
            Progress::from_json(&Progress::default().to_json()),
            Some(Progress::default())
        );
        assert_eq!(Progress::from_json(br#"{"sequence": 5}"#), None);
    }

    /// The progress of sequence `n`, as committed.
    fn at(n: u64) -> Progress {
        Progress {
            sequence: Some(Sequence::from_parts(n, 0)),
            position: Some(Position(n * 10)),
            ..Progress::default()
        }
    }

    /// The marker of transaction `txn`, committing sequence `n`.
    fn marker(n: u64, txn: &str) -> Progress {
        Progress {
            txn: Some(txn.into()),
            ..at(n)
        }
    }

    /// The intent of transaction `txn`, written when `n` had committed.
    fn intent(n: u64, txn: &str) -> Progress {
        Progress {
            open: Some(txn.into()),
            ..at(n)
        }
    }

    #[test]
    fn the_progress_is_the_last_markers_and_unmarked_intents_are_orphans() {
        // Nothing yet.
        assert_eq!(committed(&[]), (0, Progress::default(), vec![]));
        // A clean stop: every intent has its marker.
        let clean = [
            intent(1, "0:1"),
            marker(2, "0:1"),
            intent(2, "0:2"),
            marker(3, "0:2"),
        ];
        assert_eq!(committed(&clean), (3, at(3), vec![]));
        // Killed while 0:3 committed and 0:4, opened ahead while 0:3
        // filled, was filling: 0:4's intent comes before 0:3's marker and
        // names sequence 2. The progress is 3, and 0:4 is an orphan.
        let ahead = [
            marker(2, "0:2"),
            intent(2, "0:3"),
            intent(2, "0:4"),
            marker(3, "0:3"),
        ];
        let (keep, progress, orphans) = committed(&ahead);
        assert_eq!((keep, progress), (3, at(3)));
        assert_eq!(orphans, vec!["0:4"]);
        // Killed before either committed: both are orphans.
        let both = [marker(2, "0:2"), intent(2, "0:3"), intent(2, "0:4")];
        let (keep, progress, orphans) = committed(&both);
        assert_eq!((keep, progress), (0, at(2)));
        assert_eq!(orphans, vec!["0:3", "0:4"]);
        // A backlog that starts at an intent (its marker released): the
        // intent's progress is what had committed.
        let released = [intent(5, "0:9")];
        let (keep, progress, orphans) = committed(&released);
        assert_eq!((keep, progress), (0, at(5)));
        assert_eq!(orphans, vec!["0:9"]);
        // Markers written before they named their transaction: an intent
        // after the last one is an orphan.
        let legacy = [intent(1, "0:1"), at(2), intent(2, "0:5")];
        let (keep, progress, orphans) = committed(&legacy);
        assert_eq!((keep, progress), (1, at(2)));
        assert_eq!(orphans, vec!["0:5"]);
    }
}
