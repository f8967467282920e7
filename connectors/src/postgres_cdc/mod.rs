//! `postgres-cdc`: change data capture from Postgres with logical
//! replication (pgoutput), a consistent initial snapshot, and Debezium
//! change events, one topic per table.
//!
//! Start-up, in order:
//! 1. Read the catalog: the selected tables, their keys, the types.
//! 2. Make sure the publication exists.
//! 3. Decide whether to snapshot (`snapshot.mode`, and whether the last
//!    snapshot with this slot finished: the source records that in a line of
//!    the publication's comment once the snapshot is durable).
//! 4. On the replication connection, create the slot exporting a snapshot;
//!    import it in a REPEATABLE READ transaction on the SQL connection; then
//!    start replication from the slot. The snapshot and the stream meet at
//!    the slot's consistent point: no gap, no overlap.
//! 5. Read the tables in that transaction (`op: r`), in chunks, then stream.
//!
//! The slot is confirmed only up to positions the runtime reports durable
//! through [`Commit::commit`], and never moves backwards.

mod catalog;
mod chunks;
mod config;
mod connect;
mod events;
mod open;
pub(crate) mod pgoutput;
mod preflight;
mod read_events;
mod report;
mod run;
mod schema;
mod signals;
mod slot;
mod snapshot;
mod stream;
mod tls;
pub(crate) mod transforms;
mod types;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

pub use config::{PostgresCdcConfig, PublicationMode, SnapshotMode};
use config::{READ_AHEAD, REPLICATION_READ_AHEAD};
pub use events::{LSN_PROPERTY, TXID_PROPERTY};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig};
pub use tls::{SslMode, TlsSettings};
use tokio_postgres::Client;
use tracing::{error, info, warn};

use self::catalog::{Table, pg_error, quote_ident};
use self::chunks::{Chunker, Progress};
use self::snapshot::Snapshot;
use self::stream::StreamState;
use self::types::{SESSION_OPTIONS, Types};
use crate::api::{
    Commit, ConnectorError, Finding, Guarantee, Position, Sequence, Source, SourceBatch,
    SourceConnector, SourceContext,
};
use crate::config::{ConfigMap, ConfigReport};

/// The Postgres CDC source: a handle on the [`Worker`] task that reads the
/// snapshot and the stream, so that the stream is read ahead of the
/// runtime and confirmed while the runtime publishes. `read` takes what the
/// worker has made; its [`Confirmer`] records the durable position, which
/// the worker confirms to the server.
pub struct PostgresCdc {
    batches: tokio::sync::mpsc::Receiver<Result<Option<SourceBatch>, ConnectorError>>,
    durable: Arc<tokio::sync::watch::Sender<u64>>,
    worker: tokio::task::JoinHandle<()>,
    /// ATMOST_ONCE: the position last reported to the server, which
    /// `commit` waits for.
    reported: Option<tokio::sync::watch::Receiver<u64>>,
}

impl std::fmt::Debug for PostgresCdc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCdc").finish_non_exhaustive()
    }
}

/// Owns the connections and does the reading, in its own task.
struct Worker {
    config: PostgresCdcConfig,
    sql: Client,
    sql_task: tokio::task::JoinHandle<()>,
    types: Types,
    /// The selected tables by OID, from the catalog.
    tables: HashMap<u32, Table>,
    repl: Option<ReplicationClient>,
    /// `snapshot.mode: initial_only`: the tables read in one consistent
    /// transaction, without a slot.
    snapshot: Option<Snapshot>,
    /// The snapshot's progress, when one was taken or goes on.
    progress: Option<Progress>,
    /// The snapshot copied chunk by chunk alongside the stream.
    chunks: Option<Chunker>,
    /// Shows the snapshot's progress.
    reporter: report::Reporter,
    /// The signal table's topic: its records are requests, not published.
    signal_topic: Option<String>,
    /// The snapshot's progress changed (by a signal) and is not yet kept
    /// with a position.
    progress_changed: bool,
    /// The furthest position handed over. A chunk goes out only with a
    /// batch at a later one: the runtime may have confirmed a batch at the
    /// same position as durable already, and the progress the chunk
    /// reaches would count as durable with it before its rows are.
    handed: u64,
    /// Progress reached at each position handed over, until durable.
    reached: VecDeque<(u64, String)>,
    /// The position of the last chunk handed over, until it is durable:
    /// the next chunk waits for it, so that the stream's changes queue
    /// behind one chunk at most on their way to the broker.
    chunk_unacked: Option<u64>,
    /// The last sequence handed over: a chunk's rows are numbered on from
    /// it, between the stream's transactions.
    last_sequence: Sequence,
    stream: StreamState,
    /// The highest position confirmed to the server.
    confirmed: u64,
    /// Record the snapshot as complete once this position is durable.
    snapshot_done_at: Option<u64>,
    /// ATMOST_ONCE: a snapshot counts as complete from its start.
    at_most_once: bool,
    /// ATMOST_ONCE: the position the replication client last reported to
    /// the server, for the reader side to wait on.
    reported: Option<tokio::sync::watch::Receiver<u64>>,
    finished: bool,
    /// Debezium's transforms, applied to each batch as it leaves.
    transformer: transforms::Transformer,
}

