//! One run of a source connector: read, publish, and tell the source which
//! positions are durable.
//!
//! Publishing is pipelined: up to `maxPendingMessages` records await their
//! broker receipt at once, and `read` is not called while that many are in
//! flight, which is the backpressure a source sees. Under ATLEAST_ONCE a
//! position is committed only when every record up to it has its receipt;
//! under ATMOST_ONCE it is committed as soon as the records are handed to
//! the producer (before they are sent, and the source returns from
//! `commit` once the position is durable on its side), and a failed
//! publish is counted, not retried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_connectors::{Commit, ConnectorError, Source, SourceBatch, SourceRecord};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::TaskError;
use super::acks::{BatchId, OrderedAcks};
use super::broker::{Broker, Publish};
use super::status::{ConnectorStatus, State};
use crate::config::{Guarantee, SourceDef};
use crate::pulsar::{self, Access, ProducerOptions};

/// How a run ended without failing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Finished {
    /// The source has no more records, and all of them are durable.
    Exhausted,
    /// Shutdown was requested; in-flight work was drained.
    Stopped,
}

/// The producers of one source, one per topic, made on first use.
pub(super) struct Publisher<'a, B: Broker> {
    def: &'a SourceDef,
    client: &'a B,
    options: ProducerOptions,
    producers: HashMap<String, B::Producer>,
    /// The last topic a record named, and its full name: records come in
    /// runs of one topic, and qualifying it cost a formatted string each.
    last_topic: Option<(String, String)>,
    /// An exclusive producer refused because another holds the topic is
    /// made again with [`Access::Fencing`]: this run took the source's
    /// lease from an instance that stopped beating, which may still hold
    /// the topics.
    fence_stale: bool,
}

impl<'a, B: Broker> Publisher<'a, B> {
    pub(super) fn new(def: &'a SourceDef, client: &'a B, access: Access) -> Self {
        Self {
            def,
            client,
            options: ProducerOptions {
                access,
                batching: def.producer.batching,
                compression: def.producer.compression,
                name: Some(format!("{}/{}/{}", def.tenant, def.namespace, def.name)),
                schema: None,
            },
            producers: HashMap::new(),
            last_topic: None,
            fence_stale: false,
        }
    }

    /// Fence out the producers a fenced-out instance still holds; see
    /// [`Publisher::fence_stale`].
    pub(super) fn fencing_stale_holders(mut self, fence: bool) -> Self {
        self.fence_stale = fence;
        self
    }

    pub(super) async fn producer(
        &mut self,
        record: &SourceRecord,
    ) -> Result<&mut B::Producer, TaskError> {
        let topic = match &record.topic {
            Some(t) => match &self.last_topic {
                Some((named, full)) if named == t => full.clone(),
                _ if t.contains('/') => {
                    // A record names a topic of the connector's namespace.
                    return Err(TaskError::Connector(
                        sluice_connectors::ConnectorError::permanent(format!(
                            "a record names the topic \"{t}\", which is not a name in the connector's namespace ({}/{}): it holds a /",
                            self.def.tenant, self.def.namespace
                        )),
                    ));
                }
                _ => {
                    let full =
                        crate::config::qualify_topic(t, &self.def.tenant, &self.def.namespace)
                            .map_err(|msg| {
                                TaskError::Connector(sluice_connectors::ConnectorError::permanent(
                                    msg,
                                ))
                            })?;
                    self.last_topic = Some((t.clone(), full.clone()));
                    full
                }
            },
            None => self.def.topic.clone().ok_or_else(|| {
                TaskError::Connector(sluice_connectors::ConnectorError::permanent(
                    "a record names no topic and the connector has no topicName",
                ))
            })?,
        };
        let schema = record.schema.as_ref().filter(|_| self.def.publish_schema);
        if let Some(current) = self.producers.get_mut(&topic)
            && !current.publishes(schema)
        {
            // The table changed: what the old producer holds goes out
            // first, then a producer declaring the new schema takes over
            // (the broker registers it as the topic's next version).
            if let Some(old) = self.producers.remove(&topic) {
                old.close().await;
            }
            info!(connector = %self.def.name, topic = %topic, "the records' schema changed");
        }
        if !self.producers.contains_key(&topic) {
            let options = ProducerOptions {
                schema: schema.cloned(),
                ..self.options.clone()
            };
            let producer = match self.client.producer(&topic, &options).await {
                Err(e) if self.fence_stale && e.is_held_elsewhere() => {
                    warn!(connector = %self.def.name, topic = %topic, "the fenced-out instance still holds the topic: fencing its producer out");
                    super::broker::fence_out(self.client, &topic, &options).await?
                }
                made => made?,
            };
            info!(connector = %self.def.name, topic = %topic, schema = schema.is_some(), "producer ready");
            self.producers.insert(topic.clone(), producer);
        }
        self.producers
            .get_mut(&topic)
            .ok_or_else(|| TaskError::Pulsar(pulsar_missing(&topic)))
    }

