//! ATMOST_ONCE: a batch is acknowledged on receipt and written once.

use std::time::Instant;

use sluice_connectors::{Sink, SinkRecord, Written};
use tracing::warn;

use super::{checked, delivered, total_bytes};
use crate::config::SinkDef;
use crate::engine::status::ConnectorStatus;

/// Write a batch that is acknowledged already, once: what fails is
/// dropped and counted.
pub(super) async fn at_most_once<S: Sink>(
    def: &SinkDef,
    sink: &mut S,
    records: &[SinkRecord],
    bytes: u64,
    status: &ConnectorStatus,
) {
    let started = Instant::now();
    match sink
        .write(records)
        .await
        .and_then(|w| checked(w, records.len()))
    {
        Ok(Written::All) => delivered(status, records, bytes, started),
        // The sink names what it refused; the rest are durable.
        Ok(Written::AllBut(refused)) => {
            let lost = refused.len() as u64;
            let lost_bytes: u64 = refused
                .iter()
                .map(|(i, _)| total_bytes(std::slice::from_ref(&records[*i])))
                .sum();
            status.count_out(records.len() as u64 - lost, bytes - lost_bytes);
            status.count_dropped(lost);
            if let Some((_, e)) = refused.first() {
                status.set_error(&e.to_string());
                warn!(connector = %def.name, records = lost, error = %e, "the target refused records; at most once, they are dropped");
            }
        }
        // A record the target refuses failed the batch's transaction,
        // which committed nothing: writing the records one at a time
        // cannot apply any twice, and loses only the refused ones.
        Err(e) if e.kind() == sluice_connectors::ErrorKind::Permanent && records.len() > 1 => {
            let mut lost = 0u64;
            for record in records {
                let one = std::slice::from_ref(record);
                let started = Instant::now();
                match sink.write(one).await {
                    Ok(Written::All) => {
                        let bytes = record.value.as_ref().map_or(0, Vec::len) as u64;
                        delivered(status, one, bytes, started);
                    }
                    Ok(Written::AllBut(refused)) => {
                        lost += 1;
                        if let Some((_, e)) = refused.first() {
                            status.set_error(&e.to_string());
                        }
                    }
                    Err(e) => {
                        lost += 1;
                        status.set_error(&e.to_string());
                    }
                }
            }
            status.count_dropped(lost);
            warn!(connector = %def.name, records = lost, error = %e, "the target refused records; at most once, they are dropped");
        }
        Err(e) => {
            // At most once: the batch is acknowledged and is not tried
            // again; a failure that is not the records' own (a lost
            // connection may have lost a commit's answer) could apply it
            // twice.
            status.count_dropped(records.len() as u64);
            status.set_error(&e.to_string());
            warn!(connector = %def.name, records = records.len(), error = %e, "write failed; at most once, the batch is dropped");
        }
    }
}
