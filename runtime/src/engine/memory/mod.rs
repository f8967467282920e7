//! An in-memory broker behind the engine's seam ([`super::broker`]), for
//! the engine's unit tests: topics, durable subscriptions, exclusive
//! producers and transactions as Pulsar keeps them, and faults to inject.
//!
//! It keeps what the engine relies on:
//! - a message published outside a transaction is visible at once; one
//!   inside is visible when its transaction commits, never after an abort;
//! - an open transaction holds back its readers at its first message, as
//!   the broker's max read position does;
//! - a subscription delivers what it has not acknowledged, again to the
//!   next consumer after a close;
//! - an exclusive producer refuses a second one until it closes;
//! - a publish in a transaction to a topic not registered with it is an
//!   error here (on a broker its readers stall until the timeout).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_connectors::{Origin, Sequence, SinkRecord, SourceRecord};
use tokio::sync::watch;

mod clients;

pub(crate) use clients::{MemBacklog, MemConsumer, MemProducer, MemWatch};

use super::broker::{Broker, Dial, ReadBacklog};
use crate::pulsar::{
    Access, ConsumerOptions, OrphanEnd, ProducerOptions, PulsarError, Reading, SEQUENCE_PROPERTY,
    Txn,
};

/// One in-memory broker; clones share it.
#[derive(Clone)]
pub(crate) struct Memory {
    state: Arc<Mutex<State>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for Memory {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

/// A message as the broker keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) record: SourceRecord,
    pub(crate) producer: String,
    txn: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnState {
    Open,
    Committed,
    Aborted,
}

#[derive(Debug, Default)]
struct Topic {
    messages: Vec<Stored>,
    exclusive: Option<u64>,
    /// Producers fenced out by one with [`Access::Fencing`].
    fenced: HashSet<u64>,
    subscriptions: HashMap<String, Subscription>,
}

#[derive(Debug, Default)]
struct Subscription {
    acked: BTreeSet<usize>,
    deliveries: HashMap<usize, u32>,
}

/// Faults to inject: each counts down as it strikes.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub(crate) connects: u32,
    /// Producers refused, as a broker that is down refuses them.
    pub(crate) producers: u32,
    pub(crate) publishes: u32,
    /// Publishes inside a transaction only.
    pub(crate) txn_publishes: u32,
    pub(crate) commits: u32,
    /// Commits that take effect and still answer with an error, as a
    /// commit whose answer the connection lost.
    pub(crate) commits_unanswered: u32,
    pub(crate) acks: u32,
    /// A consumer's receive fails once, after it delivered this many.
    pub(crate) receive_after: Option<usize>,
    /// After a consumer delivered this many, it delivers those not yet
    /// acknowledged again, once, as a Key_Shared broker may.
    pub(crate) redeliver_held_after: Option<usize>,
    /// Sends to this topic wait for their receipt while it is set.
    pub(crate) hold_receipts: Option<String>,
    /// Aborts of another connection's transactions that the coordinator
    /// does not answer.
    pub(crate) orphan_aborts: u32,
}

#[derive(Debug, Default)]
struct State {
    topics: HashMap<String, Topic>,
    txns: HashMap<u64, (TxnState, HashSet<String>)>,
    next_id: u64,
    faults: Faults,
    memory_limit: Option<u64>,
    partitions: HashMap<String, u32>,
    connects: u64,
    commits: u64,
    aborts: u64,
}

fn fault(count: &mut u32, what: &str) -> Result<(), PulsarError> {
    if *count > 0 {
        *count -= 1;
        return Err(PulsarError::from_message(format!(
            "injected: {what} failed"
        )));
    }
    Ok(())
}

fn txn_key(txn: &Txn) -> u64 {
    txn.id_text()
        .split_once(':')
        .and_then(|(_, least)| least.parse().ok())
        .unwrap_or(u64::MAX)
}

impl Memory {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn touch(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Change the faults to inject.
    pub(crate) fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.state().faults);
        self.touch();
    }

