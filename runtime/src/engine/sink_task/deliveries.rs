//! Messages the broker hands a sink twice.
//!
//! A broker can deliver a message to a consumer again while its first
//! delivery is still unacknowledged, with a redelivery count of 0: Pulsar
//! 4.0's Key_Shared dispatcher does it now and then when the consumer's
//! receiver queue is short. Applied twice, such a message sets a key back
//! to an older version after a newer one (v36 after v37), which is what
//! `retainKeyOrdering` promises never happens. So a sink passes over a
//! message it still holds (received, not yet acknowledged): the first
//! delivery is written and acknowledged as usual. A message it
//! acknowledged lately is passed over too, and acknowledged again, in case
//! the broker did not take the first acknowledgement.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// How many acknowledged messages are remembered.
const REMEMBERED: usize = 65_536;

/// What a delivery is to the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// Not held, nor acknowledged lately: to write.
    New,
    /// A message held now, received before and not yet acknowledged.
    Held,
    /// A message acknowledged lately.
    Acknowledged,
}

/// The messages a sink holds, and those it acknowledged lately.
#[derive(Debug)]
pub(super) struct Deliveries<H> {
    held: HashSet<H>,
    acknowledged: HashSet<H>,
    /// `acknowledged` in the order they were, the oldest first.
    order: VecDeque<H>,
    /// Acknowledged messages delivered again, to acknowledge again.
    again: Vec<H>,
    /// Deliveries passed over so far.
    passed_over: u64,
}

impl<H: Copy + Eq + Hash> Default for Deliveries<H> {
    fn default() -> Self {
        Self {
            held: HashSet::new(),
            acknowledged: HashSet::new(),
            order: VecDeque::new(),
            again: Vec::new(),
            passed_over: 0,
        }
    }
}

impl<H: Copy + Eq + Hash> Deliveries<H> {
    /// A message delivered: `New` ones are held from now on.
    pub(super) fn delivered(&mut self, handle: H) -> Delivery {
        if self.held.contains(&handle) {
            self.passed_over += 1;
            return Delivery::Held;
        }
        if self.acknowledged.contains(&handle) {
            self.passed_over += 1;
            self.again.push(handle);
            return Delivery::Acknowledged;
        }
        self.held.insert(handle);
        Delivery::New
    }

    /// What to acknowledge with `handles`: them, and the acknowledged
    /// messages delivered again since the last time.
    pub(super) fn with_again(&mut self, handles: &[H]) -> Vec<H> {
        let mut all = handles.to_vec();
        all.append(&mut self.again);
        all
    }

    /// `handles` acknowledged: no longer held, remembered for a while.
    pub(super) fn acknowledged(&mut self, handles: &[H]) {
        for h in handles {
            self.held.remove(h);
            if self.acknowledged.insert(*h) {
                self.order.push_back(*h);
            }
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.acknowledged.remove(&old);
            }
        }
    }

    /// How many deliveries were passed over, since the last time asked.
    pub(super) fn take_passed_over(&mut self) -> u64 {
        std::mem::take(&mut self.passed_over)
    }
}

#[cfg(test)]
mod tests {
    use super::{Deliveries, Delivery, REMEMBERED};

    #[test]
    fn a_message_held_or_acknowledged_lately_is_passed_over() {
        let mut d = Deliveries::default();
        assert_eq!(d.delivered(1), Delivery::New);
        assert_eq!(d.delivered(2), Delivery::New);
        // Delivered again while held: passed over, nothing to acknowledge.
        assert_eq!(d.delivered(1), Delivery::Held);
        assert_eq!(d.with_again(&[1, 2]), [1, 2]);
        d.acknowledged(&[1, 2]);
        // Delivered again after its acknowledgement: acknowledged again.
        assert_eq!(d.delivered(2), Delivery::Acknowledged);
        assert_eq!(d.delivered(3), Delivery::New);
        assert_eq!(d.with_again(&[3]), [3, 2]);
        assert_eq!(d.with_again(&[]), [] as [i32; 0]);
        assert_eq!(d.take_passed_over(), 2);
        assert_eq!(d.take_passed_over(), 0);
    }

    #[test]
    fn only_the_latest_acknowledgements_are_remembered() {
        let mut d = Deliveries::default();
        let all: Vec<usize> = (0..REMEMBERED + 10).collect();
        for h in &all {
            d.delivered(*h);
        }
        d.acknowledged(&all);
        assert_eq!(d.delivered(0), Delivery::New);
        assert_eq!(d.delivered(REMEMBERED + 9), Delivery::Acknowledged);
        assert!(d.held.len() == 1 && d.acknowledged.len() == REMEMBERED);
    }
}
