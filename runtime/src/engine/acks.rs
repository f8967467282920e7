//! Ordered completion tracking for a source: records complete in any order,
//! but a source position is released only when every record before it is
//! durable.

use std::collections::VecDeque;

use sluice_connectors::Position;

/// Identifies one batch handed to [`OrderedAcks::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchId(u64);

#[derive(Debug)]
struct Slot {
    pending: usize,
    checkpoint: Option<Position>,
}

/// The batches in flight, oldest first.
#[derive(Debug, Default)]
pub(crate) struct OrderedAcks {
    /// Id of the oldest batch still tracked.
    front: u64,
    slots: VecDeque<Slot>,
}

impl OrderedAcks {
    /// Track a batch of `records` records that releases `checkpoint` once
    /// they and everything before them are complete.
    pub(crate) fn push(&mut self, records: usize, checkpoint: Option<Position>) -> BatchId {
        let id = BatchId(self.front + self.slots.len() as u64);
        self.slots.push_back(Slot {
            pending: records,
            checkpoint,
        });
        id
    }

    /// One record of `batch` is durable. Returns the newest position that is
    /// now covered by a contiguous durable prefix, if that moved.
    pub(crate) fn complete(&mut self, batch: BatchId) -> Option<Position> {
        let index = batch.0.checked_sub(self.front)? as usize;
        let slot = self.slots.get_mut(index)?;
        slot.pending = slot.pending.saturating_sub(1);
        self.release()
    }

    /// Pop every finished batch at the front; return the last checkpoint among them.
    pub(crate) fn release(&mut self) -> Option<Position> {
        let mut released = None;
        while let Some(slot) = self.slots.front() {
            if slot.pending > 0 {
                break;
            }
            if let Some(p) = slot.checkpoint {
                released = Some(p);
            }
            self.slots.pop_front();
            self.front += 1;
        }
        released
    }

    /// Nothing is in flight.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_only_the_contiguous_prefix() {
        let mut acks = OrderedAcks::default();
        let a = acks.push(2, Some(Position(10)));
        let b = acks.push(1, Some(Position(20)));
        let c = acks.push(1, Some(Position(30)));
        assert_eq!(acks.complete(b), None, "b is done but a is not");
        assert_eq!(acks.complete(c), None);
        assert_eq!(acks.complete(a), None, "a has one more record");
        assert_eq!(
            acks.complete(a),
            Some(Position(30)),
            "a, b and c are all done"
        );
        assert!(acks.is_empty());
    }

    #[test]
    fn batches_without_a_checkpoint_release_the_last_one_before() {
        let mut acks = OrderedAcks::default();
        let a = acks.push(1, Some(Position(5)));
        let b = acks.push(1, None);
        assert_eq!(acks.complete(a), Some(Position(5)));
        assert_eq!(acks.complete(b), None);
    }

    #[test]
    fn an_empty_batch_releases_at_once_when_at_the_front() {
        let mut acks = OrderedAcks::default();
        acks.push(0, Some(Position(7)));
        assert_eq!(acks.release(), Some(Position(7)));
    }

    #[test]
    fn unknown_or_finished_batches_are_ignored() {
        let mut acks = OrderedAcks::default();
        let a = acks.push(1, Some(Position(1)));
        assert_eq!(acks.complete(a), Some(Position(1)));
        assert_eq!(acks.complete(a), None);
    }
}
