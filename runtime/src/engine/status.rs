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
    pub batch_latency: crate::metrics::Histogram,
    /// What a sink passed over as applied before, by reason.
    pub skips: std::sync::Arc<sluice_connectors::Skips>,
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
            batch_latency: crate::metrics::Histogram::default(),
            skips: std::sync::Arc::default(),
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

    /// Add to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
