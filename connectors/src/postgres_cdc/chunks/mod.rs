//! The snapshot, chunk by chunk, alongside the stream (decision 0017).
//!
//! Each table is read in key order (a key-less table by ranges of pages),
//! one chunk at a time, each chunk in a short REPEATABLE READ transaction
//! of its own that also reads its snapshot (`pg_current_snapshot()`) and
//! the WAL's end. A chunk's rows are held until the stream has passed that
//! point: every transaction the chunk saw has then been streamed. Meanwhile
//! any streamed change to one of the chunk's rows by a transaction the chunk
//! did *not* see takes that row out of the chunk, since the stream carries
//! the newer version; the rest go out as `op: r` events right after the
//! stream batch that passed the point. So the topic never holds a row's
//! older version after its newer one, no transaction stays open longer than
//! one chunk takes, and the stream never stops.
//!
//! Progress (per table: the last key emitted and the upper bound) travels
//! as the batch's `state`, and is kept by the caller once durable.

use std::collections::HashMap;
use std::time::Instant;

use tokio_postgres::{Client, SimpleQueryRow};
use tracing::{info, warn};

use super::catalog::{Table, pg_error, quote_ident, rows, text_bytes};
use super::config::PostgresCdcConfig;
use super::events::{Origin, TXID_PROPERTY};
use super::read_events::ReadEvents;
use crate::api::{ConnectorError, Sequence, SourceRecord, TableCopy};

mod progress;
mod query;

pub(crate) use progress::{Progress, Seen, TableProgress};
use query::*;

/// Rows the first chunk of a table asks for, before their width is known.
const FIRST_ROWS: u64 = 256;
/// Pages a chunk of a key-less table reads, at first.
const FIRST_PAGES: u64 = 16;
/// How long one chunk's read should take at most: past it, the next reads
/// fewer rows, so that no transaction stays open long.
const CHUNK_TIME: std::time::Duration = std::time::Duration::from_millis(500);

/// A chunk read and waiting for the stream to pass its point.
#[derive(Debug)]
struct Open {
    /// Its table's topic, to match streamed records against.
    topic: String,
    /// Its rows, as records; a row the stream changed is taken out.
    records: Vec<Option<SourceRecord>>,
    /// Row identity (the key, or the whole row of a key-less table) to its
    /// place in `records`.
    by_identity: HashMap<String, usize>,
    seen: Seen,
    /// The end of the WAL when it was read: every transaction it saw
    /// committed before this.
    wal: u64,
    /// Where the table stands once the chunk is emitted.
    after: Vec<Option<String>>,
    last_of_table: bool,
    read_at: Instant,
}

/// A chunk emitted: its records, and the progress once they are durable.
#[derive(Debug)]
pub(crate) struct Emitted {
    pub(crate) records: Vec<SourceRecord>,
    pub(crate) progress: Progress,
    /// Every table is now copied.
    pub(crate) complete: bool,
}

/// The snapshot being copied chunk by chunk.
#[derive(Debug)]
pub(crate) struct Chunker {
    progress: Progress,
    open: Option<Open>,
    /// Rows (or pages) the next chunk of the table reads.
    size: u64,
    fetch_size: u64,
    chunk_bytes: u64,
    started_ms: u64,
    /// Whether a heartbeat after each chunk's read may hurry the stream on.
    nudge: bool,
    /// Per table: when this process began copying it, and its rows then.
    clocks: HashMap<String, (Instant, u64)>,
    /// Per table: the rows its statistics estimate.
    estimates: HashMap<String, Option<u64>>,
    /// At most once: leave out rows whose version a transaction after the
    /// table's [`TableProgress::since`] wrote. The stream carries that
    /// version, and an `r` event would deliver it twice. Otherwise such
    /// rows are kept: an update the stream carries may lack an unchanged
    /// TOASTed value that the row has.
    skip_streamed: bool,
}

use crate::time::now_ms;

