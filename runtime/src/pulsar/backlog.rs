//! A durable subscription's backlog, read without acknowledging.

use std::time::Duration;

use magnetar::MessageId;
use magnetar::proto::SubscribeRequest;
use magnetar::proto::pb::command_subscribe::{InitialPosition, SubType};
use magnetar::runtime_tokio as rt;

use super::{Client, PulsarError};

impl Client {
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

/// How long a backlog read waits for more past the broker's last id.
const PAST_THE_LAST: Duration = Duration::from_millis(300);

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
    /// sit behind an open transaction. Past the last id, read on while
    /// messages keep coming within [`PAST_THE_LAST`]: the broker's last
    /// id can lag behind committed messages (Pulsar 4.0 caches it, and a
    /// transaction committed after another's abort left it behind), and a
    /// marker missed there would be an older progress recovered. Call
    /// again after ending a transaction that held messages back.
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
            let past = self
                .messages
                .last()
                .is_some_and(|(id, _)| (id.ledger_id, id.entry_id) >= target);
            let wait = match (past, self.messages.is_empty()) {
                (true, _) => PAST_THE_LAST,
                (false, true) => Duration::from_secs(5),
                (false, false) => Duration::from_secs(1),
            };
            match tokio::time::timeout(wait, self.consumer.receive()).await {
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
