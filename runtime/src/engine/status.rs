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
}

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
        }
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