impl Chunker {
    pub(crate) fn new(progress: Progress, config: &PostgresCdcConfig) -> Self {
        Self {
            progress,
            open: None,
            size: FIRST_ROWS,
            fetch_size: config.fetch_size,
            chunk_bytes: config.batch_bytes(),
            started_ms: now_ms(),
            nudge: true,
            clocks: HashMap::new(),
            estimates: HashMap::new(),
            skip_streamed: false,
        }
    }

    /// Leave out of the chunks the rows whose version the stream carries
    /// (at most once: see [`Chunker::skip_streamed`]).
    pub(crate) fn at_most_once(mut self) -> Self {
        self.skip_streamed = true;
        self
    }

    /// At most once, note what had committed now as `since` of each table
    /// still to copy that has none: called before each chunk's read, when
    /// the slot exists, so that
    /// every transaction after it is on the stream.
    async fn mark_since(&mut self, sql: &Client) -> Result<(), ConnectorError> {
        if !self.skip_streamed
            || self
                .progress
                .tables
                .iter()
                .all(|t| t.done || t.since.is_some())
        {
            return Ok(());
        }
        let answer = sql
            .simple_query("SELECT pg_current_snapshot()::text")
            .await
            .map_err(|e| pg_error("read the current snapshot", e))?;
        let now = rows(answer)
            .first()
            .and_then(|r| r.get(0).map(str::to_owned))
            .filter(|t| Seen::parse(t).is_some())
            .ok_or_else(|| ConnectorError::permanent("cannot read pg_current_snapshot()"))?;
        for t in &mut self.progress.tables {
            if !t.done && t.since.is_none() {
                t.since = Some(now.clone());
            }
        }
        Ok(())
    }

    /// The snapshot's progress as it stands.
    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Note the signal at stream position `at` as acted on; `false` when
    /// it was already.
    pub(crate) fn act_on(&mut self, at: Option<u128>) -> bool {
        self.progress.act_on(at)
    }

    /// Copy `tables` (again): each starts over from its first key, after
    /// the tables still waiting; one being copied now starts over at once.
    pub(crate) fn request(&mut self, tables: &[String]) {
        for name in tables {
            let current = self.progress.tables.iter().position(|t| !t.done);
            if let Some(i) = self.progress.tables.iter().position(|t| &t.table == name) {
                if Some(i) == current {
                    self.open = None;
                }
                self.progress.tables.remove(i);
            }
            self.progress.tables.push(TableProgress {
                table: name.clone(),
                ..TableProgress::default()
            });
            self.clocks.remove(name);
            self.estimates.remove(name);
        }
    }

    /// Stop copying `tables` (every table when `None`): they count as
    /// copied as far as they got. The names stopped.
    pub(crate) fn stop(&mut self, tables: Option<&[String]>) -> Vec<String> {
        let current = self.progress.tables.iter().position(|t| !t.done);
        let mut stopped = Vec::new();
        for (i, t) in self.progress.tables.iter_mut().enumerate() {
            if t.done || tables.is_some_and(|names| !names.contains(&t.table)) {
                continue;
            }
            if Some(i) == current {
                self.open = None;
            }
            t.done = true;
            stopped.push(t.table.clone());
        }
        stopped
    }

