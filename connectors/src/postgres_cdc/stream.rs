//! The replication stream: pgoutput messages in commit order, turned into
//! change events and handed over in batches that end at transaction
//! boundaries.

use std::collections::HashMap;
use std::sync::Arc;

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use tokio_postgres::Client;
use tracing::debug;

use super::catalog::{self, Table, pg_error};
use super::config::PostgresCdcConfig;
use super::events::{Op, Origin, key_changed, pg_time_to_unix_ms, record};
use super::pgoutput::{self, Datum, Message, OldKind, OldTuple, Relation};
use super::types::Types;
use crate::api::{ConnectorError, Position, SourceBatch, SourceRecord};

/// The prefix of the heartbeat messages the source emits.
const HEARTBEAT_PREFIX: &str = "sluice.heartbeat";

#[derive(Debug, Clone, Copy)]
struct Txn {
    commit_lsn: u64,
    xid: u32,
    commit_ms: u64,
    ordinal: u64,
}

/// What the stream has seen so far.
pub(crate) struct StreamState {
    /// Relation OID to its table; `None` for a table the config does not select.
    /// Shared with the changes being made: a change holds its table while
    /// the stream state is borrowed mutably to record it.
    relations: HashMap<u32, Option<Arc<Table>>>,
    txn: Option<Txn>,
    pending: Vec<SourceRecord>,
    /// Payload bytes of `pending`.
    pending_bytes: u64,
    /// The last position handed out, so that keepalives only move it forward.
    last_checkpoint: u64,
    heartbeat: Option<tokio::time::Interval>,
    /// ATMOST_ONCE: each part of a large transaction carries a position past
    /// the transaction, so that a crash in the middle loses its rest rather
    /// than publishing its first part again.
    pub(crate) at_most_once: bool,
    /// Return an empty batch when a durable position at or past this one
    /// comes while the stream waits: the source has progress to record
    /// with it.
    pub(crate) wake_at: Option<u64>,
}

impl std::fmt::Debug for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamState")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