    /// Set `pulsar.memoryLimitBytes`.
    pub(crate) fn set_memory_limit(&self, bytes: u64) {
        self.state().memory_limit = Some(bytes);
    }

    /// Make `topic` a partitioned topic of `n` partitions.
    pub(crate) fn partition(&self, topic: &str, n: u32) {
        let mut state = self.state();
        state.partitions.insert(topic.to_owned(), n);
        for i in 0..n {
            state
                .topics
                .entry(format!("{topic}-partition-{i}"))
                .or_default();
        }
    }

    /// Create `topic`, empty, if it does not exist.
    pub(crate) fn create(&self, topic: &str) {
        self.state().topics.entry(topic.to_owned()).or_default();
    }

    /// Publish `record` on `topic` outside any transaction, as another
    /// producer named `producer` would.
    pub(crate) fn put(&self, topic: &str, producer: &str, record: SourceRecord) {
        self.state()
            .topics
            .entry(topic.to_owned())
            .or_default()
            .messages
            .push(Stored {
                record,
                producer: producer.to_owned(),
                txn: None,
            });
        self.touch();
    }

    /// The messages of `topic` a reader sees now, in order: outside a
    /// transaction or in a committed one, up to the first message of a
    /// transaction still open.
    pub(crate) fn visible(&self, topic: &str) -> Vec<Stored> {
        let state = self.state();
        let Some(t) = state.topics.get(topic) else {
            return Vec::new();
        };
        visible_indices(&state, t)
            .into_iter()
            .map(|i| t.messages[i].clone())
            .collect()
    }

    /// The values of [`Memory::visible`], as text.
    pub(crate) fn values(&self, topic: &str) -> Vec<String> {
        self.visible(topic)
            .iter()
            .map(|m| String::from_utf8_lossy(m.record.value.as_deref().unwrap_or_default()).into())
            .collect()
    }

    /// Messages of `topic` in any state, aborted and open ones included.
    pub(crate) fn stored(&self, topic: &str) -> usize {
        self.state()
            .topics
            .get(topic)
            .map_or(0, |t| t.messages.len())
    }

    /// Producers of `topic` fenced out by another with `Access::Fencing`.
    pub(crate) fn fenced(&self, topic: &str) -> usize {
        self.state().topics.get(topic).map_or(0, |t| t.fenced.len())
    }

    /// Transactions still open.
    pub(crate) fn open_transactions(&self) -> usize {
        self.state()
            .txns
            .values()
            .filter(|(s, _)| *s == TxnState::Open)
            .count()
    }

    /// Connections made, commits and aborts.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        let state = self.state();
        (state.connects, state.commits, state.aborts)
    }

    /// Messages of `topic` that `subscription` has acknowledged.
    pub(crate) fn acked(&self, topic: &str, subscription: &str) -> usize {
        self.state()
            .topics
            .get(topic)
            .and_then(|t| t.subscriptions.get(subscription))
            .map_or(0, |s| s.acked.len())
    }

    /// Whether an exclusive producer holds `topic`.
    pub(crate) fn held(&self, topic: &str) -> bool {
        self.state()
            .topics
            .get(topic)
            .is_some_and(|t| t.exclusive.is_some())
    }

    /// Remove `topic`.
    pub(crate) fn delete(&self, topic: &str) {
        self.state().topics.remove(topic);
        self.touch();
    }

    /// Wait until `done` holds: looked at on every change of the broker,
    /// and every 10 ms for what changes elsewhere (a connector's script).
    pub(crate) async fn until(&self, mut done: impl FnMut(&Self) -> bool) {
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if done(self) {
                return;
            }
            tokio::select! {
                _ = rx.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }
}

