//! `sluice status`: what a running sluice's `/connectors` says, for a
//! terminal: each connector's state and counts, and a bar per table of a
//! snapshot in progress, with its rate, time left and the WAL its slot
//! holds back.

use std::fmt::Write;

use serde_json::Value;

/// Width of a progress bar, in characters.
const BAR: usize = 30;

/// The connectors (the JSON array `/connectors` answers) as text.
pub fn render(connectors: &Value) -> String {
    let mut out = String::new();
    let Some(list) = connectors.as_array() else {
        return "no connectors\n".to_owned();
    };
    for c in list {
        let text = |k: &str| c[k].as_str().unwrap_or("?").to_owned();
        let state = match c["stalled_ms"].as_u64() {
            Some(ms) => format!("{}, stalled for {}", text("state"), duration(ms / 1000)),
            None => text("state"),
        };
        let _ = writeln!(
            out,
            "{} ({}): {}, {} in, {} out{}",
            text("name"),
            text("kind"),
            state,
            count(c["records_in"].as_u64()),
            count(c["records_out"].as_u64()),
            c["last_error"]
                .as_str()
                .map_or_else(String::new, |e| format!(", last error: {e}"))
        );
        let snapshot = &c["snapshot"];
        let Some(tables) = snapshot["tables"].as_array() else {
            continue;
        };
        for t in tables {
            let _ = writeln!(out, "  {}", table_line(t));
            if let Some(chunk) = t["chunk"].as_str() {
                let _ = writeln!(out, "      chunk: {chunk}");
            }
        }
        if let Some(bytes) = snapshot["wal_retained_bytes"].as_u64() {
            let _ = writeln!(
                out,
                "  slot: {} of WAL held back, wal_status {}{}",
                size(bytes),
                snapshot["wal_status"].as_str().unwrap_or("unknown"),
                snapshot["wal_safe_bytes"]
                    .as_i64()
                    .map_or_else(String::new, |s| format!(
                        ", {} more may be written before it is at risk",
                        size(s.max(0) as u64)
                    ))
            );
        }
    }
    out
}

