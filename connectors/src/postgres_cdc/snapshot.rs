//! The initial snapshot: every selected table read in chunks through a
//! cursor, inside the REPEATABLE READ transaction that imported the slot's
//! exported snapshot.

use std::collections::{HashMap, VecDeque};

use tokio_postgres::{Client, SimpleQueryRow};

use super::catalog::{Table, pg_error, quote_ident, rows, text_bytes};
use super::config::PostgresCdcConfig;
use super::events::{Op, Origin, record};
use super::pgoutput::Datum;
use crate::api::{ConnectorError, SourceBatch};

const CURSOR: &str = "sluice_snapshot";
/// Rows the first FETCH asks for, before the width of a row is known.
const FIRST_FETCH: u64 = 16;

/// Rows per FETCH so that a chunk of rows as wide as those just read stays
/// within `chunk_bytes`: at least one, at most `fetch_size`.
fn rows_per_fetch(read_rows: usize, read_bytes: u64, chunk_bytes: u64, fetch_size: u64) -> u64 {
    if read_rows == 0 || read_bytes == 0 {
        return fetch_size;
    }
    let per_row = read_bytes.div_ceil(read_rows as u64).max(1);
    (chunk_bytes / per_row).clamp(1, fetch_size)
}

/// Progress through the snapshot.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pending: VecDeque<u32>,
    reading: Option<u32>,
    /// Rows fetched ahead to learn whether the previous chunk was the last,
    /// and whether they were the table's last.
    peeked: Option<(Vec<SimpleQueryRow>, bool)>,
    point: u64,
    /// Rows per FETCH at most (`snapshot.fetch.size`).
    fetch_size: u64,
    /// Bytes a chunk should hold at most (see [`PostgresCdcConfig::batch_bytes`]).
    chunk_bytes: u64,
    /// Rows the next FETCH asks for: sized from the rows read so far, so
    /// that a chunk of wide rows stays within `chunk_bytes`.
    next_fetch: u64,
    ordinal: u64,
    started_ms: u64,
}

impl Snapshot {
    /// A snapshot of `tables`, consistent with the stream at `point`.
    pub(crate) fn new(
        tables: &HashMap<u32, Table>,
        point: u64,
        config: &PostgresCdcConfig,
    ) -> Self {
        let mut order: Vec<(&u32, &Table)> = tables.iter().collect();
        order.sort_by(|a, b| (&a.1.schema, &a.1.name).cmp(&(&b.1.schema, &b.1.name)));
        Self {
            pending: order.into_iter().map(|(oid, _)| *oid).collect(),
            reading: None,
            peeked: None,
            point,
            fetch_size: config.fetch_size,
            chunk_bytes: config.batch_bytes(),
            next_fetch: config.fetch_size.min(FIRST_FETCH),
            ordinal: 0,
            started_ms: crate::time::now_ms(),
        }
    }

    /// The slot position the snapshot is consistent with.
    pub(crate) fn consistent_point(&self) -> u64 {
        self.point
    }

    /// Read the next rows of the open cursor; whether that was all of them.
    async fn fetch(
        &mut self,
        sql: &Client,
        table: &Table,
    ) -> Result<(Vec<SimpleQueryRow>, bool), ConnectorError> {
        let asked = self.next_fetch;
        let messages = sql
            .simple_query(&format!("FETCH {asked} FROM {CURSOR}"))
            .await
            .map_err(|e| pg_error(&format!("read {}.{}", table.schema, table.name), e))?;
        let rows = rows(messages);
        let bytes = text_bytes(&rows);
        self.next_fetch = rows_per_fetch(rows.len(), bytes, self.chunk_bytes, self.fetch_size);
        let last = (rows.len() as u64) < asked;
        Ok((rows, last))
    }

    /// The next chunk of rows as `op: r` records; `None` when every table is read.
    pub(crate) async fn next_batch(
        &mut self,
        sql: &Client,
        config: &PostgresCdcConfig,
        tables: &HashMap<u32, Table>,
    ) -> Result<Option<SourceBatch>, ConnectorError> {
        loop {
            let oid = match self.reading {
                Some(oid) => oid,
                None => {
                    let Some(oid) = self.pending.pop_front() else {
                        return Ok(None);
                    };
                    let t = &tables[&oid];
                    let declare = format!(
                        "DECLARE {CURSOR} NO SCROLL CURSOR FOR SELECT * FROM {}.{}",
                        quote_ident(&t.schema),
                        quote_ident(&t.name)
                    );
                    sql.batch_execute(&declare)
                        .await
                        .map_err(|e| pg_error("open the snapshot cursor", e))?;
                    self.reading = Some(oid);
                    // Another table, rows of another width.
                    self.next_fetch = self.fetch_size.min(FIRST_FETCH);
                    oid
                }
            };
            let table = &tables[&oid];
            let (rows, mut table_done) = match self.peeked.take() {
                Some(peeked) => peeked,
                None => self.fetch(sql, table).await?,
            };
            if !table_done && self.pending.is_empty() {
                // The last table: look one chunk ahead, so that the last
                // row of the snapshot can say so.
                let next = self.fetch(sql, table).await?;
                if next.0.is_empty() {
                    table_done = true;
                } else {
                    self.peeked = Some(next);
                }
            }
            if table_done {
                sql.batch_execute(&format!("CLOSE {CURSOR}"))
                    .await
                    .map_err(|e| pg_error("close the snapshot cursor", e))?;
                self.reading = None;
            }
            if rows.is_empty() {
                continue;
            }
            let all_done = table_done && self.pending.is_empty();
            let now_ms = crate::time::now_ms();
            let n = rows.len();
            let mut records = Vec::with_capacity(n);
            for (i, r) in rows.iter().enumerate() {
                let datums: Vec<Datum> = (0..r.len())
                    .map(|c| match r.get(c) {
                        Some(text) => Datum::Text(text.as_bytes().to_vec()),
                        None => Datum::Null,
                    })
                    .collect();
                // Snapshot rows sort before every streamed change: their
                // sequence is below the consistent point.
                let origin = Origin {
                    commit_lsn: self.point.saturating_sub(1),
                    lsn: self.point,
                    xid: 0,
                    commit_ms: self.started_ms,
                    ordinal: self.ordinal,
                    snapshot: Some(all_done && i + 1 == n),
                };
                self.ordinal += 1;
                records.push(record(
                    &config.topic_prefix,
                    &config.dbname,
                    table,
                    Op::Read,
                    None,
                    Some(&datums),
                    origin,
                    now_ms,
                ));
            }
            return Ok(Some(SourceBatch {
                records,
                checkpoint: None,
                state: None,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rows_per_fetch;

    #[test]
    fn a_fetch_of_wide_rows_stays_within_the_chunk_bytes() {
        // 16 rows of 1 MiB, 4 MiB a chunk: 4 rows next.
        assert_eq!(rows_per_fetch(16, 16 << 20, 4 << 20, 10_240), 4);
        // Rows wider than a chunk: one at a time.
        assert_eq!(rows_per_fetch(2, 20 << 20, 4 << 20, 10_240), 1);
        // Narrow rows: up to snapshot.fetch.size.
        assert_eq!(rows_per_fetch(16, 16 * 100, 4 << 20, 10_240), 10_240);
        assert_eq!(rows_per_fetch(0, 0, 4 << 20, 500), 500);
    }
}