/// The indices of a topic's visible messages (see [`Memory::visible`]).
fn visible_indices(state: &State, topic: &Topic) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, m) in topic.messages.iter().enumerate() {
        match m.txn.map(|t| state.txns.get(&t).map(|(s, _)| *s)) {
            None | Some(Some(TxnState::Committed)) => out.push(i),
            Some(Some(TxnState::Aborted)) => {}
            Some(_) => break,
        }
    }
    out
}

fn sink_record(topic: &str, index: usize, m: &Stored) -> SinkRecord {
    let r = &m.record;
    let mut properties = r.properties.clone();
    if let Some(seq) = r.sequence {
        properties.push((SEQUENCE_PROPERTY.to_owned(), seq.to_string()));
    }
    SinkRecord {
        topic: topic.to_owned(),
        key: r.key.clone(),
        value: r.value.clone(),
        properties,
        event_time_ms: r.event_time_ms,
        publish_time_ms: 1,
        origin: Origin::new(m.producer.as_str(), r.sequence),
        message_id: sluice_connectors::api::MessageId {
            ledger: 0,
            entry: index as u64,
            partition: -1,
            batch: -1,
        },
        value_schema: None,
    }
}

impl Dial for Memory {
    type Broker = Memory;

    async fn connect(&self, _reading: Reading) -> Result<Memory, PulsarError> {
        let mut state = self.state();
        fault(&mut state.faults.connects, "connect")?;
        state.connects += 1;
        Ok(self.clone())
    }
}

impl Broker for Memory {
    type Producer = MemProducer;
    type Consumer = MemConsumer;
    type Backlog = MemBacklog;
    type Watch = MemWatch;

    async fn producer(
        &self,
        topic: &str,
        options: &ProducerOptions,
    ) -> Result<MemProducer, PulsarError> {
        let mut state = self.state();
        fault(&mut state.faults.producers, "create a producer")?;
        state.next_id += 1;
        let id = state.next_id;
        let t = state.topics.entry(topic.to_owned()).or_default();
        match options.access {
            Access::Shared => {}
            Access::Exclusive if t.exclusive.is_some() => {
                return Err(PulsarError::held_elsewhere(
                    format!("create a producer on {topic}"),
                    "another exclusive producer is connected",
                ));
            }
            Access::Exclusive => t.exclusive = Some(id),
            Access::Fencing => {
                t.fenced.extend(t.exclusive.replace(id));
            }
        }
        Ok(MemProducer {
            broker: self.clone(),
            topic: topic.to_owned(),
            id,
            name: options.name.clone().unwrap_or_else(|| format!("p-{id}")),
            schema: options.schema.clone(),
        })
    }

    async fn consumer(
        &self,
        topics: &[String],
        options: &ConsumerOptions,
    ) -> Result<MemConsumer, PulsarError> {
        let mut state = self.state();
        for t in topics {
            state
                .topics
                .entry(t.clone())
                .or_default()
                .subscriptions
                .entry(options.subscription.clone())
                .or_default();
        }
        Ok(MemConsumer {
            broker: self.clone(),
            topics: topics.to_vec(),
            subscription: options.subscription.clone(),
            delivered: HashSet::new(),
            again: Vec::new(),
            changed: self.changed.subscribe(),
        })
    }

    async fn topics_matching(
        &self,
        namespace: &str,
        pattern: &str,
    ) -> Result<Vec<String>, PulsarError> {
        let re = regex_lite::Regex::new(pattern)
            .map_err(|e| PulsarError::from_message(e.to_string()))?;
        let prefix = format!("persistent://{namespace}/");
        let state = self.state();
        let mut out: Vec<String> = state
            .topics
            .keys()
            .filter(|t| t.starts_with(&prefix) && re.is_match(t))
            .cloned()
            .collect();
        out.sort();
        Ok(out)
    }