    /// Each table's copy as it stands, for the report.
    pub(crate) fn report(&self) -> Vec<TableCopy> {
        let current = self.progress.tables.iter().position(|t| !t.done);
        self.progress
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let estimate = self.estimates.get(&t.table).copied().flatten();
                let rate = self.clocks.get(&t.table).and_then(|(since, rows)| {
                    let secs = since.elapsed().as_secs_f64();
                    (secs >= 1.0).then(|| t.rows.saturating_sub(*rows) as f64 / secs)
                });
                let eta = match (estimate, rate) {
                    (Some(e), Some(r)) if r > 0.0 && !t.done => {
                        Some((e.saturating_sub(t.rows) as f64 / r).ceil() as u64)
                    }
                    _ => None,
                };
                let chunk = (Some(i) == current).then(|| match &self.open {
                    Some(open) => format!(
                        "{} rows read up to {}, waiting for the stream to pass {}",
                        open.records.iter().flatten().count(),
                        key_text(&open.after),
                        super::catalog::format_lsn(open.wal)
                    ),
                    None => format!(
                        "next rows after {}",
                        t.after
                            .as_deref()
                            .map_or_else(|| "the start".to_owned(), key_text)
                    ),
                });
                TableCopy {
                    table: t.table.clone(),
                    rows: t.rows,
                    estimate,
                    done: t.done,
                    chunk,
                    rows_per_second: rate.map(|r| r.round()),
                    eta_seconds: eta,
                }
            })
            .collect()
    }

    /// Whether a chunk waits for the stream.
    pub(crate) fn waiting(&self) -> bool {
        self.open.is_some()
    }

    /// Whether every table is copied.
    pub(crate) fn complete(&self) -> bool {
        self.progress.complete()
    }

    /// Read the next chunk, unless one is waiting or all are copied.
    /// Tables that are empty, or gone, are passed over.
    pub(crate) async fn read(
        &mut self,
        sql: &Client,
        config: &PostgresCdcConfig,
        tables: &HashMap<u32, Table>,
    ) -> Result<(), ConnectorError> {
        while self.open.is_none() {
            let Some(index) = self.progress.tables.iter().position(|t| !t.done) else {
                return Ok(());
            };
            let name = self.progress.tables[index].table.clone();
            let Some(table) = tables
                .values()
                .find(|t| format!("{}.{}", t.schema, t.name) == name)
            else {
                self.progress.tables[index].done = true;
                continue;
            };
            match self.read_table(sql, config, table, index).await {
                Ok(()) => {}
                // The table went away during its copy: the stream carries
                // whatever happened to it.
                Err(e) if e.to_string().contains("does not exist") => {
                    warn!(table = %name, error = %e, "a table went away during its snapshot; its copy ends here");
                    self.progress.tables[index].done = true;
                }
                Err(e) => return Err(e),
            }
        }
        self.nudge(sql).await;
        Ok(())
    }

    /// Write a message into the WAL, so that the stream passes the
    /// waiting chunk's point now rather than at the server's next
    /// keepalive.
    pub(crate) async fn nudge(&mut self, sql: &Client) {
        if self.nudge
            && let Err(e) = sql
                .batch_execute("SELECT pg_logical_emit_message(false, 'sluice.heartbeat', '')")
                .await
        {
            warn!(error = %e, "cannot write a heartbeat to hurry the snapshot's chunks on; they wait for the server's keepalives");
            self.nudge = false;
        }
    }

    /// Estimate a table's rows and find where its snapshot ends, when its
    /// first chunk is next; false when the table turns out empty (done).
    async fn begin_table(
        &mut self,
        sql: &Client,
        table: &Table,
        qualified: &str,
        index: usize,
    ) -> Result<bool, ConnectorError> {
        let name = self.progress.tables[index].table.clone();
        if !self.estimates.contains_key(&name) {
            let estimate = estimated_rows(sql, qualified).await?;
            self.estimates.insert(name.clone(), estimate);
            let rows = self.progress.tables[index].rows;
            self.clocks.insert(name.clone(), (Instant::now(), rows));
        }
        if self.progress.tables[index].upper.is_none() {
            let upper = if table.keyed {
                largest_key(sql, table, qualified).await?
            } else {
                relations(sql, qualified).await?
            };
            let Some(upper) = upper else {
                self.progress.tables[index].done = true;
                return Ok(false);
            };
            info!(table = %self.progress.tables[index].table, "snapshot of the table begins");
            self.progress.tables[index].upper = Some(upper);
            self.size = if table.keyed { FIRST_ROWS } else { FIRST_PAGES };
        }
        Ok(true)
    }

    /// Read one chunk of `table`, the `index`th of the progress.
    async fn read_table(
        &mut self,
        sql: &Client,
        config: &PostgresCdcConfig,
        table: &Table,
        index: usize,
    ) -> Result<(), ConnectorError> {
        let qualified = format!(
            "{}.{}",
            quote_ident(&table.schema),
            quote_ident(&table.name)
        );
        if !self.begin_table(sql, table, &qualified, index).await? {
            return Ok(());
        }
        self.mark_since(sql).await?;
        let progress = self.progress.tables[index].clone();
        let since = progress
            .since
            .as_deref()
            .and_then(Seen::parse)
            .filter(|_| self.skip_streamed);
        // With `since`, each row's writer comes last: which transaction
        // wrote its version.
        let columns = if since.is_some() {
            "*, xmin::text"
        } else {
            "*"
        };
        let plan = if table.keyed {
            keyed_chunk(
                table,
                &qualified,
                &progress,
                self.size.min(self.fetch_size).max(1),
                columns,
            )
        } else {
            match keyless_chunk(&progress, self.size.max(1), columns) {
                Some(plan) => plan,
                None => {
                    self.progress.tables[index].done = true;
                    return Ok(());
                }
            }
        };
        let started = Instant::now();
        let (seen, wal, found) = read_chunk(sql, &plan.select, &qualified).await?;
        let took = started.elapsed();
        let bytes = text_bytes(&found);
        let (after, last_of_table) = match plan.next {
            // Keyed: after the last row read; the table ends when a chunk
            // comes back short.
            None => (
                found
                    .last()
                    .map(|r| {
                        table
                            .key
                            .iter()
                            .map(|&i| r.get(i).map(str::to_owned))
                            .collect()
                    })
                    .or_else(|| progress.after.clone())
                    .unwrap_or_default(),
                (found.len() as u64) < plan.asked,
            ),
            Some(next) => next,
        };
        self.resize(found.len() as u64, bytes, took, table.keyed);
        let built = Instant::now();
        let (records, by_identity) = self.records(config, table, &found, wal, since.as_ref());
        tracing::debug!(
            rows = found.len(),
            read_ms = took.as_millis() as u64,
            build_ms = built.elapsed().as_millis() as u64,
            "snapshot chunk read"
        );
        self.open = Some(Open {
            topic: table.topic(&config.topic_prefix),
            records,
            by_identity,
            seen,
            wal,
            after,
            last_of_table,
            read_at: started,
        });
        Ok(())
    }

    /// A chunk's rows as `op: r` records, and where each row's identity is.
    fn records(
        &self,
        config: &PostgresCdcConfig,
        table: &Table,
        found: &[SimpleQueryRow],
        wal: u64,
        since: Option<&Seen>,
    ) -> (Vec<Option<SourceRecord>>, HashMap<String, usize>) {
        let mut records = Vec::with_capacity(found.len());
        let mut by_identity = HashMap::with_capacity(found.len());
        let origin = Origin {
            commit_lsn: wal,
            lsn: wal,
            xid: 0,
            commit_ms: self.started_ms,
            ordinal: 0,
            snapshot: Some(false),
        };
        let mut events = ReadEvents::new(
            &config.topic_prefix,
            &config.dbname,
            table,
            origin,
            now_ms(),
        );
        let mut values: Vec<Option<&str>> = Vec::with_capacity(table.columns.len() + 1);
        for r in found {
            values.clear();
            values.extend((0..r.len()).map(|c| r.get(c)));
            if let Some(since) = since {
                // The writer's xid is the last column; 0, 1 and 2 (invalid,
                // bootstrap, frozen) wrote before any snapshot.
                let writer = values.pop().flatten().and_then(|x| x.parse::<u32>().ok());
                if writer.is_some_and(|x| x > 2 && !since.saw(x)) {
                    continue;
                }
            }
            let made = events.record(&values);
            if let Some(key) = &made.key {
                by_identity.insert(key.clone(), records.len());
            }
            records.push(Some(made));
        }
        (records, by_identity)
    }

    /// The next chunk's size from the last one's rows, bytes and time.
    fn resize(&mut self, rows: u64, bytes: u64, took: std::time::Duration, keyed: bool) {
        let mut size = self.size.max(1);
        if keyed && rows > 0 && bytes > 0 {
            let per_row = bytes.div_ceil(rows).max(1);
            size = (self.chunk_bytes / per_row).clamp(1, self.fetch_size.max(1));
        } else if !keyed && bytes > self.chunk_bytes && size > 1 {
            size /= 2;
        } else if !keyed && bytes < self.chunk_bytes / 4 {
            size = size.saturating_mul(2).min(1 << 20);
        }
        if took > CHUNK_TIME {
            size = (size / 2).max(1);
        }
        self.size = size;
    }

    /// Take out of the waiting chunk the rows that `records` (a stream
    /// batch) changed in transactions the chunk did not see.
    pub(crate) fn observe(&mut self, records: &[SourceRecord]) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        for record in records {
            if record.topic.as_deref() != Some(open.topic.as_str()) {
                continue;
            }
            let xid = record
                .properties
                .iter()
                .find(|(k, _)| k == TXID_PROPERTY)
                .and_then(|(_, v)| v.parse::<u32>().ok());
            if xid.is_some_and(|x| open.seen.saw(x)) {
                continue;
            }
            for identity in identities(record) {
                if let Some(i) = open.by_identity.remove(&identity) {
                    open.records[i] = None;
                }
            }
        }
    }

    /// The waiting chunk, once the stream is at or past `position`: its
    /// remaining rows numbered on from `last` (the last sequence handed
    /// out), and the progress they reach.
    pub(crate) fn emit(&mut self, position: u64, last: Sequence) -> Option<Emitted> {
        if self.open.as_ref().is_none_or(|o| position < o.wal) {
            return None;
        }
        let open = self.open.take()?;
        let index = self.progress.tables.iter().position(|t| !t.done)?;
        let entry = &mut self.progress.tables[index];
        let mut records: Vec<SourceRecord> = open.records.into_iter().flatten().collect();
        entry.rows += records.len() as u64;
        entry.after = Some(open.after);
        if open.last_of_table {
            entry.done = true;
            info!(table = %entry.table, rows = entry.rows, "snapshot of the table is emitted");
        }
        let complete = self.progress.complete();
        let n = records.len();
        for (i, record) in records.iter_mut().enumerate() {
            record.sequence = Some(Sequence(last.0 + 1 + i as u128));
            if complete && i + 1 == n {
                mark_last(record);
            }
        }
        tracing::debug!(
            rows = n,
            waited_ms = open.read_at.elapsed().as_millis() as u64,
            "snapshot chunk emitted"
        );
        Some(Emitted {
            records,
            progress: self.progress.clone(),
            complete,
        })
    }
}

/// The identities a streamed record touches: its key, and the keys of its
/// row before and after (a key-less table's key is its whole row, which an
/// update changes).
fn identities(record: &SourceRecord) -> Vec<String> {
    let mut out: Vec<String> = record.key.iter().cloned().collect();
    if let Ok(envelope) =
        serde_json::from_slice::<serde_json::Value>(record.value.as_deref().unwrap_or_default())
    {
        for side in ["before", "after"] {
            if let Some(row) = envelope.get(side).filter(|r| r.is_object()) {
                out.push(row.to_string());
            }
        }
    }
    out
}

/// Mark the snapshot's last record so (`source.snapshot: "last"`).
fn mark_last(record: &mut SourceRecord) {
    let Ok(mut envelope) =
        serde_json::from_slice::<serde_json::Value>(record.value.as_deref().unwrap_or_default())
    else {
        return;
    };
    envelope["source"]["snapshot"] = serde_json::Value::String("last".into());
    record.value = Some(envelope.to_string().into_bytes());
}

#[cfg(test)]
mod tests;
