//! Entries the client cannot read: a compressed batch that the relay could
//! not inflate (decision 0019), because it inflates past the largest frame
//! the client takes or does not decompress at all.
//!
//! magnetar splits a batch into its messages before it decompresses it, so
//! it finds no message in a compressed one: it delivers nothing, keeps the
//! entry unacknowledged, and the subscription stalls without an error. So a
//! consumer that has received nothing for [`IDLE`] while its client holds an
//! undelivered batch asks the broker what the subscription's next entry is,
//! and fails, saying what to do, when it is such a batch (decision 0012).

use std::sync::Arc;
use std::time::Duration;

use magnetar::proto::frame::MAX_FRAME_SIZE;
use magnetar::runtime_tokio as rt;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tracing::warn;

use super::PulsarError;
use super::admin::{Get, Reply};

/// How long a consumer receives nothing before it looks.
pub(super) const IDLE: Duration = Duration::from_secs(5);

/// Looks at one topic's subscription when its consumer idles.
pub(super) struct Inspector {
    get: Option<Arc<Get>>,
    topic: String,
    subscription: String,
    warned: bool,
}

impl Inspector {
    /// `get` asks the admin REST API; without it the inspector can only warn.
    pub(super) fn new(get: Option<Arc<Get>>, topic: &str, subscription: &str) -> Self {
        Self {
            get,
            topic: topic.to_owned(),
            subscription: subscription.to_owned(),
            warned: false,
        }
    }

    /// Why `consumer` will receive nothing more, when that is an entry it
    /// cannot read.
    pub(super) async fn check(&mut self, consumer: &rt::Consumer) -> Option<PulsarError> {
        if consumer.stats().pending_batch_acks == 0 {
            return None;
        }
        let answer = match &self.get {
            Some(get) => {
                let (get, path) = (Arc::clone(get), self.next_entry_path());
                match tokio::task::spawn_blocking(move || get(path)).await {
                    Ok(answer) => answer.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            None => Err("no admin REST API to ask".to_owned()),
        };
        match answer {
            Ok(reply) => unreadable(&reply).map(|why| {
                PulsarError::new(
                    format!("receive from {}", self.topic),
                    format!(
                        "{why}, which sluice cannot read: it would wait forever. Skip the \
                         entry (pulsar-admin topics skip) or let another consumer read it, \
                         and have the topic's producers write smaller batches \
                         (batchingMaxBytes)"
                    ),
                )
            }),
            Err(e) => {
                if !std::mem::replace(&mut self.warned, true) {
                    warn!(topic = %self.topic, error = %e,
                        "nothing received for a while although the client holds a batch it did \
                         not deliver, and the subscription's next entry could not be looked at: \
                         if it is a compressed batch that does not inflate, sluice cannot read it");
                }
                None
            }
        }
    }

    /// The admin path that peeks at the subscription's first unacknowledged
    /// entry.
    fn next_entry_path(&self) -> String {
        let topic = self
            .topic
            .split_once("://")
            .map_or(self.topic.as_str(), |(_, rest)| rest);
        let domain = if self.topic.starts_with("non-persistent://") {
            "non-persistent"
        } else {
            "persistent"
        };
        let subscription = utf8_percent_encode(&self.subscription, NON_ALPHANUMERIC);
        format!("/admin/v2/{domain}/{topic}/subscription/{subscription}/position/1")
    }
}

/// What makes the peeked entry unreadable, if anything: a batch of more
/// than one message, compressed (the relay inflates every other one).
fn unreadable(reply: &Reply) -> Option<String> {
    let codec = reply
        .header("X-Pulsar-compression")
        .filter(|c| !c.eq_ignore_ascii_case("NONE"))?;
    let count: u32 = reply.header("X-Pulsar-num-batch-message")?.parse().ok()?;
    let id = reply.header("X-Pulsar-Message-ID").unwrap_or("?");
    let why = match reply
        .header("X-Pulsar-uncompressed-size")
        .and_then(|n| n.parse::<u64>().ok())
    {
        Some(n) if n > MAX_FRAME_SIZE as u64 => format!(
            "it inflates to {n} bytes, more than the {MAX_FRAME_SIZE} bytes sluice's Pulsar \
             client takes in one frame"
        ),
        _ => "sluice could not inflate it (the log says why)".to_owned(),
    };
    (count > 1).then(|| {
        format!(
            "the subscription's next entry ({id}) is a batch of {count} messages compressed \
             with {codec}, and {why}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(headers: &[(&str, &str)]) -> Reply {
        Reply::with_headers(headers)
    }

    #[test]
    fn only_a_compressed_batch_of_several_messages_is_unreadable() {
        let batch = [
            ("x-pulsar-compression", "LZ4"),
            ("X-Pulsar-num-batch-message", "100"),
            ("X-Pulsar-Message-ID", "12:3"),
        ];
        assert_eq!(
            unreadable(&reply(&batch)).as_deref(),
            Some(
                "the subscription's next entry (12:3) is a batch of 100 messages compressed \
                 with LZ4, and sluice could not inflate it (the log says why)"
            )
        );
        let large = [
            ("X-Pulsar-compression", "ZSTD"),
            ("X-Pulsar-num-batch-message", "10"),
            ("X-Pulsar-uncompressed-size", "10485760"),
        ];
        ensure_contains(
            &unreadable(&reply(&large)).unwrap_or_default(),
            "it inflates to 10485760 bytes, more than the 5242880 bytes",
        );
        assert_eq!(unreadable(&reply(&batch[1..])), None, "uncompressed");
        let one = [
            ("X-Pulsar-compression", "ZSTD"),
            ("X-Pulsar-num-batch-message", "1"),
        ];
        assert_eq!(unreadable(&reply(&one)), None, "a batch of one is read");
        let none = [
            ("X-Pulsar-compression", "NONE"),
            ("X-Pulsar-num-batch-message", "9"),
        ];
        assert_eq!(unreadable(&reply(&none)), None);
        assert_eq!(unreadable(&reply(&batch[..1])), None, "not a batch");
    }

    fn ensure_contains(text: &str, part: &str) {
        assert!(text.contains(part), "{text}");
    }

    #[test]
    fn the_subscription_is_encoded_in_the_path() {
        let inspector = Inspector::new(None, "persistent://t/n/orders", "public/default/sink");
        assert_eq!(
            inspector.next_entry_path(),
            "/admin/v2/persistent/t/n/orders/subscription/public%2Fdefault%2Fsink/position/1"
        );
    }
}