/// ATMOST_ONCE: how soon a committed position is reported to the server.
const AT_MOST_ONCE_STATUS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);
/// ATMOST_ONCE: how long `commit` waits for the report.
const AT_MOST_ONCE_REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl SourceConnector for PostgresCdc {
    const CLASS_NAMES: &'static [&'static str] = &[
        "postgres-cdc",
        "org.apache.pulsar.io.debezium.postgres.DebeziumPostgresSource",
    ];
    const ARCHIVES: &'static [&'static str] = &["debezium-postgres"];
    const NAMES_ITS_TOPICS: bool = true;
    const KEYS: &'static [crate::config::Key] = config::KEYS;
    type Config = PostgresCdcConfig;

    fn configure(configs: &ConfigMap) -> (Option<PostgresCdcConfig>, ConfigReport) {
        PostgresCdcConfig::from_configs(configs)
    }

    /// The database and the slot. Not the host: a database that moves to
    /// another host (a failover, a new address) is the same source.
    fn origin(config: &PostgresCdcConfig) -> Option<String> {
        Some(format!(
            "postgres database {}, slot {}",
            config.dbname, config.slot
        ))
    }

    /// Connect, prepare the publication and slot, position the source at its
    /// snapshot or its stream, and start reading. Under ATMOST_ONCE a
    /// snapshot is recorded as complete when it starts, so that one
    /// interrupted by a crash is not taken again: the rows it had not
    /// published are lost rather than the others published twice.
    async fn open(
        config: PostgresCdcConfig,
        context: &SourceContext,
    ) -> Result<Self, ConnectorError> {
        let mut worker = Worker::open(config, context).await?;
        let (tx, batches) = tokio::sync::mpsc::channel(READ_AHEAD);
        let (durable, acks) = tokio::sync::watch::channel(worker.confirmed);
        let reported = worker.reported.take();
        let worker = tokio::spawn(worker.run(tx, acks));
        Ok(Self {
            batches,
            durable: Arc::new(durable),
            worker,
            reported,
        })
    }

    async fn preflight(config: &PostgresCdcConfig) -> Vec<Finding> {
        preflight::preflight(config).await
    }
}

impl Source for PostgresCdc {
    type Committer = Confirmer;

    fn committer(&self) -> Confirmer {
        Confirmer {
            durable: Arc::clone(&self.durable),
            reported: self.reported.clone(),
        }
    }

    async fn read(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        match self.batches.recv().await {
            Some(item) => item,
            None => Err(ConnectorError::retryable("the Postgres reader stopped")),
        }
    }

    async fn close(&mut self) {
        self.batches.close();
        self.worker.abort();
    }
}

/// Hands durable positions to the worker, which confirms them to the
/// server.
#[derive(Debug)]
pub struct Confirmer {
    durable: Arc<tokio::sync::watch::Sender<u64>>,
    /// ATMOST_ONCE: the position last reported to the server.
    reported: Option<tokio::sync::watch::Receiver<u64>>,
}

impl Commit for Confirmer {
    async fn commit(&self, position: Position) -> Result<(), ConnectorError> {
        self.durable.send_modify(|d| *d = (*d).max(position.0));
        if let Some(mut reported) = self.reported.clone() {
            // At most once: return only when the server has the position,
            // so that a crash from here on cannot replay what it covers.
            match tokio::time::timeout(
                AT_MOST_ONCE_REPORT_TIMEOUT,
                reported.wait_for(|r| *r >= position.0),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(ConnectorError::retryable("the Postgres reader stopped")),
                Err(_) => {
                    return Err(ConnectorError::retryable(
                        "the replication position was not reported to the server in time",
                    ));
                }
            }
        }
        Ok(())
    }
}
