//! The in-memory broker's producers, consumers and backlog readers.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sluice_connectors::{RecordSchema, SourceRecord};
use tokio::sync::watch;

use super::{Memory, Stored, TxnState, fault, sink_record, txn_key, visible_indices};
use crate::engine::broker::{Consume, Publish, ReadBacklog, WatchTopic};
use crate::pulsar::{Followed, PulsarError, Received, SendResult, Txn};

/// A producer of the in-memory broker.
pub(crate) struct MemProducer {
    pub(super) broker: Memory,
    pub(super) topic: String,
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) schema: Option<Arc<RecordSchema>>,
}

impl Drop for MemProducer {
    fn drop(&mut self) {
        let mut state = self.broker.state();
        if let Some(t) = state.topics.get_mut(&self.topic)
            && t.exclusive == Some(self.id)
        {
            t.exclusive = None;
        }
    }
}

/// A send's receipt: at once, or when receipts are no longer held.
type Receipt = Pin<Box<dyn Future<Output = SendResult> + Send + 'static>>;

impl Publish for MemProducer {
    type Sending = Receipt;

    async fn publish(&mut self, record: SourceRecord, txn: Option<&Txn>) -> Receipt {
        self.send_in(record, txn)
    }

    fn send_in(&self, record: SourceRecord, txn: Option<&Txn>) -> Receipt {
        let stored = {
            let mut state = self.broker.state();
            if let Err(e) = fault(&mut state.faults.publishes, "publish") {
                return Box::pin(std::future::ready(Err(e)));
            }
            let txn = txn.map(txn_key);
            if txn.is_some()
                && let Err(e) = fault(&mut state.faults.txn_publishes, "publish in a transaction")
            {
                return Box::pin(std::future::ready(Err(e)));
            }
            if let Some(t) = txn {
                match state.txns.get(&t) {
                    Some((TxnState::Open, topics)) if topics.contains(&self.topic) => {}
                    Some((TxnState::Open, _)) => {
                        return Box::pin(std::future::ready(Err(PulsarError::from_message(
                            format!(
                                "publish to {}: the topic is not registered with the transaction",
                                self.topic
                            ),
                        ))));
                    }
                    _ => {
                        return Box::pin(std::future::ready(Err(PulsarError::from_message(
                            "publish: the transaction is not open",
                        ))));
                    }
                }
            }
            let t = state.topics.entry(self.topic.clone()).or_default();
            if t.fenced.contains(&self.id) {
                return Box::pin(std::future::ready(Err(PulsarError::held_elsewhere(
                    format!("publish to {}", self.topic),
                    "ProducerFenced: another producer fenced this one out",
                ))));
            }
            t.messages.push(Stored {
                record,
                producer: self.name.clone(),
                txn,
            });
            t.messages.len() - 1
        };
        self.broker.touch();
        let (broker, topic) = (self.broker.clone(), self.topic.clone());
        Box::pin(async move {
            broker
                .until(|b| b.state().faults.hold_receipts.as_ref() != Some(&topic))
                .await;
            Ok(format!("0:{stored}:-1:-1"))
        })
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    fn publishes(&mut self, schema: Option<&Arc<RecordSchema>>) -> bool {
        self.schema.as_ref() == schema
    }

    async fn close(self) {}
}

/// What acknowledges a message of the in-memory broker: its topic's place
/// in the consumer's list, and its index on the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MemHandle {
    topic: usize,
    index: usize,
}

/// A consumer of the in-memory broker.
pub(crate) struct MemConsumer {
    pub(super) broker: Memory,
    pub(super) topics: Vec<String>,
    pub(super) subscription: String,
    pub(super) delivered: HashSet<MemHandle>,
    /// Messages to deliver again, first (see `Faults::redeliver_held_after`).
    pub(super) again: Vec<MemHandle>,
    pub(super) changed: watch::Receiver<u64>,
}

