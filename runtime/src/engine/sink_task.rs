//! One run of a sink connector: receive, batch, write, then acknowledge.
//!
//! Under ATLEAST_ONCE a batch is acknowledged only after the sink reports it
//! durable. A retryable failure retries the whole batch with backoff, for
//! as long as it takes. A permanent failure splits the batch in halves,
//! down to single records, to find the records the target rejects while
//! their neighbours commit; each rejected record is tried again and
//! dead-lettered ([`super::dead_letters`]) before the records behind it are
//! written, and acknowledged with the batch. Without a dead-letter topic
//! the run fails instead, so that nothing is dropped.
//! Under ATMOST_ONCE a batch is acknowledged on receipt and written once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use sluice_connectors::{ConnectorError, Prepare, Prepared, Sink, SinkRecord, Written};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::broker::{Broker, Consume};
use super::dead_letters::DeadLetters;
use super::status::{ConnectorStatus, State};
use super::{Backoff, TaskError};
use crate::config::{Guarantee, SinkDef};
use crate::pulsar::{Followed, Received};

/// How often a sink looks again at what its inputs are: topics matching
/// `topicsPattern`, partitions added to a partitioned topic, input topics
/// that did not exist.
pub(crate) const DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);

/// How a sink spends `pulsar.memoryLimitBytes` (the `limit`): on payload
/// received and not yet acknowledged, all of it (one batch of it at most a
/// quarter); on the client's prefetch, a quarter split across the input
/// topics, in messages of the broker's largest size, at least one per
/// topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Memory {
    pub(crate) held: Option<u64>,
    pub(crate) prefetch: Option<u64>,
    pub(crate) batch: u64,
}

impl Memory {
    /// The shares for `topics` input topics; `u64::MAX` means no limit.
    pub(crate) fn of(limit: u64, topics: usize) -> Self {
        if limit == u64::MAX {
            return Self {
                held: None,
                prefetch: None,
                batch: u64::MAX,
            };
        }
        Self {
            held: Some(limit),
            prefetch: Some((limit / 4 / topics.max(1) as u64).max(1)),
            batch: (limit / 4).max(1),
        }
    }
}

/// How a sink run ended without failing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Shutdown was requested.
    Shutdown,
    /// A topic it read is no longer among its inputs (`topicsPattern` no
    /// longer matches it): subscribe again.
    TopicsChanged,
    /// The client has received enough large messages to be replaced (see
    /// [`LARGE_MESSAGE`]).
    Recycle,
}

/// Messages larger than this (the Pulsar client's read buffer) leave
/// memory behind on the connection that received them, until the client
/// closes: magnetar-driver 1.7.4 keeps about their size (decision record
/// 0005). So a sink ends its run, as on shutdown, once it has received
/// `pulsar.memoryLimitBytes` of them, and starts again on a new client.
const LARGE_MESSAGE: usize = 64 * 1024;

/// Run the sink until shutdown is requested, its topics change, or
/// something fails.
pub(crate) async fn run<B: Broker, S: Sink>(
    def: &SinkDef,
    client: &B,
    topics: &[String],
    consumer: &mut B::Consumer,
    sink: &mut S,
    status: &Arc<ConnectorStatus>,
    shutdown: &CancellationToken,
) -> Result<Ended, TaskError> {
    let mut dead_letters = DeadLetters::new(def, client);
    let mut intake = Intake::new(def, client, topics, consumer, sink);
    status.set_state(State::Running);
    let mut large_bytes = 0u64;
    loop {
        if large_bytes >= client.memory_limit() {
            info!(connector = %def.name, bytes = large_bytes, "received enough large messages on this connection; reconnecting to free what the client keeps of them");
            return Ok(Ended::Recycle);
        }
        let waited = Instant::now();
        let mut batch = match intake.next(shutdown).await? {
            Next::Batch(batch) => batch,
            Next::End(ended) => return Ok(ended),
        };
        crate::failpoint::pass("sink-batch");
        let bytes = total_bytes(&batch.records);
        status.count_in(batch.records.len() as u64, bytes);
        large_bytes += batch
            .records
            .iter()
            .filter_map(|r| r.value.as_ref().map(Vec::len))
            .filter(|n| *n > LARGE_MESSAGE)
            .map(|n| n as u64)
            .sum::<u64>();
        if def.guarantee == Guarantee::AtMostOnce {
            intake.consumer.ack(&batch.handles).await?;
            at_most_once(def, sink, &batch.records, bytes, status).await;
            continue;
        }
        if let Some(ended) = intake.look_again().await? {
            return Ok(ended);
        }
        let wait_us = waited.elapsed().as_micros() as u64;
        let written = Instant::now();
        let prepared = batch.prepared.take();
        let write = write_isolating(
            sink,
            &batch.records,
            prepared,
            &mut dead_letters,
            status,
            shutdown,
        );
        // While this batch is written, the next is gathered, and made
        // ready on another thread once whole.
        // What the consumer holds already is gathered before the write
        // starts; the rest while it runs.
        tokio::pin!(write);
        tokio::select! {
            biased;
            ahead = intake.read_ahead() => {
                ahead?;
                write.await?;
            }
            done = &mut write => done?,
        }
        let write_us = written.elapsed().as_micros() as u64;
        let acked = Instant::now();
        intake.consumer.ack(&batch.handles).await?;
        debug!(
            connector = %def.name, records = batch.records.len(), wait_us, write_us,
            ack_us = acked.elapsed().as_micros() as u64, ahead = intake.ahead.is_some(), "batch applied"
        );
    }
}

