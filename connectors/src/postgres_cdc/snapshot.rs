//! The initial snapshot: every selected table read in chunks through a
//! cursor, inside the REPEATABLE READ transaction that imported the slot's
//! exported snapshot.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use super::catalog::{Table, pg_error, quote_ident};
use super::config::PostgresCdcConfig;
use super::events::{Op, Origin, record, row};
use super::pgoutput::Datum;
use crate::api::{ConnectorError, SourceBatch};

const CURSOR: &str = "sluice_snapshot";

/// Progress through the snapshot.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pending: VecDeque<u32>,
    reading: Option<u32>,
    /// Rows fetched ahead to learn whether the previous chunk was the last.
    peeked: Option<Vec<SimpleQueryRow>>,
    point: u64,
    fetch_size: u64,
    ordinal: u64,
    started_ms: u64,
}

impl Snapshot {
    /// A snapshot of `tables`, consistent with the stream at `point`.
    pub(crate) fn new(tables: &HashMap<u32, Table>, point: u64, fetch_size: u64) -> Self {
        let mut order: Vec<(&u32, &Table)> = tables.iter().collect();
        order.sort_by(|a, b| (&a.1.schema, &a.1.name).cmp(&(&b.1.schema, &b.1.name)));
        Self {
            pending: order.into_iter().map(|(oid, _)| *oid).collect(),
            reading: None,
            peeked: None,
            point,
            fetch_size,
            ordinal: 0,
            started_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    /// The slot position the snapshot is consistent with.
    pub(crate) fn consistent_point(&self) -> u64 {
        self.point
    }

    async fn fetch(
        &self,
        sql: &Client,
        table: &Table,
    ) -> Result<Vec<SimpleQueryRow>, ConnectorError> {
        let messages = sql
            .simple_query(&format!("FETCH {} FROM {CURSOR}", self.fetch_size))
            .await
            .map_err(|e| pg_error(&format!("read {}.{}", table.schema, table.name), e))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .collect())
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
                    oid
                }
            };
            let table = &tables[&oid];
            let rows = match self.peeked.take() {
                Some(rows) => rows,
                None => self.fetch(sql, table).await?,
            };
            let mut table_done = (rows.len() as u64) < self.fetch_size;
            if !table_done && self.pending.is_empty() {
                // The last table: look one chunk ahead, so that the last
                // row of the snapshot can say so.
                let next = self.fetch(sql, table).await?;
                if next.is_empty() {
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
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let n = rows.len();
            let mut records = Vec::with_capacity(n);
            for (i, r) in rows.iter().enumerate() {
                let datums: Vec<Datum> = (0..r.len())
                    .map(|c| match r.get(c) {
                        Some(text) => Datum::Text(text.as_bytes().to_vec()),
                        None => Datum::Null,
                    })
                    .collect();
                let after = row(table, &datums);
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
                    Some(after),
                    origin,
                    now_ms,
                ));
            }
            return Ok(Some(SourceBatch {
                records,
                checkpoint: None,
            }));
        }
    }
}
