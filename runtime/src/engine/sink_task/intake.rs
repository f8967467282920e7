//! Where a sink's batches come from: gathered from the consumer by count,
//! bytes and time, and the next one read ahead and made ready on another
//! thread while the current one is written.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt as _;
use sluice_connectors::api::Skips;
use sluice_connectors::{Prepare, Prepared, Sink, SinkRecord};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::deliveries::Deliveries;
use super::{DISCOVERY_INTERVAL, Ended, Memory};
use crate::config::{Guarantee, SinkDef};
use crate::engine::TaskError;
use crate::engine::broker::{Broker, Consume};
use crate::pulsar::{Followed, Received};

/// Where a sink's batches come from: its consumer, what the consumer gave
/// short of a whole batch, and the next batch, read ahead and being made
/// ready while this one is written.
pub(super) struct Intake<'a, B: Broker> {
    def: &'a SinkDef,
    client: &'a B,
    pub(super) consumer: &'a mut B::Consumer,
    carry: Vec<Received<<B::Consumer as Consume>::Handle>>,
    ahead: Option<Ahead<<B::Consumer as Consume>::Handle>>,
    /// The messages held, to pass over one the broker delivers again.
    deliveries: Deliveries<<B::Consumer as Consume>::Handle>,
    skips: Arc<Skips>,
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
pub(super) enum Next<H> {
    Batch(Taken<H>),
    End(Ended),
}

impl<'a, B: Broker> Intake<'a, B> {
    pub(super) fn new<S: Sink>(
        def: &'a SinkDef,
        client: &'a B,
        topics: &[String],
        consumer: &'a mut B::Consumer,
        sink: &S,
        skips: Arc<Skips>,
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
            deliveries: Deliveries::default(),
            skips,
            discovery,
            limits: (policy.max_records, memory.batch),
            max_wait: policy.max_wait,
            preparer: sink
                .preparer()
                .filter(|_| def.guarantee != Guarantee::AtMostOnce),
        }
    }

    /// The next batch: the one read ahead, or one gathered now.
    pub(super) async fn next(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Next<<B::Consumer as Consume>::Handle>, TaskError> {
        loop {
            if let Some(ahead) = self.ahead.take() {
                let taken = ahead.ready().await?;
                // A batch read ahead is not acknowledged: dropped here, it
                // is delivered again.
                return Ok(if shutdown.is_cancelled() {
                    Next::End(Ended::Shutdown)
                } else {
                    Next::Batch(taken)
                });
            }
            let next = next_batch(
                self.consumer,
                &mut self.deliveries,
                &mut self.carry,
                self.limits,
                self.max_wait,
                &mut self.discovery,
                shutdown,
            )
            .await?;
            return Ok(match next {
                Wait::Batch(batch) => Next::Batch(Taken::of(batch)),
                Wait::Shutdown => Next::End(Ended::Shutdown),
                Wait::Discover => match self.discover().await? {
                    Followed::Removed => Next::End(Ended::TopicsChanged),
                    Followed::Current => continue,
                },
            });
        }
    }

    /// Whether the next batch is read ahead already.
    pub(super) fn has_ahead(&self) -> bool {
        self.ahead.is_some()
    }

    /// Look again at what the inputs are, when it is time: a sink that
    /// reads ahead may never wait for a batch, where it would look.
    pub(super) async fn look_again(&mut self) -> Result<Option<Ended>, TaskError> {
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
    pub(super) async fn read_ahead(&mut self) -> Result<(), TaskError> {
        let Some(preparer) = self.preparer.clone() else {
            return std::future::pending().await;
        };
        let next = gather(
            self.consumer,
            &mut self.deliveries,
            &mut self.carry,
            self.limits,
        )
        .await?;
        self.ahead = Some(Ahead::start(next, &preparer));
        Ok(())
    }

    /// Acknowledge a batch's messages, which are then no longer held.
    pub(super) async fn ack(
        &mut self,
        handles: &[<B::Consumer as Consume>::Handle],
    ) -> Result<(), TaskError> {
        self.consumer.ack(handles).await?;
        self.deliveries.acknowledged(handles);
        let passed = self.deliveries.take_passed_over();
        if passed > 0 {
            let before = self
                .skips
                .delivered_twice
                .fetch_add(passed, Ordering::Relaxed);
            if before == 0 {
                info!(connector = %self.def.name, "the broker delivered again messages this sink holds; passing over such deliveries (counted as skipped, delivered_twice)");
            }
        }
        Ok(())
    }

    /// Look at what the inputs are now, and follow them; `Removed` when a
    /// topic read left them, which needs a new subscription.
    async fn discover(&mut self) -> Result<Followed, TaskError> {
        let now = crate::engine::sink_topics(self.def, self.client).await?;
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
pub(super) struct Taken<H> {
    pub(super) records: Vec<SinkRecord>,
    pub(super) handles: Vec<H>,
    _held: Vec<Option<tokio::sync::OwnedSemaphorePermit>>,
    pub(super) prepared: Option<Prepared>,
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

/// What waiting for a batch gave.
enum Wait<H> {
    Batch(Vec<Received<H>>),
    Shutdown,
    /// Time to look for new topics; no message was taken.
    Discover,
}

/// The payload bytes of a received message.
fn size<H>(r: &Received<H>) -> u64 {
    r.record.value.as_ref().map_or(0, Vec::len) as u64
}

/// Wait for a first message (unless `carry` holds some already), then
/// gather more until `max` records, `max_bytes` of payload (passed by at
/// most the last record) or `max_wait`. A message delivered again is
/// passed over.
async fn next_batch<C: Consume>(
    consumer: &mut C,
    deliveries: &mut Deliveries<C::Handle>,
    carry: &mut Vec<Received<C::Handle>>,
    (max, max_bytes): (usize, u64),
    max_wait: Duration,
    discovery: &mut tokio::time::Interval,
    shutdown: &CancellationToken,
) -> Result<Wait<C::Handle>, TaskError> {
    let mut batch = std::mem::take(carry);
    while batch.is_empty() {
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(Wait::Shutdown),
            r = consumer.receive() => r?,
            _ = discovery.tick() => return Ok(Wait::Discover),
        };
        if deliveries.is_new(first.handle) {
            batch.push(first);
        }
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
        if !deliveries.is_new(r.handle) {
            continue;
        }
        bytes += size(&r);
        batch.push(r);
    }
    Ok(Wait::Batch(batch))
}

/// A whole batch (`max` records or `max_bytes`), waiting for it as long as
/// it takes; a message delivered again is passed over. Cancel-safe: what
/// was received is in `carry`.
async fn gather<C: Consume>(
    consumer: &mut C,
    deliveries: &mut Deliveries<C::Handle>,
    carry: &mut Vec<Received<C::Handle>>,
    (max, max_bytes): (usize, u64),
) -> Result<Vec<Received<C::Handle>>, TaskError> {
    let mut bytes: u64 = carry.iter().map(size).sum();
    while carry.len() < max && bytes < max_bytes {
        let r = match consumer.try_receive() {
            Some(r) => r?,
            None => consumer.receive().await?,
        };
        if !deliveries.is_new(r.handle) {
            continue;
        }
        bytes += size(&r);
        carry.push(r);
    }
    Ok(std::mem::take(carry))
}