/// Where a sink's batches come from: its consumer, what the consumer gave
/// short of a whole batch, and the next batch, read ahead and being made
/// ready while this one is written.
struct Intake<'a, B: Broker> {
    def: &'a SinkDef,
    client: &'a B,
    consumer: &'a mut B::Consumer,
    carry: Vec<Received<<B::Consumer as Consume>::Handle>>,
    ahead: Option<Ahead<<B::Consumer as Consume>::Handle>>,
    /// When to look again at what the inputs are.
    discovery: tokio::time::Interval,
    /// A batch's records and bytes, at most.
    limits: (usize, u64),
    max_wait: Duration,
    /// The sink's, but none under ATMOST_ONCE: a batch is acknowledged
    /// before it is written, and nothing is gained by reading the next one
    /// early.
    preparer: Option<Arc<dyn Prepare>>,
}

/// What [`Intake::next`] gave.
enum Next<H> {
    Batch(Taken<H>),
    End(Ended),
}

impl<'a, B: Broker> Intake<'a, B> {
    fn new<S: Sink>(
        def: &'a SinkDef,
        client: &'a B,
        topics: &[String],
        consumer: &'a mut B::Consumer,
        sink: &S,
    ) -> Self {
        let policy = sink.batch_policy();
        let memory = Memory::of(client.memory_limit(), topics.len());
        let mut discovery = tokio::time::interval_at(
            tokio::time::Instant::now() + DISCOVERY_INTERVAL,
            DISCOVERY_INTERVAL,
        );
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            def,
            client,
            consumer,
            carry: Vec::new(),
            ahead: None,
            discovery,
            limits: (policy.max_records, memory.batch),
            max_wait: policy.max_wait,
            preparer: sink
                .preparer()
                .filter(|_| def.guarantee != Guarantee::AtMostOnce),
        }
    }

    /// The next batch: the one read ahead, or one gathered now.
    async fn next(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Next<<B::Consumer as Consume>::Handle>, TaskError> {
        loop {
            // A batch read ahead is not acknowledged: dropped here, it is
            // delivered again.
            let next = match self.ahead.take() {
                Some(a) => match a.ready().await? {
                    _ if shutdown.is_cancelled() => Wait::Shutdown,
                    taken => Wait::Ready(taken),
                },
                None => {
                    next_batch(
                        self.consumer,
                        &mut self.carry,
                        self.limits,
                        self.max_wait,
                        Some(&mut self.discovery),
                        shutdown,
                    )
                    .await?
                }
            };
            return Ok(match next {
                Wait::Batch(batch) => Next::Batch(Taken::of(batch)),
                Wait::Ready(taken) => Next::Batch(taken),
                Wait::Shutdown => Next::End(Ended::Shutdown),
                Wait::Discover => match self.discover().await? {
                    Followed::Removed => Next::End(Ended::TopicsChanged),
                    Followed::Current => continue,
                },
            });
        }
    }

    /// Look again at what the inputs are, when it is time: a sink that
    /// reads ahead may never wait for a batch, where it would look.
    async fn look_again(&mut self) -> Result<Option<Ended>, TaskError> {
        if self.preparer.is_some()
            && self.discovery.tick().now_or_never().is_some()
            && self.discover().await? == Followed::Removed
        {
            return Ok(Some(Ended::TopicsChanged));
        }
        Ok(None)
    }

    /// Gather the next whole batch and have the sink make it ready on
    /// another thread; pending for ever without a preparer. Cancel-safe:
    /// what was received is kept for the next batch.
    async fn read_ahead(&mut self) -> Result<(), TaskError> {
        let Some(preparer) = self.preparer.clone() else {
            return std::future::pending().await;
        };
        let next = gather(self.consumer, &mut self.carry, self.limits).await?;
        self.ahead = Some(Ahead::start(next, &preparer));
        Ok(())
    }

    /// Look at what the inputs are now, and follow them; `Removed` when a
    /// topic read left them, which needs a new subscription.
    async fn discover(&mut self) -> Result<Followed, TaskError> {
        let now = super::sink_topics(self.def, self.client).await?;
        let followed = self.consumer.follow(&now).await?;
        if followed == Followed::Removed {
            info!(connector = %self.def.name, topics = now.len(), "a topic left the inputs (topicsPattern no longer matches it); subscribing again");
        }
        Ok(followed)
    }
}