impl MemConsumer {
    fn take(&mut self) -> Option<Result<Received<MemHandle>, PulsarError>> {
        let mut state = self.broker.state();
        if state.faults.receive_after == Some(self.delivered.len()) {
            state.faults.receive_after = None;
            return Some(Err(PulsarError::from_message("injected: receive failed")));
        }
        if state.faults.redeliver_held_after == Some(self.delivered.len()) {
            state.faults.redeliver_held_after = None;
            let mut held: Vec<MemHandle> = self
                .delivered
                .iter()
                .filter(|h| {
                    state.topics.get(&self.topics[h.topic]).is_none_or(|t| {
                        t.subscriptions
                            .get(&self.subscription)
                            .is_none_or(|s| !s.acked.contains(&h.index))
                    })
                })
                .copied()
                .collect();
            held.sort_by_key(|h| std::cmp::Reverse((h.topic, h.index)));
            self.again = held;
        }
        if let Some(handle) = self.again.pop() {
            let name = &self.topics[handle.topic];
            let record = sink_record(
                name,
                handle.index,
                &state.topics[name].messages[handle.index],
            );
            return Some(Ok(Received {
                record,
                handle,
                redelivery_count: 0,
                held: None,
            }));
        }
        for (ti, name) in self.topics.iter().enumerate() {
            let Some(topic) = state.topics.get(name) else {
                continue;
            };
            let acked = topic
                .subscriptions
                .get(&self.subscription)
                .map(|s| &s.acked);
            let next = visible_indices(&state, topic).into_iter().find(|i| {
                !acked.is_some_and(|a| a.contains(i))
                    && !self.delivered.contains(&MemHandle {
                        topic: ti,
                        index: *i,
                    })
            });
            let Some(index) = next else { continue };
            let record = sink_record(name, index, &topic.messages[index]);
            let sub = state.topics.get_mut(name).map(|t| {
                t.subscriptions
                    .entry(self.subscription.clone())
                    .or_default()
            });
            let redelivery_count = sub.map_or(0, |s| {
                let n = s.deliveries.entry(index).or_default();
                *n += 1;
                *n - 1
            });
            let handle = MemHandle { topic: ti, index };
            self.delivered.insert(handle);
            return Some(Ok(Received {
                record,
                handle,
                redelivery_count,
                held: None,
            }));
        }
        None
    }
}

impl Consume for MemConsumer {
    type Handle = MemHandle;

    async fn receive(&mut self) -> Result<Received<MemHandle>, PulsarError> {
        loop {
            self.changed.borrow_and_update();
            if let Some(r) = self.take() {
                return r;
            }
            if self.changed.changed().await.is_err() {
                return Err(PulsarError::from_message("the broker is gone"));
            }
        }
    }

    fn try_receive(&mut self) -> Option<Result<Received<MemHandle>, PulsarError>> {
        self.take()
    }

    async fn ack(&self, handles: &[MemHandle]) -> Result<(), PulsarError> {
        let mut state = self.broker.state();
        fault(&mut state.faults.acks, "acknowledge")?;
        for h in handles {
            if let Some(t) = state.topics.get_mut(&self.topics[h.topic]) {
                t.subscriptions
                    .entry(self.subscription.clone())
                    .or_default()
                    .acked
                    .insert(h.index);
            }
        }
        drop(state);
        self.broker.touch();
        Ok(())
    }

    async fn follow(&mut self, topics: &[String]) -> Result<Followed, PulsarError> {
        if self.topics.iter().any(|t| !topics.contains(t)) {
            return Ok(Followed::Removed);
        }
        for t in topics {
            if !self.topics.contains(t) {
                self.topics.push(t.clone());
            }
        }
        Ok(Followed::Current)
    }

    async fn close(self) {}
}

/// A backlog of the in-memory broker.
pub(crate) struct MemBacklog {
    pub(super) broker: Memory,
    pub(super) topic: String,
    pub(super) subscription: String,
    pub(super) messages: Vec<(usize, Vec<u8>)>,
}

impl ReadBacklog for MemBacklog {
    fn payloads(&self) -> Vec<&[u8]> {
        self.messages.iter().map(|(_, p)| p.as_slice()).collect()
    }

    async fn read_more(&mut self) -> Result<(), PulsarError> {
        let state = self.broker.state();
        let Some(topic) = state.topics.get(&self.topic) else {
            return Ok(());
        };
        let acked = topic
            .subscriptions
            .get(&self.subscription)
            .map(|s| &s.acked);
        let after = self.messages.last().map(|(i, _)| *i);
        for i in visible_indices(&state, topic) {
            if after.is_some_and(|a| i <= a) || acked.is_some_and(|a| a.contains(&i)) {
                continue;
            }
            let value = topic.messages[i].record.value.clone().unwrap_or_default();
            self.messages.push((i, value));
        }
        Ok(())
    }

    async fn release_before(&self, index: usize) -> Result<(), PulsarError> {
        let mut state = self.broker.state();
        if let Some(t) = state.topics.get_mut(&self.topic) {
            let sub = t
                .subscriptions
                .entry(self.subscription.clone())
                .or_default();
            for (i, _) in self.messages.iter().take(index) {
                sub.acked.insert(*i);
            }
        }
        Ok(())
    }

    async fn close(self) {}
}

/// A watch on a topic of the in-memory broker.
pub(crate) struct MemWatch {
    pub(super) broker: Memory,
    pub(super) topic: String,
    /// Messages on the topic already seen.
    pub(super) seen: usize,
}

impl WatchTopic for MemWatch {
    async fn next(&mut self) -> Result<(), PulsarError> {
        let seen = self.seen;
        self.broker.until(|b| b.stored(&self.topic) > seen).await;
        self.seen += 1;
        Ok(())
    }

    async fn close(self) {}
}
