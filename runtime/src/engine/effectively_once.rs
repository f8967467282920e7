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
//!   transaction, or a whole snapshot) and a marker holding the last
//!   record's `sluice.seq` and the checkpoint are committed as one Pulsar
//!   transaction. Several source transactions may share one Pulsar
//!   transaction; a source transaction is never split across two. Readers
//!   see whole source transactions or nothing.
//! - **Recovery.** On start, the last committed marker gives the highest
//!   sequence already published; the source resumes from its own committed
//!   position, which is never past it, and every record at or below that
//!   sequence is skipped.
//! - **Orphans.** Before its first record, a transaction's id is published
//!   (outside it) on the offsets topic. An instance that dies leaves its
//!   transaction open, and an open transaction holds back every reader of
//!   the topics it wrote. The next instance finds the id after the last
//!   marker and aborts that transaction at once, rather than letting
//!   readers wait for its timeout.
//! - **Resends.** A resend inside a run (after a reconnect) carries the same
//!   producer sequence id, so the broker's deduplication drops it when the
//!   namespace has deduplication on; `sluice check` says when it does not.
//! - **The source's position** is committed only after the transaction that
//!   holds its records has committed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sluice_connectors::{AnySource, ConnectorError, Position, Sequence, Source, SourceRecord};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::TaskError;
use super::source_task::{Finished, Publisher, now_ms};
use super::status::{ConnectorStatus, State};
use crate::config::SourceDef;
use crate::pulsar::{self, Access, Client, Producer, ProducerOptions, Txn};

/// The subscription that keeps the last marker from retention.
const RECOVERY_SUBSCRIPTION: &str = "sluice-recovery";
/// The coordinator aborts a transaction left open this long: a crashed
/// instance's transaction never becomes visible. A snapshot is published
/// as one transaction and must fit in it.
const TXN_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long a transaction that could commit waits for more source
/// transactions to share it.
const LINGER: Duration = Duration::from_millis(50);
/// How often a standby tries to take over.
const STANDBY_RETRY: Duration = Duration::from_secs(1);

/// The topic holding a source's progress markers.
pub(crate) fn offsets_topic(def: &SourceDef) -> String {
    format!(
        "persistent://{}/{}/sluice-offsets.{}",
        def.tenant, def.namespace, def.name
    )
}

/// What a message on the offsets topic says: the progress committed so
/// far, and on an intent, the transaction about to be filled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// The highest sequence published.
    pub(crate) sequence: Option<Sequence>,
    /// The last source position committed.
    pub(crate) position: Option<Position>,
    /// On an intent: the id of the transaction it opens.
    pub(crate) open: Option<String>,
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
        let open = match &doc["open"] {
            serde_json::Value::Null => None,
            v => Some(v.as_str()?.to_owned()),
        };
        Some(Self {
            sequence,
            position,
            open,
        })
    }
}

