//! Messages the broker hands a sink again while the sink holds them.
//!
//! A broker can deliver a message to a consumer again while its first
//! delivery is still unacknowledged, with a redelivery count of 0: Pulsar
//! 4.0's Key_Shared dispatcher does it now and then when the consumer's
//! receiver queue is short. Applied twice, such a message sets a key back
//! to an older version after a newer one (v36 after v37), which is what
//! `retainKeyOrdering` promises never happens. So a sink passes over a
//! message it still holds (received, not yet acknowledged): the first
//! delivery is written and acknowledged as usual.
//!
//! A message delivered after its acknowledgement is written again: the
//! broker does that when the acknowledgement was lost, or when the
//! subscription was rewound on purpose (a replay), which must apply it.

use std::collections::HashSet;
use std::hash::Hash;

/// The messages a sink holds.
#[derive(Debug)]
pub(super) struct Deliveries<H> {
    held: HashSet<H>,
    /// Deliveries passed over since last asked.
    passed_over: u64,
}

impl<H: Copy + Eq + Hash> Default for Deliveries<H> {
    fn default() -> Self {
        Self {
            held: HashSet::new(),
            passed_over: 0,
        }
    }
}

impl<H: Copy + Eq + Hash> Deliveries<H> {
    /// Whether a message delivered is new to the sink (then held from now
    /// on), rather than one it holds already.
    pub(super) fn is_new(&mut self, handle: H) -> bool {
        let new = self.held.insert(handle);
        if !new {
            self.passed_over += 1;
        }
        new
    }

    /// `handles` acknowledged: no longer held.
    pub(super) fn acknowledged(&mut self, handles: &[H]) {
        for h in handles {
            self.held.remove(h);
        }
    }

    /// How many deliveries were passed over, since the last time asked.
    pub(super) fn take_passed_over(&mut self) -> u64 {
        std::mem::take(&mut self.passed_over)
    }

    /// How many messages are held.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Deliveries;

    #[test]
    fn a_message_held_is_passed_over_and_one_acknowledged_is_new_again() {
        let mut d = Deliveries::default();
        assert!(d.is_new(1));
        assert!(d.is_new(2));
        // Delivered again while held: passed over.
        assert!(!d.is_new(1));
        d.acknowledged(&[1, 2]);
        assert_eq!(d.held(), 0);
        // Delivered after its acknowledgement (lost, or a replay): new.
        assert!(d.is_new(2));
        assert_eq!(d.take_passed_over(), 1);
        assert_eq!(d.take_passed_over(), 0);
    }
}
