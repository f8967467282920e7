//! A source under EFFECTIVELY_ONCE: whole source transactions are published
//! in Pulsar transactions, each with a progress marker, by one instance at a
//! time.
//!
//! - **Fencing.** The instance that holds the exclusive producer on the
//!   source's offsets topic (`sluice-offsets.<name>`), its lease, publishes;
//!   another instance of the same source waits as a standby until it can
//!   take that producer, which happens when the first one stops or dies,
//!   or until it has heard no beat from it for a while, when it fences it
//!   out (`beats`). An instance that took the lease that way fences out the
//!   producers the old one still holds on the table topics.
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

mod beats;
mod progress;
mod recovery;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_connectors::{
    Commit, ConnectorError, Position, Sequence, Source, SourceBatch, SourceRecord,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

pub(crate) use beats::beat;
#[cfg(test)]
pub(crate) use beats::{BEAT_EVERY, TAKEOVER_AFTER, beats_topic};
pub(crate) use progress::Progress;
#[cfg(test)]
pub(crate) use recovery::offsets_topic;
pub(crate) use recovery::{Lease, fence, recover, same_origin};

use super::TaskError;
use super::broker::{Broker, Publish};
use super::source_task::{Finished, Publisher, Reading, read};
use super::status::{ConnectorStatus, State};
use crate::config::SourceDef;
use crate::pulsar::{self, Access, PulsarError, Txn};

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
    /// What the source reads, recorded with every marker and intent.
    origin: Option<String>,
    skipped: u64,
    in_flight: &'a InFlight,
}

/// Publish until the source is exhausted, shutdown is requested, or
/// something fails.
pub(crate) async fn run<B: Broker, S: Source>(
    def: &SourceDef,
    client: &B,
    lease: Lease<B::Producer>,
    progress: Progress,
    source: &mut S,
    status: &Arc<ConnectorStatus>,
    shutdown: &CancellationToken,
) -> Result<Finished, TaskError> {
    let in_flight = InFlight::default();
    let mut run = Run {
        def,
        client,
        // A lease taken by fencing may find the table topics still held by
        // the instance fenced out: those producers are fenced out too.
        publisher: Publisher::new(def, client, Access::Exclusive)
            .fencing_stale_holders(lease.fenced_out),
        marker: lease.marker,
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
        origin: def.spec.origin(),
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
        let committer = source.committer();
        // A read once begun is polled to its end (the source contract).
        let mut idle = Some(source);
        let mut reading: Option<Reading<'_, S>> = None;
        self.status.work_moved(false);
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
            if room && let Some(source) = idle.take() {
                reading = Some(read(source));
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    self.finish(&committer).await?;
                    if self.open.as_ref().is_some_and(|t| t.checkpoint.is_some()) {
                        self.start_commit();
                        self.finish(&committer).await?;
                    }
                    return Ok(Finished::Stopped);
                }
                done = async { self.committing.as_mut().expect("guarded").await }, if self.committing.is_some() => {
                    self.committing = None;
                    if self.open.as_ref().is_some_and(|t| t.records > 0) {
                        crate::failpoint::pass("eo-committed-while-next-fills");
                    }
                    self.committed(done?, &committer).await?;
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
                (source, read) = async { reading.as_mut().expect("guarded").await }, if reading.is_some() => {
                    reading = None;
                    idle = Some(source);
                    let Some(batch) = read? else {
                        // Exhausted: what was read is whole, publish it.
                        self.finish(&committer).await?;
                        if self.open.is_some() {
                            self.start_commit();
                            self.finish(&committer).await?;
                        }
                        return Ok(Finished::Exhausted);
                    };
                    self.take(batch, &committer, max_in_flight).await?;
                }
            }
        }
    }

    /// Publish a batch read, and place its checkpoint: in the open
    /// transaction, after the one committing, or, with nothing to commit it
    /// with, committed now (the next marker carries its state).
    async fn take<C: Commit>(
        &mut self,
        batch: SourceBatch,
        committer: &C,
        max_in_flight: usize,
    ) -> Result<(), TaskError> {
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
                    committer.commit(checkpoint).await?;
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
        Ok(())
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
        // Outstanding from here: opening a transaction, finding the
        // producer and handing the record over may hang too.
        self.status.work_started();
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
            // A receipt is work moving, before the commit: a large
            // transaction is published in parts, each with receipts.
            status.work_moved(true);
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
            origin: self.origin.clone(),
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
            origin: self.origin.clone(),
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
    async fn committed<C: Commit>(
        &mut self,
        done: Committed,
        committer: &C,
    ) -> Result<(), TaskError> {
        self.status.count_out(done.records as u64, 0);
        self.status
            .work_moved(self.open.as_ref().is_some_and(|t| t.records > 0));
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
            committer.commit(checkpoint).await?;
        }
        Ok(())
    }

    /// Wait for the transaction under commit, if any.
    async fn finish<C: Commit>(&mut self, committer: &C) -> Result<(), TaskError> {
        if let Some(committing) = self.committing.take() {
            let done = committing.await?;
            self.committed(done, committer).await?;
        }
        Ok(())
    }
}