/// Take the exclusive producer on the offsets topic, waiting as a standby
/// while another instance holds it. `None` when shutdown came first.
pub(crate) async fn fence(
    def: &SourceDef,
    client: &Client,
    status: &ConnectorStatus,
    shutdown: &CancellationToken,
) -> Result<Option<Producer>, TaskError> {
    let topic = offsets_topic(def);
    let options = ProducerOptions {
        access: Access::Exclusive,
        batching: None,
        compression: crate::config::Compression::None,
        name_prefix: None,
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

/// The progress the last committed marker records.
pub(crate) async fn recover(def: &SourceDef, client: &Client) -> Result<Progress, TaskError> {
    let topic = offsets_topic(def);
    let Some(payload) = client
        .last_on_subscription(&topic, RECOVERY_SUBSCRIPTION)
        .await?
    else {
        info!(connector = %def.name, "no progress marker: nothing was published before");
        return Ok(Progress::default());
    };
    let mut progress = Progress::from_json(&payload).ok_or_else(|| {
        ConnectorError::permanent(format!(
            "the last message on {topic} is not a sluice progress marker"
        ))
    })?;
    if let Some(open) = progress.open.take() {
        let txn = Txn::from_id_text(&open).ok_or_else(|| {
            ConnectorError::permanent(format!("a transaction id on {topic} is malformed"))
        })?;
        // It may have timed out already; either way it never commits.
        match client.abort_orphan(txn).await {
            Ok(()) => {
                info!(connector = %def.name, txn = %open, "aborted the transaction a previous instance left open");
            }
            Err(e) => {
                debug!(connector = %def.name, txn = %open, error = %e, "the previous instance's transaction is already gone");
            }
        }
    }
    info!(
        connector = %def.name,
        sequence = ?progress.sequence.map(|s| s.to_string()),
        position = ?progress.position.map(|p| p.0),
        "recovered the published progress"
    );
    Ok(progress)
}

/// A transaction being filled.
struct OpenTxn {
    txn: Txn,
    topics: HashSet<String>,
    records: usize,
    opened: Instant,
    /// The last sequence sent in it.
    last: Option<Sequence>,
    /// The checkpoint it ends at, while no record came after it: only then
    /// may it commit.
    checkpoint: Option<Position>,
}

type Sent = (Option<u64>, u64, pulsar::SendResult);

struct Run<'a, 'b> {
    def: &'a SourceDef,
    client: &'a Client,
    publisher: Publisher<'a>,
    marker: &'b Producer,
    status: &'b ConnectorStatus,
    open: Option<OpenTxn>,
    /// The highest sequence in a committed transaction.
    published: Option<Sequence>,
    /// The last position committed to the source.
    position: Option<Position>,
    skipped: u64,
    /// Payload bytes sent and not yet acknowledged by the broker.
    in_flight_bytes: std::sync::atomic::AtomicU64,
}

/// Publish until the source is exhausted, shutdown is requested, or
/// something fails.
pub(crate) async fn run(
    def: &SourceDef,
    client: &Client,
    marker: Producer,
    progress: Progress,
    source: &mut AnySource,
    status: &Arc<ConnectorStatus>,
    shutdown: &CancellationToken,
) -> Result<Finished, TaskError> {
    let mut run = Run {
        def,
        client,
        publisher: Publisher::new(def, client, Access::Exclusive),
        marker: &marker,
        status,
        open: None,
        published: progress.sequence,
        position: progress.position,
        skipped: 0,
        in_flight_bytes: std::sync::atomic::AtomicU64::new(0),
    };
    let result = run.pump(source, shutdown).await;
    if let Some(open) = run.open.take() {
        // Whatever was not committed is read again on the next start.
        let _ = client.abort(open.txn).await;
    }
    run.publisher.close().await;
    marker.close().await;
    result
}

impl Run<'_, '_> {
    async fn pump(
        &mut self,
        source: &mut AnySource,
        shutdown: &CancellationToken,
    ) -> Result<Finished, TaskError> {
        let max_in_flight = self.def.producer.max_pending_messages;
        let max_in_flight_bytes = self.client.memory_limit();
        let mut in_flight: FuturesUnordered<
            std::pin::Pin<Box<dyn std::future::Future<Output = Sent> + Send>>,
        > = FuturesUnordered::new();
        self.status.set_state(State::Running);
        loop {
            let linger = self
                .open
                .as_ref()
                .filter(|t| t.checkpoint.is_some())
                .map(|t| tokio::time::Instant::from_std(t.opened + LINGER));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    if self.open.as_ref().is_some_and(|t| t.checkpoint.is_some()) {
                        self.commit(&mut in_flight, source).await?;
                    }
                    return Ok(Finished::Stopped);
                }
                Some(sent) = in_flight.next(), if !in_flight.is_empty() => {
                    self.settle(sent)?;
                }
                () = tokio::time::sleep_until(linger.unwrap_or_else(tokio::time::Instant::now)), if linger.is_some() => {
                    self.commit(&mut in_flight, source).await?;
                }
                read = source.read(), if in_flight.len() < max_in_flight
                    && self.in_flight_bytes.load(std::sync::atomic::Ordering::Relaxed) < max_in_flight_bytes => {
                    let Some(batch) = read? else {
                        // Exhausted: what was read is whole, publish it.
                        if self.open.is_some() {
                            self.commit(&mut in_flight, source).await?;
                        }
                        return Ok(Finished::Exhausted);
                    };
                    for record in batch.records {
                        if let Some(send) = self.publish(record).await? {
                            in_flight.push(send);
                        }
                    }
                    if let Some(checkpoint) = batch.checkpoint {
                        match &mut self.open {
                            // Nothing open: every record up to here is durable.
                            None => source.commit(checkpoint).await?,
                            Some(t) => {
                                t.checkpoint = Some(checkpoint);
                                if t.records >= max_in_flight || t.opened.elapsed() >= LINGER {
                                    self.commit(&mut in_flight, source).await?;
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
    async fn publish(
        &mut self,
        record: SourceRecord,
    ) -> Result<Option<std::pin::Pin<Box<dyn std::future::Future<Output = Sent> + Send>>>, TaskError>
    {
        let bytes = record.value.len() as u64;
        ConnectorStatus::add(&self.status.records_in, 1);
        ConnectorStatus::add(&self.status.bytes_in, bytes);
        let Some(sequence) = record.sequence else {
            return Err(ConnectorError::permanent(
                "EFFECTIVELY_ONCE needs records that carry a sequence; this source's do not",
            )
            .into());
        };
        if self.published.is_some_and(|p| sequence <= p) {
            self.skipped += 1;
            return Ok(None);
        }
        if self.skipped > 0 {
            info!(connector = %self.def.name, records = self.skipped, "skipped records that were already published");
            self.skipped = 0;
        }
        if self.open.is_none() {
            let txn = self.client.begin(TXN_TIMEOUT).await?;
            let marker_topic = self.marker.topic().to_owned();
            self.client.register(&txn, &marker_topic).await?;
            // The intent: should this instance die, the next one aborts it.
            let intent = Progress {
                sequence: self.published,
                position: self.position,
                open: Some(txn.id_text()),
            };
            self.marker
                .send(SourceRecord {
                    value: intent.to_json(),
                    ..SourceRecord::default()
                })
                .await?;
            self.open = Some(OpenTxn {
                txn,
                topics: HashSet::from([marker_topic]),
                records: 0,
                opened: Instant::now(),
                last: None,
                checkpoint: None,
            });
        }
        let producer = self.publisher.producer(&record).await?;
        let Some(open) = self.open.as_mut() else {
            return Ok(None);
        };
        if !open.topics.contains(producer.topic()) {
            self.client.register(&open.txn, producer.topic()).await?;
            open.topics.insert(producer.topic().to_owned());
        }
        open.records += 1;
        open.last = Some(sequence);
        open.checkpoint = None;
        let event_ms = record.event_time_ms;
        let send = producer.send_in(record, Some(&open.txn));
        self.in_flight_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(Box::pin(async move { (event_ms, bytes, send.await) })))
    }

    fn settle(&self, (event_ms, bytes, result): Sent) -> Result<(), TaskError> {
        self.in_flight_bytes
            .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
        result?;
        ConnectorStatus::add(&self.status.bytes_out, bytes);
        if let Some(t) = event_ms {
            self.status.lag_ms.store(
                now_ms().saturating_sub(t),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        Ok(())
    }

    /// Wait for every send of the open transaction, add the marker, commit,
    /// then tell the source its position is durable.
    async fn commit<F>(
        &mut self,
        in_flight: &mut FuturesUnordered<F>,
        source: &mut AnySource,
    ) -> Result<(), TaskError>
    where
        F: std::future::Future<Output = Sent>,
    {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let outcome = async {
            while let Some(sent) = in_flight.next().await {
                self.settle(sent)?;
            }
            let progress = Progress {
                sequence: open.last.or(self.published),
                position: open.checkpoint.or(self.position),
                open: None,
            };
            let marker = SourceRecord {
                value: progress.to_json(),
                ..SourceRecord::default()
            };
            self.marker.send_in(marker, Some(&open.txn)).await?;
            Ok::<_, TaskError>(())
        }
        .await;
        if let Err(e) = outcome {
            let _ = self.client.abort(open.txn).await;
            return Err(e);
        }
        self.client.commit(open.txn).await?;
        ConnectorStatus::add(&self.status.records_out, open.records as u64);
        self.published = open.last.or(self.published);
        if let Some(checkpoint) = open.checkpoint {
            self.position = Some(checkpoint);
            source.commit(checkpoint).await?;
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
        };
        assert_eq!(Progress::from_json(&p.to_json()), Some(p.clone()));
        let intent = Progress {
            open: Some("1:2".into()),
            ..p
        };
        assert_eq!(Progress::from_json(&intent.to_json()), Some(intent));
        assert_eq!(
            Progress::from_json(&Progress::default().to_json()),
            Some(Progress::default())
        );
        assert_eq!(Progress::from_json(br#"{"sequence": 5}"#), None);
    }
}
