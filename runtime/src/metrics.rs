//! Prometheus metrics: names, and the text format rendered from every
//! connector's status.

use std::fmt::Write;
use std::sync::atomic::Ordering;

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
/// 1 while the connector waits as a standby for another instance.
pub const STANDBY: &str = "sluice_connector_standby";
/// 1 while the connector runs but its outstanding work has not moved for
/// a minute.
pub const STALLED: &str = "sluice_connector_stalled";
/// Rows a snapshot copied, per table.
pub const SNAPSHOT_ROWS: &str = "sluice_snapshot_rows";
/// Rows a table holds by its statistics, per table of a snapshot.
pub const SNAPSHOT_ESTIMATE: &str = "sluice_snapshot_rows_estimated";
/// 1 once a table of a snapshot is copied.
pub const SNAPSHOT_DONE: &str = "sluice_snapshot_table_done";
/// Rows a second a table of a snapshot is copied at.
pub const SNAPSHOT_RATE: &str = "sluice_snapshot_rows_per_second";
/// Seconds a table of a snapshot still needs, at its rate.
pub const SNAPSHOT_ETA: &str = "sluice_snapshot_eta_seconds";
/// Bytes of WAL the server keeps for a source's slot.
pub const WAL_RETAINED: &str = "sluice_slot_wal_retained_bytes";
/// Bytes of WAL that may be written before the slot is at risk.
pub const WAL_SAFE: &str = "sluice_slot_wal_safe_bytes";
/// 1 for the slot's `wal_status`.
pub const WAL_STATUS: &str = "sluice_slot_wal_status";

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
            ("delivered_twice", &s.skips.delivered_twice),
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
        "# HELP {STANDBY} 1 while the connector waits as a standby for another instance.\n# TYPE {STANDBY} gauge"
    );
    for s in statuses {
        let standby = u8::from(s.state() == crate::engine::status::State::Standby);
        let _ = writeln!(out, "{STANDBY}{{{}}} {standby}", labels(s));
    }
    let _ = writeln!(
        out,
        "# HELP {STALLED} 1 while the connector runs but its outstanding work has not moved for a minute.\n# TYPE {STALLED} gauge"
    );
    let now = crate::engine::status::now_ms();
    for s in statuses {
        let stalled = u8::from(s.stalled_for(now).is_some());
        let _ = writeln!(out, "{STALLED}{{{}}} {stalled}", labels(s));
    }
    let _ = writeln!(
        out,
        "# HELP {BATCH_LATENCY} Batch write or publish latency.\n# TYPE {BATCH_LATENCY} histogram"
    );
    for s in statuses {
        s.batch_latency.render(&mut out, BATCH_LATENCY, &labels(s));
    }
    snapshots(&mut out, statuses);
    out
}

/// The snapshots sources report: per table, and the slot's WAL.
fn snapshots(out: &mut String, statuses: &[std::sync::Arc<ConnectorStatus>]) {
    let reports: Vec<_> = statuses
        .iter()
        .filter_map(|s| s.snapshot.get().map(|r| (s, r)))
        .collect();
    if reports.is_empty() {
        return;
    }
    type Get = fn(&sluice_connectors::TableCopy) -> Option<f64>;
    let per_table: [(&str, &str, Get); 5] = [
        (SNAPSHOT_ROWS, "Rows a snapshot copied.", |t| {
            Some(t.rows as f64)
        }),
        (
            SNAPSHOT_ESTIMATE,
            "Rows the table holds by its statistics.",
            |t| t.estimate.map(|e| e as f64),
        ),
        (SNAPSHOT_DONE, "1 once the table is copied.", |t| {
            Some(f64::from(u8::from(t.done)))
        }),
        (
            SNAPSHOT_RATE,
            "Rows a second the table is copied at.",
            |t| t.rows_per_second,
        ),
        (
            SNAPSHOT_ETA,
            "Seconds the table's copy still needs, at its rate.",
            |t| t.eta_seconds.map(|e| e as f64),
        ),
    ];
    for (name, help, get) in per_table {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (s, report) in &reports {
            for t in &report.tables {
                if let Some(v) = get(t) {
                    let _ = writeln!(
                        out,
                        "{name}{{{},table=\"{}\"}} {v}",
                        labels(s),
                        escaped(&t.table)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP {WAL_RETAINED} Bytes of WAL the server keeps for the source's slot.\n# TYPE {WAL_RETAINED} gauge\n\
         # HELP {WAL_SAFE} Bytes of WAL that may be written before the slot is at risk.\n# TYPE {WAL_SAFE} gauge\n\
         # HELP {WAL_STATUS} 1 for the slot's wal_status.\n# TYPE {WAL_STATUS} gauge"
    );
    for (s, report) in &reports {
        if let Some(bytes) = report.wal_retained_bytes {
            let _ = writeln!(out, "{WAL_RETAINED}{{{}}} {bytes}", labels(s));
        }
        if let Some(bytes) = report.wal_safe_bytes {
            let _ = writeln!(out, "{WAL_SAFE}{{{}}} {bytes}", labels(s));
        }
        if let Some(status) = &report.wal_status {
            let _ = writeln!(
                out,
                "{WAL_STATUS}{{{},status=\"{}\"}} 1",
                labels(s),
                escaped(status)
            );
        }
    }
}

fn labels(s: &ConnectorStatus) -> String {
    format!("connector=\"{}\",kind=\"{}\"", escaped(&s.name), s.kind)
}

/// A label value as the text format wants it.
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
