//! What a standby watches the active instance's beats with: a non-durable
//! subscription from the topic's end, which keeps nothing on the topic.

use magnetar::proto::SubscribeRequest;
use magnetar::proto::pb::command_subscribe::{InitialPosition, SubType};
use magnetar::runtime_tokio as rt;

use super::{Client, PulsarError};

impl Client {
    /// Watch the messages published on `topic` from now on.
    pub async fn watch(&self, topic: &str) -> Result<Watch, PulsarError> {
        // Random: processes in containers all have the same pid.
        let random = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let consumer = self
            .inner
            .subscribe(SubscribeRequest {
                topic: topic.to_owned(),
                subscription: format!("sluice-standby-{random:016x}"),
                sub_type: SubType::Exclusive,
                initial_position: InitialPosition::Latest,
                durable: false,
                receiver_queue_size: 16,
                ..SubscribeRequest::default()
            })
            .await
            .map_err(|e| PulsarError::new(format!("watch {topic}"), e))?;
        Ok(Watch {
            consumer,
            topic: topic.to_owned(),
        })
    }
}

/// Messages published on a topic, as they come.
pub struct Watch {
    consumer: rt::Consumer,
    topic: String,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// Wait for the next message; what it says does not matter.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Result<(), PulsarError> {
        self.consumer
            .receive()
            .await
            .map(|_| ())
            .map_err(|e| PulsarError::new(format!("watch {}", self.topic), e))
    }

    /// Let go of the subscription, which the broker then forgets.
    pub async fn close(self) {
        let _ = self.consumer.close().await;
    }
}