/// A batch taken from the consumer: its records, what acknowledges them,
/// their share of the memory limit (released when this is dropped, after
/// the acknowledgement), and what the sink made ready of it.
struct Taken<H> {
    records: Vec<SinkRecord>,
    handles: Vec<H>,
    _held: Vec<Option<tokio::sync::OwnedSemaphorePermit>>,
    prepared: Option<Prepared>,
}

impl<H: Copy> Taken<H> {
    fn of(batch: Vec<Received<H>>) -> Self {
        let mut taken = Self {
            records: Vec::with_capacity(batch.len()),
            handles: Vec::with_capacity(batch.len()),
            _held: Vec::with_capacity(batch.len()),
            prepared: None,
        };
        for r in batch {
            taken.handles.push(r.handle);
            taken._held.push(r.held);
            taken.records.push(r.record);
        }
        taken
    }
}

/// A batch read ahead, being made ready on another thread.
struct Ahead<H> {
    taken: Taken<H>,
    preparing: tokio::task::JoinHandle<(Vec<SinkRecord>, Prepared)>,
}

impl<H: Copy> Ahead<H> {
    fn start(batch: Vec<Received<H>>, preparer: &Arc<dyn Prepare>) -> Self {
        let mut taken = Taken::of(batch);
        let records = std::mem::take(&mut taken.records);
        let preparer = Arc::clone(preparer);
        let preparing = tokio::task::spawn_blocking(move || {
            let prepared = preparer.prepare(&records);
            (records, prepared)
        });
        Self { taken, preparing }
    }

    async fn ready(self) -> Result<Taken<H>, TaskError> {
        let (records, prepared) = self
            .preparing
            .await
            .map_err(|e| TaskError::Panicked(format!("preparing a batch: {e}")))?;
        Ok(Taken {
            records,
            prepared: Some(prepared),
            ..self.taken
        })
    }
}

