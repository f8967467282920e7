//! How a batch's acknowledgement is sent on a subscription that delivers
//! in order (Failover).
//!
//! Acknowledging each message on its own makes the broker record each one
//! in the cursor; on a backlog of small records that cost as much CPU as
//! the sink's own work. On a Failover subscription the sink acknowledges
//! what it received in the order received, so one cumulative
//! acknowledgement stands for all of a batch's messages: everything at or
//! below it was received before and is durable, or was acknowledged
//! already. Nothing on such a subscription is negatively acknowledged.
//!
//! A cumulative acknowledgement names an entry, not a record in it: the
//! broker marks the whole entry consumed. So it goes only as far as the
//! last message that ends its entry (the last record of a Pulsar batch, or
//! a message not batched); the records after it, the first part of an
//! entry whose rest is not yet durable, are acknowledged one by one.

use magnetar::MessageId;

/// Split the ids of durable messages of one consumer, in the order
/// received, into the cumulative acknowledgement that covers most of them
/// and the ids to acknowledge one by one.
pub(super) fn split(ids: &[MessageId]) -> (Option<MessageId>, Vec<MessageId>) {
    let entry = |id: &MessageId| (id.ledger_id, id.entry_id);
    let through = ids
        .iter()
        .filter(|id| id.batch_index < 0 || id.batch_index == id.batch_size - 1)
        .max_by_key(|id| entry(id))
        .copied();
    let rest = ids
        .iter()
        .filter(|id| through.as_ref().is_none_or(|t| entry(id) > entry(t)))
        .copied()
        .collect();
    (through, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(entry: u64, index: i32, size: i32) -> MessageId {
        MessageId {
            ledger_id: 7,
            entry_id: entry,
            partition: -1,
            batch_index: index,
            batch_size: size,
        }
    }

    fn entries(ids: &[MessageId]) -> Vec<(u64, i32)> {
        ids.iter().map(|i| (i.entry_id, i.batch_index)).collect()
    }

    #[test]
    fn unbatched_messages_are_acknowledged_by_the_last() {
        let ids: Vec<_> = (1..=5).map(|e| id(e, -1, -1)).collect();
        let (through, rest) = split(&ids);
        assert_eq!(through.map(|t| t.entry_id), Some(5));
        assert!(rest.is_empty());
    }

    #[test]
    fn a_batch_cut_mid_entry_acknowledges_its_tail_one_by_one() {
        // Entries 1 and 2 of three records each, and the first two of entry 3.
        let ids: Vec<_> = (1..=3)
            .flat_map(|e| (0..3).map(move |i| id(e, i, 3)))
            .take(8)
            .collect();
        let (through, rest) = split(&ids);
        assert_eq!(through.map(|t| (t.entry_id, t.batch_index)), Some((2, 2)));
        assert_eq!(entries(&rest), [(3, 0), (3, 1)]);
    }

    #[test]
    fn the_rest_of_an_entry_begun_before_ends_it() {
        // The entry's first records were in the batch before.
        let ids = [id(3, 2, 3), id(4, 0, 2)];
        let (through, rest) = split(&ids);
        assert_eq!(through.map(|t| t.entry_id), Some(3));
        assert_eq!(entries(&rest), [(4, 0)]);
    }

    #[test]
    fn without_an_entry_end_every_message_goes_on_its_own() {
        let ids = [id(9, 0, 4), id(9, 1, 4)];
        let (through, rest) = split(&ids);
        assert!(through.is_none());
        assert_eq!(entries(&rest), [(9, 0), (9, 1)]);
        assert_eq!(split(&[]), (None, Vec::new()));
    }

    #[test]
    fn a_message_delivered_again_below_the_cumulative_one_is_covered() {
        // Entry 2 came again after a reconnection, behind entry 5.
        let ids = [id(5, -1, -1), id(2, -1, -1), id(6, 0, 2)];
        let (through, rest) = split(&ids);
        assert_eq!(through.map(|t| t.entry_id), Some(5));
        assert_eq!(entries(&rest), [(6, 0)]);
    }
}