    pub(super) async fn close(self) {
        for (_, p) in self.producers {
            p.close().await;
        }
    }
}

fn pulsar_missing(topic: &str) -> pulsar::PulsarError {
    pulsar::PulsarError::from_message(format!("no producer for {topic}"))
}

/// Run the source until it is exhausted, shutdown is requested, or something fails.
pub(crate) async fn run<B: Broker, S: Source>(
    def: &SourceDef,
    client: &B,
    source: &mut S,
    status: &Arc<ConnectorStatus>,
    shutdown: &CancellationToken,
) -> Result<Finished, TaskError> {
    let mut publisher = Publisher::new(def, client, Access::Shared);
    let result = pump(def, &mut publisher, source, status, shutdown).await;
    publisher.close().await;
    result
}

async fn pump<B: Broker, S: Source>(
    def: &SourceDef,
    publisher: &mut Publisher<'_, B>,
    source: &mut S,
    status: &Arc<ConnectorStatus>,
    shutdown: &CancellationToken,
) -> Result<Finished, TaskError> {
    let at_most_once = def.guarantee == Guarantee::AtMostOnce;
    let max_in_flight = def.producer.max_pending_messages;
    let max_in_flight_bytes = publisher.client.memory_limit();
    let mut in_flight_bytes = 0u64;
    let mut acks = OrderedAcks::default();
    let mut in_flight = FuturesUnordered::new();
    let mut exhausted = false;
    let committer = source.committer();
    // A read once begun is polled to its end (the source contract): it
    // lives across the loop's turns while receipts come in.
    let mut idle = Some(source);
    let mut reading: Option<Reading<'_, S>> = None;
    // A run starts with nothing outstanding, whatever an earlier run left.
    status.work_moved(false);
    status.set_state(State::Running);

    loop {
        if exhausted && in_flight.is_empty() {
            if let Some(p) = acks.release() {
                committer.commit(p).await?;
            }
            return Ok(Finished::Exhausted);
        }
        if !exhausted
            && in_flight.len() < max_in_flight
            && in_flight_bytes < max_in_flight_bytes
            && let Some(source) = idle.take()
        {
            reading = Some(read(source));
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled(), if !exhausted => {
                // Stop reading; publish and commit what is in flight.
                info!(connector = %def.name, in_flight = in_flight.len(), "draining before shutdown");
                drain(&mut in_flight, &mut acks, &committer, status, at_most_once).await?;
                return Ok(Finished::Stopped);
            }
            Some((batch, event_ms, bytes, result)) = in_flight.next(), if !in_flight.is_empty() => {
                in_flight_bytes -= bytes;
                status.work_moved(!in_flight.is_empty());
                settle(batch, event_ms, bytes, result, &mut acks, &committer, status, at_most_once).await?;
            }
            (source, read) = async { reading.as_mut().expect("guarded").await }, if reading.is_some() => {
                reading = None;
                idle = Some(source);
                let Some(batch) = read? else {
                    exhausted = true;
                    continue;
                };
                let n = batch.records.len();
                // At most once, the position is committed before the records
                // go out: a crash after this publishes them at most once.
                let checkpoint = if at_most_once {
                    if let Some(p) = batch.checkpoint {
                        committer.commit(p).await?;
                    }
                    None
                } else {
                    batch.checkpoint
                };
                let id = acks.push(if at_most_once { 0 } else { n }, checkpoint);
                for record in batch.records {
                    let bytes = record.value_len() as u64;
                    in_flight_bytes += bytes;
                    status.count_in(1, bytes);
                    let event_ms = record.event_time_ms;
                    let started = Instant::now();
                    // Outstanding from here: finding the producer and
                    // handing the record over may hang too.
                    status.work_started();
                    let send = publisher.producer(&record).await?.publish(record, None).await;
                    let status = Arc::clone(status);
                    in_flight.push(async move {
                        let result = send.await;
                        status.batch_latency.observe(started.elapsed());
                        (id, event_ms, bytes, result)
                    });
                }
                // At most once, a position is confirmed on hand-off. At least
                // once, this releases only batches with nothing left in
                // flight, such as a bare position from an idle source.
                if let Some(p) = acks.release() {
                    committer.commit(p).await?;
                }
            }
        }
    }
}