/// Write a batch that is acknowledged already, once: what fails is
/// dropped and counted.
async fn at_most_once<S: Sink>(
    def: &SinkDef,
    sink: &mut S,
    records: &[SinkRecord],
    bytes: u64,
    status: &ConnectorStatus,
) {
    let started = Instant::now();
    match sink.write(records).await {
        Ok(Written::All) => delivered(status, records, bytes, started),
        // The sink names what it refused; the rest are durable.
        Ok(Written::AllBut(refused)) => {
            let lost = refused.len() as u64;
            let lost_bytes: u64 = refused
                .iter()
                .map(|(i, _)| total_bytes(std::slice::from_ref(&records[*i])))
                .sum();
            status.count_out(records.len() as u64 - lost, bytes - lost_bytes);
            status.count_dropped(lost);
            if let Some((_, e)) = refused.first() {
                status.set_error(&e.to_string());
                warn!(connector = %def.name, records = lost, error = %e, "the target refused records; at most once, they are dropped");
            }
        }
        // A record the target refuses failed the batch's transaction,
        // which committed nothing: writing the records one at a time
        // cannot apply any twice, and loses only the refused ones.
        Err(e) if e.kind() == sluice_connectors::ErrorKind::Permanent && records.len() > 1 => {
            let mut lost = 0u64;
            for record in records {
                let one = std::slice::from_ref(record);
                let started = Instant::now();
                match sink.write(one).await {
                    Ok(Written::All) => {
                        let bytes = record.value.as_ref().map_or(0, Vec::len) as u64;
                        delivered(status, one, bytes, started);
                    }
                    Ok(Written::AllBut(refused)) => {
                        lost += 1;
                        if let Some((_, e)) = refused.first() {
                            status.set_error(&e.to_string());
                        }
                    }
                    Err(e) => {
                        lost += 1;
                        status.set_error(&e.to_string());
                    }
                }
            }
            status.count_dropped(lost);
            warn!(connector = %def.name, records = lost, error = %e, "the target refused records; at most once, they are dropped");
        }
        Err(e) => {
            // At most once: the batch is acknowledged and is not tried
            // again; a failure that is not the records' own (a lost
            // connection may have lost a commit's answer) could apply it
            // twice.
            status.count_dropped(records.len() as u64);
            status.set_error(&e.to_string());
            warn!(connector = %def.name, records = records.len(), error = %e, "write failed; at most once, the batch is dropped");
        }
    }
}

/// The payload bytes of `records`.
fn total_bytes(records: &[SinkRecord]) -> u64 {
    records
        .iter()
        .map(|r| r.value.as_ref().map_or(0, Vec::len) as u64)
        .sum()
}

fn delivered(status: &ConnectorStatus, records: &[SinkRecord], bytes: u64, started: Instant) {
    status.batch_latency.observe(started.elapsed());
    status.count_out(records.len() as u64, bytes);
    if let Some(t) = records
        .iter()
        .rev()
        .find_map(|r| r.event_time_ms.or(Some(r.publish_time_ms)))
    {
        status.observe_lag(t);
    }
}

/// What waiting for a batch gave.
enum Wait<H> {
    Batch(Vec<Received<H>>),
    /// A batch read ahead and made ready.
    Ready(Taken<H>),
    Shutdown,
    /// Time to look for new topics; no message was taken.
    Discover,
}

async fn tick(discovery: Option<&mut tokio::time::Interval>) {
    match discovery {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The payload bytes of a received message.
fn size<H>(r: &Received<H>) -> u64 {
    r.record.value.as_ref().map_or(0, Vec::len) as u64
}

/// Wait for a first message (unless `carry` holds some already), then
/// gather more until `max` records, `max_bytes` of payload (passed by at
/// most the last record) or `max_wait`.
async fn next_batch<C: Consume>(
    consumer: &mut C,
    carry: &mut Vec<Received<C::Handle>>,
    (max, max_bytes): (usize, u64),
    max_wait: Duration,
    discovery: Option<&mut tokio::time::Interval>,
    shutdown: &CancellationToken,
) -> Result<Wait<C::Handle>, TaskError> {
    let mut batch = std::mem::take(carry);
    if batch.is_empty() {
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(Wait::Shutdown),
            r = consumer.receive() => r?,
            () = tick(discovery) => return Ok(Wait::Discover),
        };
        batch.push(first);
    }
    let mut bytes: u64 = batch.iter().map(size).sum();
    let deadline = tokio::time::Instant::now() + max_wait;
    while batch.len() < max && bytes < max_bytes {
        let r = if let Some(r) = consumer.try_receive() {
            r?
        } else {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(deadline) => break,
                r = consumer.receive() => r?,
            }
        };
        bytes += size(&r);
        batch.push(r);
    }
    Ok(Wait::Batch(batch))
}

/// A whole batch (`max` records or `max_bytes`), waiting for it as long as
/// it takes. Cancel-safe: what was received is in `carry`.
async fn gather<C: Consume>(
    consumer: &mut C,
    carry: &mut Vec<Received<C::Handle>>,
    (max, max_bytes): (usize, u64),
) -> Result<Vec<Received<C::Handle>>, TaskError> {
    let mut bytes: u64 = carry.iter().map(size).sum();
    while carry.len() < max && bytes < max_bytes {
        let r = match consumer.try_receive() {
            Some(r) => r?,
            None => consumer.receive().await?,
        };
        bytes += size(&r);
        carry.push(r);
    }
    Ok(std::mem::take(carry))
}

