//! Where the broker stored a message: a Pulsar message id, typed.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A Pulsar message id: the ledger and entry the broker stored a message
/// in, the partition of its topic (`-1` for a topic without partitions)
/// and its index in a batch (`-1` for a message sent alone).
///
/// Ids of one topic partition order as the broker assigned them: by
/// ledger, entry, then batch index. Ids of different partitions do not
/// order in time; the partition only breaks ties, so that the order agrees
/// with equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId {
    /// The ledger.
    pub ledger: u64,
    /// The entry in the ledger.
    pub entry: u64,
    /// The partition, `-1` for none.
    pub partition: i32,
    /// The index in a batch, `-1` for none.
    pub batch: i32,
}

impl Default for MessageId {
    fn default() -> Self {
        Self {
            ledger: 0,
            entry: 0,
            partition: -1,
            batch: -1,
        }
    }
}

impl Ord for MessageId {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ledger, self.entry, self.batch, self.partition).cmp(&(
            other.ledger,
            other.entry,
            other.batch,
            other.partition,
        ))
    }
}

impl PartialOrd for MessageId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `ledger:entry:partition:batch`, as Pulsar's clients print a message id.
impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.ledger, self.entry, self.partition, self.batch
        )
    }
}

/// Text that is not `ledger:entry:partition:batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAMessageId(pub String);

impl fmt::Display for NotAMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" is not ledger:entry:partition:batch", self.0)
    }
}

impl std::error::Error for NotAMessageId {}

impl FromStr for MessageId {
    type Err = NotAMessageId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wrong = || NotAMessageId(text.to_owned());
        let mut parts = text.split(':');
        let mut next = || parts.next().ok_or_else(wrong);
        let id = Self {
            ledger: next()?.parse().map_err(|_| wrong())?,
            entry: next()?.parse().map_err(|_| wrong())?,
            partition: next()?.parse().map_err(|_| wrong())?,
            batch: next()?.parse().map_err(|_| wrong())?,
        };
        match parts.next() {
            None => Ok(id),
            Some(_) => Err(wrong()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_round_trips_through_its_text() {
        let id: MessageId = "12:7:-1:3".parse().unwrap();
        assert_eq!(
            id,
            MessageId {
                ledger: 12,
                entry: 7,
                partition: -1,
                batch: 3
            }
        );
        assert_eq!(id.to_string(), "12:7:-1:3");
        for bad in ["", "1:2:3", "1:2:3:4:5", "a:2:3:4", "-1:2:3:4"] {
            assert_eq!(
                bad.parse::<MessageId>(),
                Err(NotAMessageId(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_of_a_partition_order_by_ledger_entry_then_batch() {
        let id = |text: &str| text.parse::<MessageId>().unwrap();
        assert!(id("1:9:0:5") < id("2:0:0:0"));
        assert!(id("2:0:0:9") < id("2:1:0:0"));
        assert!(id("2:1:0:0") < id("2:1:0:1"));
        assert!(id("2:1:-1:-1") < id("2:1:-1:0"));
    }
}