/// What several processes' `/connectors` answered, each under its
/// address; one process's answer alone, as [`render`] draws it. Also
/// whether a process did not answer (it says why in its place).
pub fn render_processes(answers: &[(String, Result<Value, String>)]) -> (String, bool) {
    let mut out = String::new();
    let mut unanswered = false;
    for (base, answer) in answers {
        let alone = answers.len() == 1;
        if !alone {
            let _ = writeln!(out, "{base}");
        }
        match answer {
            Ok(connectors) if alone => out.push_str(&render(connectors)),
            Ok(connectors) => {
                for line in render(connectors).lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
            Err(e) => {
                unanswered = true;
                let _ = writeln!(
                    out,
                    "{}cannot read {base}/connectors: {e}",
                    if alone { "" } else { "  " }
                );
            }
        }
    }
    (out, unanswered)
}

/// One table's bar: `[#####.....]  52% public.big 5,200 of ~10,000 rows`.
fn table_line(t: &Value) -> String {
    let rows = t["rows"].as_u64().unwrap_or(0);
    let done = t["done"].as_bool().unwrap_or(false);
    let estimate = t["estimate"].as_u64();
    let fraction = if done {
        1.0
    } else {
        estimate
            .filter(|e| *e > 0)
            .map_or(0.0, |e| (rows as f64 / e as f64).min(0.99))
    };
    let filled = (fraction * BAR as f64).round() as usize;
    let mut line = format!(
        "[{}{}] {:>3}% {} {} rows",
        "#".repeat(filled),
        ".".repeat(BAR - filled),
        (fraction * 100.0).floor() as u64,
        t["table"].as_str().unwrap_or("?"),
        count(Some(rows)),
    );
    if done {
        line.push_str(", copied");
        return line;
    }
    if let Some(e) = estimate {
        let _ = write!(line, " of ~{}", count(Some(e)));
    }
    if let Some(rate) = t["rows_per_second"].as_f64() {
        let _ = write!(line, ", {}/s", count(Some(rate as u64)));
    }
    if let Some(eta) = t["eta_seconds"].as_u64() {
        let _ = write!(line, ", {} left", duration(eta));
    }
    line
}

/// `1234567` as `1,234,567`.
fn count(n: Option<u64>) -> String {
    let Some(n) = n else {
        return "?".to_owned();
    };
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_snapshot_in_progress_shows_a_bar_per_table() {
        let connectors = json!([{
            "name": "orders-cdc", "kind": "source", "state": "running",
            "records_in": 5_200_000u64, "records_out": 5_200_000u64, "last_error": null,
            "snapshot": {
                "tables": [
                    {"table": "public.customers", "rows": 200, "estimate": 200, "done": true,
                     "chunk": null, "rows_per_second": null, "eta_seconds": null},
                    {"table": "public.orders", "rows": 5_000_000u64, "estimate": 10_000_000u64,
                     "done": false, "chunk": "10240 rows read up to ('5000000'), waiting for the stream to pass 0/16B3F28",
                     "rows_per_second": 48_000.0, "eta_seconds": 105}
                ],
                "wal_retained_bytes": 3_221_225_472u64, "wal_status": "reserved", "wal_safe_bytes": null
            }
        }]);
        assert_eq!(
            render(&connectors),
            "orders-cdc (source): running, 5,200,000 in, 5,200,000 out\n\
             \x20 [##############################] 100% public.customers 200 rows, copied\n\
             \x20 [###############...............]  50% public.orders 5,000,000 rows of ~10,000,000, 48,000/s, 1m45s left\n\
             \x20     chunk: 10240 rows read up to ('5000000'), waiting for the stream to pass 0/16B3F28\n\
             \x20 slot: 3.0 GiB of WAL held back, wal_status reserved\n"
        );
    }

    #[test]
    fn several_processes_each_show_under_their_address_and_one_down_is_said() {
        let active = json!([{"name": "orders-cdc", "kind": "source", "state": "running",
            "records_in": 12, "records_out": 12, "last_error": null}]);
        let standby = json!([{"name": "orders-cdc", "kind": "source", "state": "standby",
            "records_in": 0, "records_out": 0, "last_error": null}]);
        let (text, unanswered) = render_processes(&[
            ("http://a:9464".to_owned(), Ok(active.clone())),
            ("http://b:9464".to_owned(), Ok(standby)),
            (
                "http://c:9464".to_owned(),
                Err("connection refused".to_owned()),
            ),
        ]);
        assert_eq!(
            text,
            "http://a:9464\n  orders-cdc (source): running, 12 in, 12 out\n\
             http://b:9464\n  orders-cdc (source): standby, 0 in, 0 out\n\
             http://c:9464\n  cannot read http://c:9464/connectors: connection refused\n"
        );
        assert!(unanswered);
        let (one, unanswered) = render_processes(&[("http://a:9464".to_owned(), Ok(active))]);
        assert_eq!(one, "orders-cdc (source): running, 12 in, 12 out\n");
        assert!(!unanswered);
    }

    #[test]
    fn a_stalled_connector_says_so() {
        let connectors = json!([{"name": "warehouse", "kind": "sink", "state": "running",
            "records_in": 10, "records_out": 7, "last_error": null, "stalled_ms": 75_000}]);
        assert_eq!(
            render(&connectors),
            "warehouse (sink): running, stalled for 1m15s, 10 in, 7 out\n"
        );
    }

    #[test]
    fn a_sink_shows_its_counts_and_error() {
        let connectors = json!([{
            "name": "warehouse", "kind": "sink", "state": "restarting",
            "records_in": 10, "records_out": 7, "last_error": "connection refused"
        }]);
        assert_eq!(
            render(&connectors),
            "warehouse (sink): restarting, 10 in, 7 out, last error: connection refused\n"
        );
    }
}