/// Write with retries; on a permanent failure, split the batch in halves
/// and write each, down to single records; a record the target rejects is
/// tried again and dead-lettered before the records behind it are written.
/// The halves go in order, so changes to one key keep theirs; one bad
/// record among `n` costs about `2 × log2(n)` writes.
async fn write_isolating<B: Broker, S: Sink>(
    sink: &mut S,
    records: &[SinkRecord],
    mut prepared: Option<Prepared>,
    dead_letters: &mut DeadLetters<'_, B>,
    status: &ConnectorStatus,
    shutdown: &CancellationToken,
) -> Result<(), TaskError> {
    // Ranges still to write, the next one last: the records are written,
    // and the rejected ones dealt with, in the order they came.
    let mut pending = vec![(0, records.len())];
    while let Some((start, end)) = pending.pop() {
        let part = &records[start..end];
        // What was made ready is for the whole batch, its first write.
        match write_retrying(sink, part, prepared.take(), status, shutdown).await? {
            Ok(Written::All) => {}
            // The sink names the refused records; the rest are durable.
            Ok(Written::AllBut(refused)) => {
                let (mut n, mut bytes) = (part.len() as u64, total_bytes(part));
                for (i, _) in &refused {
                    n -= 1;
                    bytes -= total_bytes(std::slice::from_ref(&part[*i]));
                }
                status.count_out(n, bytes);
                for (i, error) in refused {
                    dead_letters
                        .reject(sink, &part[i], error, status, shutdown)
                        .await?;
                }
            }
            Err(e) if end - start == 1 => {
                dead_letters
                    .reject(sink, &part[0], e, status, shutdown)
                    .await?;
            }
            Err(_) => {
                let middle = start + (end - start) / 2;
                pending.push((middle, end));
                pending.push((start, middle));
            }
        }
    }
    Ok(())
}

/// Write a batch, retrying retryable failures with backoff until it works,
/// fails permanently (the inner `Err`), or shutdown is requested. What the
/// sink refused of a batch it otherwise wrote is the caller's to count.
pub(super) async fn write_retrying<S: Sink>(
    sink: &mut S,
    records: &[SinkRecord],
    mut prepared: Option<Prepared>,
    status: &ConnectorStatus,
    shutdown: &CancellationToken,
) -> Result<Result<Written, ConnectorError>, TaskError> {
    let mut backoff = Backoff::default();
    let bytes = total_bytes(records);
    loop {
        let started = Instant::now();
        let written = match prepared.take() {
            Some(p) => sink.write_prepared(records, p).await,
            None => sink.write(records).await,
        };
        match written {
            Ok(Written::All) => {
                delivered(status, records, bytes, started);
                return Ok(Ok(Written::All));
            }
            Ok(Written::AllBut(refused)) => {
                if let Some((_, e)) = refused.first() {
                    status.set_error(&e.to_string());
                }
                return Ok(Ok(Written::AllBut(refused)));
            }
            Err(e) if e.is_retryable() => {
                status.set_error(&e.to_string());
                let wait = backoff.next_delay();
                warn!(connector = %status.name, error = %e, retry_in = ?wait, "write failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Err(TaskError::Connector(e)),
                    () = tokio::time::sleep(wait) => {}
                }
            }
            // No record is at fault: stop, so that the connector shows
            // not ready and restarts with backoff, the records unacked.
            Err(e) if e.kind() == sluice_connectors::ErrorKind::Configuration => {
                return Err(TaskError::Connector(e));
            }
            Err(e) => {
                status.set_error(&e.to_string());
                return Ok(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Memory;

    #[test]
    fn the_memory_limit_is_shared_not_multiplied_by_topics() {
        let one = Memory::of(64 << 20, 1);
        assert_eq!(
            one,
            Memory {
                held: Some(64 << 20),
                prefetch: Some(16 << 20),
                batch: 16 << 20
            }
        );
        let many = Memory::of(64 << 20, 100);
        assert_eq!(many.held, one.held);
        assert_eq!(many.prefetch, Some((16 << 20) / 100));
        assert_eq!(Memory::of(u64::MAX, 3).held, None);
    }
}
