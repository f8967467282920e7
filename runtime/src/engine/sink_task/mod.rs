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

use sluice_connectors::{ConnectorError, Prepared, Sink, SinkRecord, Written};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod at_most_once;
mod deliveries;
mod intake;

use at_most_once::at_most_once;
use intake::{Intake, Next};

use super::broker::Broker;
use super::dead_letters::DeadLetters;
use super::status::{ConnectorStatus, State};
use super::{Backoff, TaskError};
use crate::config::{Guarantee, SinkDef};

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
    let mut intake = Intake::new(
        def,
        client,
        topics,
        consumer,
        sink,
        Arc::clone(&status.skips),
    );
    status.work_moved(false);
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
        if let Some(ended) = intake.look_again().await? {
            return Ok(ended);
        }
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
        status.work_started();
        if def.guarantee == Guarantee::AtMostOnce {
            intake.ack(&batch.handles).await?;
            at_most_once(def, sink, &batch.records, bytes, status).await;
            status.work_moved(false);
            continue;
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
        let ahead = tokio::select! {
            biased;
            ahead = intake.read_ahead() => {
                // A failure to read ahead waits for the write under way and
                // its acknowledgement, and fails the run after them.
                write.await?;
                ahead
            }
            done = &mut write => {
                done?;
                Ok(())
            }
        };
        let write_us = written.elapsed().as_micros() as u64;
        // Written and committed, not yet acknowledged: the broker will
        // deliver the batch again after a crash here.
        crate::failpoint::pass("sink-written");
        let acked = Instant::now();
        intake.ack(&batch.handles).await?;
        status.work_moved(false);
        ahead?;
        debug!(
            connector = %def.name, records = batch.records.len(), wait_us, write_us,
            ack_us = acked.elapsed().as_micros() as u64, ahead = intake.has_ahead(), "batch applied"
        );
    }
}

/// What a sink says it wrote, held to the contract: each refused record
/// named once, in batch order; `AllBut` of none is `All`. A record named
/// outside the batch is the sink's fault, not a record's: the run stops
/// and nothing is dead-lettered.
fn checked(written: Written, len: usize) -> Result<Written, ConnectorError> {
    let Written::AllBut(mut refused) = written else {
        return Ok(Written::All);
    };
    if let Some((i, _)) = refused.iter().find(|(i, _)| *i >= len) {
        return Err(ConnectorError::configuration(format!(
            "the sink refused record {i} of a batch of {len}: a bug in the sink"
        )));
    }
    refused.sort_by_key(|(i, _)| *i);
    refused.dedup_by_key(|(i, _)| *i);
    Ok(if refused.is_empty() {
        Written::All
    } else {
        Written::AllBut(refused)
    })
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
            Ok(Written::All) => status.work_moved(true),
            // The sink names the refused records; the rest are durable.
            Ok(Written::AllBut(refused)) => {
                let (mut n, mut bytes) = (part.len() as u64, total_bytes(part));
                for (i, _) in &refused {
                    n -= 1;
                    bytes -= total_bytes(std::slice::from_ref(&part[*i]));
                }
                status.count_out(n, bytes);
                status.work_moved(true);
                for (i, error) in refused {
                    dead_letters
                        .reject(sink, &part[i], error, status, shutdown)
                        .await?;
                    status.work_moved(true);
                }
            }
            Err(e) if end - start == 1 => {
                dead_letters
                    .reject(sink, &part[0], e, status, shutdown)
                    .await?;
                status.work_moved(true);
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
        }
        .and_then(|w| checked(w, records.len()));
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
    fn what_a_sink_says_it_refused_is_held_to_the_batch() {
        use super::{ConnectorError, Written, checked};
        let e = || ConnectorError::permanent("no");
        let Ok(Written::AllBut(refused)) =
            checked(Written::AllBut(vec![(3, e()), (1, e()), (3, e())]), 4)
        else {
            panic!("refused records stay refused");
        };
        let at: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
        assert_eq!(at, [1, 3], "in order, each once");
        assert!(matches!(
            checked(Written::AllBut(Vec::new()), 4),
            Ok(Written::All)
        ));
        let outside = checked(Written::AllBut(vec![(4, e())]), 4);
        assert!(
            outside.is_err_and(|e| e.kind() == sluice_connectors::ErrorKind::Configuration),
            "a record outside the batch stops the sink"
        );
    }

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
