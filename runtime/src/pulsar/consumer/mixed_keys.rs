//! Batches of several keys under a Key_Shared subscription.
//!
//! A Key_Shared broker hands each batch whole to one consumer, chosen by
//! the batch's key (its ordering key, else its partition key: its first
//! message's, as the Java and C++ clients' default batchers stamp it). A batch holding several keys takes the
//! others to a consumer that does not own them, so one key's messages can
//! reach two processes and be applied out of order. Only the producer can
//! prevent it, by batching by key (`producerConfig.batchBuilder:
//! KEY_BASED` for a sluice source, `BatcherBuilder.KEY_BASED` in Java,
//! `BatchingType.KeyBased` in C++ and Python) or not batching; a sink says
//! so, once per topic.

use magnetar::MessageId;

/// A batch being read: its ledger and entry, and its first key.
type Batch = ((u64, u64), Option<Vec<u8>>);

/// Watches one topic's batches for a second key.
#[derive(Debug, Default)]
pub(super) struct MixedKeys {
    batch: Option<Batch>,
    said: bool,
}

impl MixedKeys {
    /// Whether message `id`, of key `key`, is the first seen in a batch
    /// of another key, on a topic not said of before.
    pub(super) fn first_mixed(&mut self, id: &MessageId, key: Option<&[u8]>) -> bool {
        if self.said {
            return false;
        }
        if id.batch_index < 0 {
            self.batch = None;
            return false;
        }
        let entry = (id.ledger_id, id.entry_id);
        match &self.batch {
            Some((at, first)) if *at == entry => {
                if first.as_deref() != key {
                    self.said = true;
                    return true;
                }
            }
            _ => self.batch = Some((entry, key.map(<[u8]>::to_vec))),
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::MixedKeys;
    use magnetar::MessageId;

    fn id(entry: u64, batch_index: i32) -> MessageId {
        MessageId {
            ledger_id: 7,
            entry_id: entry,
            batch_index,
            ..MessageId::EARLIEST
        }
    }

    #[test]
    fn a_batch_of_two_keys_is_said_once() {
        let mut m = MixedKeys::default();
        // Batches of one key each, and single messages of other keys.
        assert!(!m.first_mixed(&id(1, 0), Some(&b"a"[..])));
        assert!(!m.first_mixed(&id(1, 1), Some(&b"a"[..])));
        assert!(!m.first_mixed(&id(2, -1), Some(&b"b"[..])));
        assert!(!m.first_mixed(&id(3, 0), Some(&b"b"[..])));
        assert!(!m.first_mixed(&id(3, 1), Some(&b"b"[..])));
        // A batch of two keys, said at its second key, then not again.
        assert!(!m.first_mixed(&id(4, 0), Some(&b"b"[..])));
        assert!(m.first_mixed(&id(4, 1), Some(&b"c"[..])));
        assert!(!m.first_mixed(&id(5, 0), Some(&b"a"[..])));
        assert!(!m.first_mixed(&id(5, 1), Some(&b"b"[..])));
    }
}