/// A read under way, kept across the turns of a run's loop. It holds the
/// source while it runs and hands it back with what it read.
pub(super) type Reading<'a, S> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (&'a mut S, Result<Option<SourceBatch>, ConnectorError>)>
            + Send
            + 'a,
    >,
>;

/// Begin a read of `source`.
pub(super) fn read<S: Source>(source: &mut S) -> Reading<'_, S> {
    Box::pin(async move {
        let read = source.read().await;
        (source, read)
    })
}

#[allow(clippy::too_many_arguments)]
async fn settle<C: Commit>(
    batch: BatchId,
    event_ms: Option<u64>,
    bytes: u64,
    result: pulsar::SendResult,
    acks: &mut OrderedAcks,
    committer: &C,
    status: &ConnectorStatus,
    at_most_once: bool,
) -> Result<(), TaskError> {
    match result {
        Ok(_) => {
            status.count_out(1, bytes);
            if let Some(t) = event_ms {
                status.observe_lag(t);
            }
            if !at_most_once && let Some(p) = acks.complete(batch) {
                committer.commit(p).await?;
            }
            Ok(())
        }
        Err(e) if at_most_once => {
            status.count_dropped(1);
            status.set_error(&e.to_string());
            // A broker outage fails every record in flight: log the first
            // drop and then one in a thousand, with the count.
            let dropped = status.dropped.load(std::sync::atomic::Ordering::Relaxed);
            if dropped == 1 || dropped.is_multiple_of(1000) {
                warn!(error = %e, dropped_total = dropped, "publish failed; at most once, the record is not retried");
            }
            Ok(())
        }
        // At least once: fail the run; the restart resumes from the last
        // committed position and publishes the rest again.
        Err(e) => Err(TaskError::Pulsar(e)),
    }
}

async fn drain<F, C: Commit>(
    in_flight: &mut FuturesUnordered<F>,
    acks: &mut OrderedAcks,
    committer: &C,
    status: &ConnectorStatus,
    at_most_once: bool,
) -> Result<(), TaskError>
where
    F: std::future::Future<Output = (BatchId, Option<u64>, u64, pulsar::SendResult)>,
{
    while let Some((batch, event_ms, bytes, result)) = in_flight.next().await {
        settle(
            batch,
            event_ms,
            bytes,
            result,
            acks,
            committer,
            status,
            at_most_once,
        )
        .await?;
    }
    if let Some(p) = acks.release() {
        committer.commit(p).await?;
    }
    Ok(())
}
