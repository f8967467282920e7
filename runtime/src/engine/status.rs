//! What each running connector reports: its state, counters and last error,
//! read by the HTTP endpoints.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A connector's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Opening its connections.
    Starting,
    /// Moving records.
    Running,
    /// Waiting for another instance of the same source to stop
    /// (EFFECTIVELY_ONCE: one instance publishes at a time).
    Standby,
    /// Failed; waiting to start again.
    Restarting,
    /// Finished its input or stopped on request.
    Stopped,
}

impl State {
    /// The state as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Standby => "standby",
            Self::Restarting => "restarting",
            Self::Stopped => "stopped",
        }
    }
}

/// Counters and state of one connector instance.
#[derive(Debug)]
pub struct ConnectorStatus {
    /// The connector's name.
    pub name: String,
    /// `source` or `sink`.
    pub kind: &'static str,
    state: Mutex<State>,
    last_error: Mutex<Option<String>>,
    /// Records taken in: read from the source, or received from Pulsar.
    pub records_in: AtomicU64,
    /// Records delivered: published and acknowledged by the broker, or
    /// written durably by the sink.
    pub records_out: AtomicU64,
    /// Payload bytes taken in.
    pub bytes_in: AtomicU64,
    /// Payload bytes delivered.
    pub bytes_out: AtomicU64,
    /// Failed attempts: publishes, writes, connections.
    pub errors: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Records lost under ATMOST_ONCE.
    pub dropped: AtomicU64,
    /// Restarts after a failure.
    pub restarts: AtomicU64,
    /// Milliseconds between a record's event time and its delivery, last seen.
    pub lag_ms: AtomicU64,
    /// Batch write (sink) or publish (source) latency histogram.
    pub batch_latency: crate::histogram::Histogram,
    /// What a sink passed over as applied before, by reason.
    pub skips: std::sync::Arc<sluice_connectors::Skips>,
    /// A source's snapshot, as it reports it.
    pub snapshot: std::sync::Arc<sluice_connectors::SnapshotBoard>,
    /// When, on the clock of [`now_ms`], the work now outstanding (a batch
    /// being written, records being published) last moved; 0 while none
    /// is outstanding. See [`ConnectorStatus::stalled_for`].
    waiting_since_ms: AtomicU64,
}

/// How long outstanding work may go without moving before a running
/// connector is reported as stalled.
pub const STALL_AFTER_MS: u64 = 60_000;

impl ConnectorStatus {
    /// A fresh status in the starting state.
    pub fn new(name: impl Into<String>, kind: &'static str) -> Self {
        Self {
            name: name.into(),
            kind,
            state: Mutex::new(State::Starting),
            last_error: Mutex::new(None),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            batch_latency: crate::histogram::Histogram::default(),
            skips: std::sync::Arc::default(),
            snapshot: std::sync::Arc::default(),
            waiting_since_ms: AtomicU64::new(0),
        }
    }

    /// Work is outstanding from now, unless some already was: a batch
    /// taken to be written, records sent to be published.
    pub fn work_started(&self) {
        let _ = self.waiting_since_ms.compare_exchange(
            0,
            now_ms().max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Outstanding work moved (a batch written, a publish confirmed);
    /// `more` says whether some is still outstanding.
    pub fn work_moved(&self, more: bool) {
        let since = if more { now_ms().max(1) } else { 0 };
        self.waiting_since_ms.store(since, Ordering::Relaxed);
    }

    /// How long a connector that claims to run has had work outstanding
    /// without it moving, at `now` (on the clock of [`now_ms`]), once that
    /// is [`STALL_AFTER_MS`] or more: a target or broker that does not
    /// answer, or a process that was stopped (a hung host) and resumed.
    /// The clock is the wall clock, which goes on while a VM is suspended
    /// (a monotonic one would not); a jump of the system's clock shows as a
    /// stall, or hides one, until the work next moves. A wait for input
    /// (a source's read, a sink's next message) is not outstanding work,
    /// so a hang there reads as idle.
    pub fn stalled_for(&self, now: u64) -> Option<u64> {
        let since = self.waiting_since_ms.load(Ordering::Relaxed);
        let waited = now.saturating_sub(since);
        (since != 0 && self.state() == State::Running && waited >= STALL_AFTER_MS).then_some(waited)
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state.lock().map(|s| *s).unwrap_or(State::Restarting)
    }

    /// Move to a state.
    pub fn set_state(&self, state: State) {
        if let Ok(mut s) = self.state.lock() {
            *s = state;
        }
    }

    /// The last failure, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Record a failure.
    pub fn set_error(&self, error: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error.to_owned());
        }
    }

    /// Records (and their payload bytes) taken in: read from the source,
    /// or received from Pulsar.
    pub fn count_in(&self, records: u64, bytes: u64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records (and their payload bytes) delivered: durable in Pulsar, or
    /// in the sink's target.
    pub fn count_out(&self, records: u64, bytes: u64) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records lost under ATMOST_ONCE.
    pub fn count_dropped(&self, records: u64) {
        self.dropped.fetch_add(records, Ordering::Relaxed);
    }

    /// Records sent to the dead-letter topic.
    pub fn count_dead_lettered(&self, records: u64) {
        self.dead_lettered.fetch_add(records, Ordering::Relaxed);
    }

    /// A restart after a failure.
    pub fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// A record whose event happened at `event_time_ms` was just delivered:
    /// the lag is how long ago that was, on the clock of [`now_ms`].
    pub fn observe_lag(&self, event_time_ms: u64) {
        self.lag_ms
            .store(now_ms().saturating_sub(event_time_ms), Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch: the one clock that event times, and
/// so the lag, are read against.
pub fn now_ms() -> u64 {
    sluice_connectors::time::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_work_that_does_not_move_for_a_minute_is_a_stall() {
        let s = ConnectorStatus::new("sink", "sink");
        s.set_state(State::Running);
        let now = now_ms();
        assert_eq!(s.stalled_for(now + 3_600_000), None, "nothing outstanding");
        s.work_started();
        assert_eq!(s.stalled_for(now + 1_000), None);
        let late = s.stalled_for(now + 3_600_000);
        assert!(late.is_some_and(|w| w >= 3_590_000), "{late:?}");
        // Another batch starting does not reset the clock; moving does.
        s.work_started();
        assert!(s.stalled_for(now + 3_600_000).is_some());
        s.work_moved(true);
        assert_eq!(s.stalled_for(now_ms() + 1_000), None);
        s.work_moved(false);
        assert_eq!(s.stalled_for(now + 3_600_000), None);
        // Only a connector that claims to run is stalled.
        s.work_started();
        s.set_state(State::Restarting);
        assert_eq!(s.stalled_for(now + 3_600_000), None);
    }
}