async fn tick(heartbeat: Option<&mut tokio::time::Interval>) {
    match heartbeat {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

use crate::time::now_ms;

impl StreamState {
    pub(crate) fn new(config: &PostgresCdcConfig) -> Self {
        let heartbeat = config.heartbeat.map(|every| {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        Self {
            relations: HashMap::new(),
            txn: None,
            pending: Vec::new(),
            pending_bytes: 0,
            last_checkpoint: 0,
            heartbeat,
            at_most_once: false,
            wake_at: None,
        }
    }

    fn checkpoint(&mut self, position: u64) -> SourceBatch {
        self.last_checkpoint = self.last_checkpoint.max(position);
        self.pending_bytes = 0;
        SourceBatch {
            records: std::mem::take(&mut self.pending),
            checkpoint: Some(Position(position)),
            state: None,
        }
    }

    /// The next batch: a whole transaction, a part of a large one, or a bare
    /// position while the database is idle.
    pub(crate) async fn next_batch(
        &mut self,
        repl: &mut ReplicationClient,
        acks: &mut tokio::sync::watch::Receiver<u64>,
        confirmed: &mut u64,
        sql: &Client,
        config: &PostgresCdcConfig,
        types: &mut Types,
    ) -> Result<Option<SourceBatch>, ConnectorError> {
        loop {
            if let Some(batch) = self.full_batch(config) {
                return Ok(Some(batch));
            }
            let event = tokio::select! {
                e = repl.recv() => e,
                changed = acks.changed() => {
                    // A durable position while the stream waits: confirm it
                    // now rather than after the next event.
                    let durable = *acks.borrow_and_update();
                    if changed.is_ok() && durable > *confirmed {
                        *confirmed = durable;
                        repl.update_applied_lsn(pgwire_replication::Lsn::from_u64(durable));
                    }
                    if changed.is_err() {
                        return Err(ConnectorError::retryable("the runtime stopped taking positions"));
                    }
                    if self.wake_at.is_some_and(|at| durable >= at) {
                        return Ok(Some(SourceBatch {
                            records: Vec::new(),
                            checkpoint: None,
                            state: None,
                        }));
                    }
                    continue;
                }
                () = tick(self.heartbeat.as_mut()) => {
                    sql.batch_execute(&format!("SELECT pg_logical_emit_message(false, '{HEARTBEAT_PREFIX}', '')"))
                        .await
                        .map_err(|e| pg_error("emit a heartbeat", e))?;
                    continue;
                }
            };
            let event = event.map_err(|e| {
                ConnectorError::retryable(format!("replication stream: {e}")).with_source(e)
            })?;
            let Some(event) = event else {
                return Err(ConnectorError::retryable("the replication stream ended"));
            };
            if matches!(event, ReplicationEvent::StoppedAt { .. }) {
                return Ok(None);
            }
            if let Some(batch) = self.on_event(event, sql, config, types).await? {
                return Ok(Some(batch));
            }
        }
    }

    /// The pending records as a batch when they reach `max.batch.size` or
    /// their share of the queue's bytes.
    fn full_batch(&mut self, config: &PostgresCdcConfig) -> Option<SourceBatch> {
        if self.pending.len() < config.max_batch && self.pending_bytes < config.batch_bytes() {
            return None;
        }
        // A large transaction goes out in parts; its position comes
        // with its commit, except at most once (the server skips a
        // transaction whose commit record lies before the slot's
        // confirmed position).
        let past = self
            .txn
            .as_ref()
            .filter(|_| self.at_most_once)
            .map(|t| t.commit_lsn + 1);
        if let Some(at) = past
            && at > self.last_checkpoint
        {
            return Some(self.checkpoint(at));
        }
        self.pending_bytes = 0;
        Some(SourceBatch {
            records: std::mem::take(&mut self.pending),
            checkpoint: None,
            state: None,
        })
    }

    /// Take one event of the stream; a batch when it ends one.
    async fn on_event(
        &mut self,
        event: ReplicationEvent,
        sql: &Client,
        config: &PostgresCdcConfig,
        types: &mut Types,
    ) -> Result<Option<SourceBatch>, ConnectorError> {
        match event {
            ReplicationEvent::Begin {
                final_lsn,
                xid,
                commit_time_micros,
            } => {
                self.txn = Some(Txn {
                    commit_lsn: final_lsn.as_u64(),
                    xid,
                    commit_ms: pg_time_to_unix_ms(commit_time_micros),
                    ordinal: 0,
                });
            }
            ReplicationEvent::XLogData {
                wal_start, data, ..
            } => {
                let message = pgoutput::decode(&data)
                    .map_err(|e| ConnectorError::permanent(e.to_string()))?;
                self.apply(message, wal_start.as_u64(), sql, config, types)
                    .await?;
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                self.txn = None;
                return Ok(Some(self.checkpoint(end_lsn.as_u64())));
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                // Outside a transaction, everything up to the server's
                // position has been seen: confirming it lets an idle
                // slot release WAL.
                let at = wal_end.as_u64();
                if self.txn.is_none() && self.pending.is_empty() && at > self.last_checkpoint {
                    return Ok(Some(self.checkpoint(at)));
                }
            }
            ReplicationEvent::Message {
                transactional,
                lsn,
                prefix,
                ..
            } => {
                debug!(prefix = %prefix, "logical message");
                let at = lsn.as_u64();
                if !transactional
                    && self.txn.is_none()
                    && self.pending.is_empty()
                    && at > self.last_checkpoint
                {
                    return Ok(Some(self.checkpoint(at)));
                }
            }
            ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(None)
    }

    fn table(&self, relation: u32) -> Result<Option<Arc<Table>>, ConnectorError> {
        match self.relations.get(&relation) {
            Some(t) => Ok(t.clone()),
            None => Err(ConnectorError::permanent(format!(
                "a change for relation {relation} arrived before its Relation message"
            ))),
        }
    }

    fn push(
        &mut self,
        config: &PostgresCdcConfig,
        table: &Table,
        op: Op,
        before: Option<&[Datum]>,
        after: Option<&[Datum]>,
        lsn: u64,
    ) -> Result<(), ConnectorError> {
        let Some(txn) = self.txn.as_mut() else {
            return Err(ConnectorError::permanent(
                "a change arrived outside a transaction",
            ));
        };
        let origin = Origin {
            commit_lsn: txn.commit_lsn,
            lsn,
            xid: txn.xid,
            commit_ms: txn.commit_ms,
            ordinal: txn.ordinal,
            snapshot: None,
        };
        txn.ordinal += 1;
        let made = record(
            &config.topic_prefix,
            &config.dbname,
            table,
            op,
            before,
            after,
            origin,
            now_ms(),
        );
        self.pending_bytes += made.value_len() as u64;
        self.pending.push(made);
        Ok(())
    }

    async fn apply(
        &mut self,
        message: Message,
        lsn: u64,
        sql: &Client,
        config: &PostgresCdcConfig,
        types: &mut Types,
    ) -> Result<(), ConnectorError> {
        match message {
            Message::Relation(r) => {
                let table = relation_table(&r, sql, config, types).await?;
                self.relations.insert(r.id, table.map(Arc::new));
            }
            Message::Type { .. } => *types = catalog::load_types(sql).await?,
            Message::Insert { relation, new } => {
                if let Some(table) = self.table(relation)? {
                    self.push(config, &table, Op::Create, None, Some(&new), lsn)?;
                }
            }
            Message::Update { relation, old, new } => {
                if let Some(table) = self.table(relation)? {
                    self.update(config, &table, old, new, lsn)?;
                }
            }
            Message::Delete { relation, old } => {
                if let Some(table) = self.table(relation)? {
                    self.push(config, &table, Op::Delete, Some(&old.tuple), None, lsn)?;
                }
            }
            Message::Truncate { relations, .. } => {
                for relation in relations {
                    if let Some(table) = self.table(relation)? {
                        self.push(config, &table, Op::Truncate, None, None, lsn)?;
                    }
                }
            }
            Message::Begin { .. }
            | Message::Commit { .. }
            | Message::Origin
            | Message::Logical { .. } => {}
        }
        Ok(())
    }

    /// An update: with the old row when the replica identity sends it; a
    /// changed key is a delete of the old key and a create of the new.
    fn update(
        &mut self,
        config: &PostgresCdcConfig,
        table: &Table,
        old: Option<OldTuple>,
        mut new: Vec<Datum>,
        lsn: u64,
    ) -> Result<(), ConnectorError> {
        // Under REPLICA IDENTITY FULL the old row is complete:
        // an unchanged TOAST value that the new row leaves out
        // is known, and is carried over.
        if let Some(o) = old.as_ref().filter(|o| o.kind == OldKind::Full) {
            for (datum, before) in new.iter_mut().zip(&o.tuple) {
                if *datum == Datum::Unchanged && matches!(before, Datum::Text(_) | Datum::Binary(_))
                {
                    *datum = before.clone();
                }
            }
        }
        let after = Some(new.as_slice());
        match old {
            // The key changed: Postgres sent the old key. As
            // Debezium does, that is a delete of the old key and
            // a create of the new one.
            Some(o) if o.kind == OldKind::Key => {
                self.push(config, table, Op::Delete, Some(&o.tuple), None, lsn)?;
                self.push(config, table, Op::Create, None, after, lsn)?;
            }
            Some(o) => {
                let before = Some(o.tuple.as_slice());
                if key_changed(table, &o.tuple, &new) {
                    self.push(config, table, Op::Delete, before, None, lsn)?;
                    self.push(config, table, Op::Create, None, after, lsn)?;
                } else {
                    self.push(config, table, Op::Update, before, after, lsn)?;
                }
            }
            None => self.push(config, table, Op::Update, None, after, lsn)?,
        }
        Ok(())
    }
}

/// The table a Relation message describes, when the source streams it.
/// Sent before a table's first change and again after it changes: a column
/// added mid-stream shows up here. A partition's changes belong to its root
/// table, under the root's name and key, whether or not the publication
/// publishes them via the root.
async fn relation_table(
    r: &Relation,
    sql: &Client,
    config: &PostgresCdcConfig,
    types: &mut Types,
) -> Result<Option<Table>, ConnectorError> {
    let (root, schema, name) = catalog::root_of(sql, r.id)
        .await?
        .unwrap_or_else(|| (r.id, r.namespace.clone(), r.name.clone()));
    let selected = catalog::streamed(config, &format!("{schema}.{name}"));
    if selected {
        let described = catalog::describe(sql, root).await?;
        let columns: Vec<(String, u32)> = r
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.type_oid))
            .collect();
        let names = (schema.as_str(), name.as_str());
        Ok(Some(catalog::table(
            &config.topic_prefix,
            names,
            &columns,
            &described,
            types,
        )))
    } else {
        Ok(None)
    }
}
