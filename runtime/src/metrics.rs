//! Prometheus metrics: names, a lock-free histogram, and the text format
//! rendered from every connector's status.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::engine::status::ConnectorStatus;

/// Records taken in by a connector.
pub const RECORDS_IN: &str = "sluice_records_in_total";
/// Records delivered by a connector.
pub const RECORDS_OUT: &str = "sluice_records_out_total";
/// Payload bytes taken in.
pub const BYTES_IN: &str = "sluice_bytes_in_total";
/// Payload bytes delivered.
pub const BYTES_OUT: &str = "sluice_bytes_out_total";
/// Failed attempts.
pub const ERRORS: &str = "sluice_errors_total";
/// Records sent to a dead-letter topic.
pub const DEAD_LETTERED: &str = "sluice_dead_lettered_total";
/// Records lost under ATMOST_ONCE.
pub const DROPPED: &str = "sluice_dropped_total";
/// Connector restarts after a failure.
pub const RESTARTS: &str = "sluice_restarts_total";
/// Event time to delivery, last record, in seconds.
pub const LAG: &str = "sluice_lag_seconds";
/// Batch write or publish latency.
pub const BATCH_LATENCY: &str = "sluice_batch_latency_seconds";
/// Records a sink passed over, by `reason`: applied before
/// (`redelivered`, `republished`), or not selected by its filter
/// (`filtered`).
pub const SKIPPED: &str = "sluice_skipped_total";
/// 1 while the connector runs.
pub const UP: &str = "sluice_connector_up";

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// A counter: its name, help text and how to read it from a status.
type Counter = (&'static str, &'static str, fn(&ConnectorStatus) -> u64);

/// Render every connector's metrics in the Prometheus text format.
pub fn render(statuses: &[std::sync::Arc<ConnectorStatus>]) -> String {
    let mut out = String::new();
    let counters: [Counter; 8] = [
        (RECORDS_IN, "Records taken in.", |s| {
            s.records_in.load(Ordering::Relaxed)
        }),
        (RECORDS_OUT, "Records delivered durably.", |s| {
            s.records_out.load(Ordering::Relaxed)
        }),
        (BYTES_IN, "Payload bytes taken in.", |s| {
            s.bytes_in.load(Ordering::Relaxed)
        }),
        (BYTES_OUT, "Payload bytes delivered.", |s| {
            s.bytes_out.load(Ordering::Relaxed)
        }),
        (ERRORS, "Failed attempts.", |s| {
            s.errors.load(Ordering::Relaxed)
        }),
        (
            DEAD_LETTERED,
            "Records sent to the dead-letter topic.",
            |s| s.dead_lettered.load(Ordering::Relaxed),
        ),
        (DROPPED, "Records lost under ATMOST_ONCE.", |s| {
            s.dropped.load(Ordering::Relaxed)
        }),
        (RESTARTS, "Restarts after a failure.", |s| {
            s.restarts.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for s in statuses {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(s), get(s));
        }
    }
    let _ = writeln!(
        out,
        "# HELP {SKIPPED} Records a sink passed over, by reason.\n# TYPE {SKIPPED} counter"
    );
    for s in statuses {
        for (reason, n) in [
            ("redelivered", &s.skips.redelivered),
            ("republished", &s.skips.republished),
            ("filtered", &s.skips.filtered),
        ] {
            let _ = writeln!(
                out,
                "{SKIPPED}{{{},reason=\"{reason}\"}} {}",
                labels(s),
                n.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP {LAG} Event time to delivery of the last record.\n# TYPE {LAG} gauge"
    );
    for s in statuses {
        let lag = s.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "{LAG}{{{}}} {lag}", labels(s));
    }
    let _ = writeln!(
        out,
        "# HELP {UP} 1 while the connector runs.\n# TYPE {UP} gauge"
    );
    for s in statuses {
        let up = u8::from(s.state() == crate::engine::status::State::Running);
        let _ = writeln!(out, "{UP}{{{}}} {up}", labels(s));
    }
    let _ = writeln!(
        out,
        "# HELP {BATCH_LATENCY} Batch write or publish latency.\n# TYPE {BATCH_LATENCY} histogram"
    );
    for s in statuses {
        s.batch_latency.render(&mut out, BATCH_LATENCY, &labels(s));
    }
    out
}

fn labels(s: &ConnectorStatus) -> String {
    format!("connector=\"{}\",kind=\"{}\"", s.name, s.kind)
}