    async fn partitions(&self, topics: &[String]) -> Result<Vec<String>, PulsarError> {
        let state = self.state();
        let mut out = Vec::new();
        for topic in topics {
            match state.partitions.get(topic) {
                Some(n) => out.extend((0..*n).map(|i| format!("{topic}-partition-{i}"))),
                None => out.push(topic.clone()),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn memory_limit(&self) -> u64 {
        self.state().memory_limit.unwrap_or(u64::MAX)
    }

    fn renew_at(&self) -> Option<Instant> {
        None
    }

    async fn begin(&self, _timeout: Duration) -> Result<Txn, PulsarError> {
        let mut state = self.state();
        state.next_id += 1;
        let id = state.next_id;
        state.txns.insert(id, (TxnState::Open, HashSet::new()));
        Txn::from_id_text(&format!("0:{id}"))
            .ok_or_else(|| PulsarError::from_message("a transaction id"))
    }

    async fn register(&self, txn: &Txn, topic: &str) -> Result<(), PulsarError> {
        let mut state = self.state();
        match state.txns.get_mut(&txn_key(txn)) {
            Some((TxnState::Open, topics)) => {
                topics.insert(topic.to_owned());
                Ok(())
            }
            _ => Err(PulsarError::from_message(
                "register: the transaction is not open",
            )),
        }
    }

    async fn commit(&self, txn: Txn) -> Result<(), PulsarError> {
        let result = {
            let mut state = self.state();
            fault(&mut state.faults.commits, "commit")?;
            match state.txns.get_mut(&txn_key(&txn)) {
                Some((s @ TxnState::Open, _)) => {
                    *s = TxnState::Committed;
                    state.commits += 1;
                    fault(&mut state.faults.commits_unanswered, "the commit's answer")
                }
                other => Err(PulsarError::from_message(format!(
                    "the transaction ended {:?}, not committed",
                    other.map(|(s, _)| *s)
                ))),
            }
        };
        self.touch();
        result
    }

    async fn abort(&self, txn: Txn) -> Result<(), PulsarError> {
        let result = {
            let mut state = self.state();
            match state.txns.get_mut(&txn_key(&txn)) {
                Some((s @ TxnState::Open, _)) => {
                    *s = TxnState::Aborted;
                    state.aborts += 1;
                    Ok(())
                }
                _ => Err(PulsarError::from_message(
                    "abort: the transaction is not open",
                )),
            }
        };
        self.touch();
        result
    }

    async fn abort_orphan(&self, txn: Txn) -> Result<OrphanEnd, PulsarError> {
        fault(
            &mut self.state().faults.orphan_aborts,
            "abort a transaction",
        )?;
        // As Pulsar's coordinator: an ended transaction is forgotten (its
        // commit, if any, already visible); this broker commits at once, so
        // never answers that one is being committed.
        let ended = match self.state().txns.get(&txn_key(&txn)) {
            Some((TxnState::Open, _)) => None,
            _ => Some(OrphanEnd::Unknown),
        };
        match ended {
            Some(end) => Ok(end),
            None => Broker::abort(self, txn).await.map(|()| OrphanEnd::Aborted),
        }
    }

    async fn backlog(&self, topic: &str, subscription: &str) -> Result<MemBacklog, PulsarError> {
        self.state()
            .topics
            .entry(topic.to_owned())
            .or_default()
            .subscriptions
            .entry(subscription.to_owned())
            .or_default();
        let mut backlog = MemBacklog {
            broker: self.clone(),
            topic: topic.to_owned(),
            subscription: subscription.to_owned(),
            messages: Vec::new(),
        };
        backlog.read_more().await?;
        Ok(backlog)
    }

    async fn watch(&self, topic: &str) -> Result<MemWatch, PulsarError> {
        Ok(MemWatch {
            broker: self.clone(),
            topic: topic.to_owned(),
            seen: self.stored(topic),
        })
    }

    async fn close(self) {}
}

/// A record with a value and a sequence, for tests.
pub(crate) fn record(value: &str, sequence: u64) -> SourceRecord {
    SourceRecord {
        value: Some(value.as_bytes().to_vec()),
        sequence: Some(Sequence::from_parts(sequence, 0)),
        ..SourceRecord::default()
    }
}
