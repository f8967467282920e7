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
//! through [`Source::commit`], and never moves backwards.

mod catalog;
mod chunks;
mod config;
mod events;
pub(crate) mod pgoutput;
mod preflight;
mod read_events;
mod report;
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
    ConnectorError, Finding, Guarantee, Position, Sequence, Source, SourceBatch, SourceConnector,
    SourceContext,
};
use crate::config::{ConfigMap, ConfigReport};

/// The Postgres CDC source: a handle on the [`Worker`] task that reads the
/// snapshot and the stream. `read` only takes what the worker has made, so it
/// is cancel-safe; `commit` only records the durable position, which the
/// worker confirms to the server.
pub struct PostgresCdc {
    batches: tokio::sync::mpsc::Receiver<Result<Option<SourceBatch>, ConnectorError>>,
    durable: tokio::sync::watch::Sender<u64>,
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

async fn connect_sql(
    config: &PostgresCdcConfig,
) -> Result<(Client, tokio::task::JoinHandle<()>), ConnectorError> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(&config.dbname)
        .options(SESSION_OPTIONS)
        .application_name("sluice");
    if let Some(p) = &config.password {
        pg.password(p.expose());
    }
    pg.ssl_mode(config.tls.postgres_mode());
    let (client, connection) = pg.connect(config.tls.connector()?).await.map_err(|e| {
        let hint = tls_hint(&e);
        let err = pg_error(
            &format!(
                "connect to Postgres at {}:{} (sslmode {})",
                config.host, config.port, config.tls.mode
            ),
            e,
        );
        // A refused certificate is the setup's to fix, not a passing failure.
        match hint {
            Some(hint) => ConnectorError::configuration(format!("{err} ({hint})")),
            None => err,
        }
    })?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "postgres connection closed");
        }
    });
    Ok((client, task))
}

/// What to do about a certificate the source refused, found by the TLS
/// error's type in the cause chain.
fn tls_hint(e: &tokio_postgres::Error) -> Option<&'static str> {
    use rustls::{CertificateError, Error as Tls};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        // An I/O error hands out the error it wraps only through `get_ref`.
        let tls = c.downcast_ref::<Tls>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<Tls>())
        });
        match tls {
            Some(Tls::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                return Some(
                    "database.sslrootcert does not hold the CA that signed the server's certificate",
                );
            }
            Some(Tls::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {
                return Some(
                    "database.hostname must be a name the server's certificate holds; verify-ca skips the name check",
                );
            }
            _ => cause = c.source(),
        }
    }
    None
}

fn replication_config(config: &PostgresCdcConfig, ack: Option<u64>) -> ReplicationConfig {
    let password = config
        .password
        .as_ref()
        .map(|p| p.expose().to_owned())
        .unwrap_or_default();
    let mut cfg = ReplicationConfig::new(
        config.host.clone(),
        config.user.clone(),
        password,
        config.dbname.clone(),
        config.slot.clone(),
        config.publication.clone(),
    )
    .with_port(config.port)
    .with_options(SESSION_OPTIONS)
    .with_application_name("sluice")
    .with_status_interval(config.status_interval)
    .with_buffer_size(REPLICATION_READ_AHEAD)
    .with_tls(config.tls.replication(&config.host));
    if let Some(lsn) = ack {
        cfg = cfg.with_ack_lsn(Lsn::from_u64(lsn));
    }
    cfg
}

fn repl_error(context: &str, e: pgwire_replication::PgWireError) -> ConnectorError {
    ConnectorError::retryable(format!("{context}: {e}")).with_source(e)
}

/// The text of one column of a replication command's result.
fn column(rows: &[pgwire_replication::QueryRow], i: usize) -> Option<String> {
    rows.first()?
        .get(i)?
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
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
            durable,
            worker,
            reported,
        })
    }

    async fn preflight(config: &PostgresCdcConfig) -> Vec<Finding> {
        preflight::preflight(config).await
    }
}

impl Worker {
    async fn open(
        config: PostgresCdcConfig,
        context: &SourceContext,
    ) -> Result<Self, ConnectorError> {
        let at_most_once = context.guarantee == Guarantee::AtMostOnce;
        let (sql, sql_task) = connect_sql(&config).await?;
        let types = catalog::load_types(&sql).await?;
        let tables = catalog::load_tables(&sql, &config, &types).await?;
        if tables.is_empty() {
            return Err(ConnectorError::permanent(format!(
                "no table of database {} is selected by table.include.list / table.exclude.list",
                config.dbname
            )));
        }
        let reporter = report::Reporter::new(Arc::clone(&context.snapshot), &config.slot);
        let signal_topic = config
            .signal_table
            .as_ref()
            .map(|t| format!("{}.{t}", config.topic_prefix));
        // Signals are told apart by topic: a captured table whose name
        // spells the same topic (a dot inside a quoted name) would have its
        // changes taken as signals.
        if let Some(topic) = &signal_topic
            && let Some(t) = tables
                .values()
                .find(|t| t.topic(&config.topic_prefix) == *topic)
        {
            return Err(ConnectorError::permanent(format!(
                "the captured table \"{}\".\"{}\" has the signal table's topic {topic}: exclude it, or choose another signal.data.collection",
                t.schema, t.name
            )));
        }
        let mut source = Self {
            transformer: transforms::Transformer::new(config.transforms.clone()),
            reporter,
            signal_topic,
            progress_changed: false,
            stream: StreamState::new(&config),
            config,
            sql,
            sql_task,
            types,
            tables,
            repl: None,
            snapshot: None,
            progress: None,
            chunks: None,
            reached: VecDeque::new(),
            chunk_unacked: None,
            last_sequence: context.published.unwrap_or_default(),
            confirmed: 0,
            snapshot_done_at: None,
            handed: 0,
            finished: false,
            at_most_once,
            reported: None,
        };
        source.stream.at_most_once = at_most_once;
        source.ensure_publication().await?;
        if source.config.snapshot_mode == SnapshotMode::InitialOnly {
            source
                .sql_exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?;
            let point = source.current_wal_lsn().await?;
            source.snapshot = Some(Snapshot::new(&source.tables, point, &source.config));
            return Ok(source);
        }
        source.prepare_slot(context.state.clone()).await?;
        // The runtime starts out with the slot's position as durable.
        source.handed = source.confirmed;
        Ok(source)
    }

    async fn sql_exec(&self, statement: &str) -> Result<(), ConnectorError> {
        self.sql
            .batch_execute(statement)
            .await
            .map_err(|e| pg_error(statement, e))
    }

    async fn current_wal_lsn(&self) -> Result<u64, ConnectorError> {
        let row = self
            .sql
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(|e| pg_error("read the WAL position", e))?;
        catalog::parse_lsn(&row.get::<_, String>(0))
            .ok_or_else(|| ConnectorError::permanent("bad WAL position"))
    }

    /// Create the publication when it is missing and the config allows it,
    /// then keep to the tables it publishes: a selected table that it
    /// leaves out would be snapshotted and then never streamed.
    ///
    /// sluice creates a publication `FOR TABLE` the selected tables that
    /// have a replica identity, never `FOR ALL TABLES`: a published table
    /// without one makes Postgres refuse the application's UPDATE and
    /// DELETE on it. Changes to partitions are published as changes to
    /// their root (`publish_via_partition_root`), on the topic the snapshot
    /// used.
    async fn ensure_publication(&mut self) -> Result<(), ConnectorError> {
        let publication = self.config.publication.clone();
        let signal = self.signal_oid().await?;
        let Some(published) = catalog::published_roots(&self.sql, &publication).await? else {
            if self.config.publication_mode == PublicationMode::Disabled {
                return Err(ConnectorError::permanent(format!(
                    "publication {publication} does not exist and publication.autocreate.mode is disabled: \
                     create it with CREATE PUBLICATION {publication} FOR TABLE ... \
                     WITH (publish_via_partition_root = true)"
                )));
            }
            let mut names: Vec<String> = self
                .tables
                .values()
                .map(|t| format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name)))
                .collect();
            names.sort();
            if signal.is_some()
                && let Some(table) = &self.config.signal_table
            {
                let (schema, name) = table.split_once('.').unwrap_or(("public", table));
                names.push(format!("{}.{}", quote_ident(schema), quote_ident(name)));
            }
            self.sql_exec(&format!(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
                quote_ident(&publication),
                names.join(", ")
            ))
            .await?;
            info!(publication = %publication, tables = names.len(), "publication created");
            return Ok(());
        };
        self.tables.retain(|oid, t| {
            let keep = published.contains(oid);
            if !keep {
                error!(table = %format!("{}.{}", t.schema, t.name), publication = %publication,
                    "the publication does not publish this selected table, so it is not captured: \
                     ALTER PUBLICATION ... ADD TABLE it, or leave it out of table.include.list");
            }
            keep
        });
        if self.tables.is_empty() {
            return Err(ConnectorError::permanent(format!(
                "publication {publication} publishes none of the selected tables"
            )));
        }
        if let (Some(oid), Some(table)) = (signal, &self.config.signal_table)
            && !published.contains(&oid)
        {
            error!(table = %table, publication = %publication,
                "the publication does not publish the signal table, so its signals are not seen: \
                 ALTER PUBLICATION ... ADD TABLE it");
        }
        Ok(())
    }

    /// The signal table's OID; `None` without one. A signal table that
    /// does not exist is warned about: no signal can be seen.
    async fn signal_oid(&self) -> Result<Option<u32>, ConnectorError> {
        let Some(table) = &self.config.signal_table else {
            return Ok(None);
        };
        let (schema, name) = table.split_once('.').unwrap_or(("public", table));
        let row = self
            .sql
            .query_opt(
                "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &name],
            )
            .await
            .map_err(|e| pg_error("look for the signal table", e))?;
        if row.is_none() {
            warn!(table = %table,
                "signal.data.collection names a table that does not exist: create it (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048)) \
                 and add it to the publication, or signals are not seen");
        }
        Ok(row.map(|r| r.get::<_, u32>(0)))
    }

    /// Set or clear this slot's snapshot-complete line in the publication comment.
    async fn mark_snapshot(&self, complete: bool) -> Result<(), ConnectorError> {
        slot::set_marker(
            &self.sql,
            &self.config.publication,
            &slot::snapshot_marker(&self.config.slot),
            complete,
        )
        .await
    }

    /// The snapshot's progress to go on from: a fresh one when the plan
    /// takes a new snapshot, the recorded one (the runtime's under
    /// EFFECTIVELY_ONCE, else the publication comment's) when one did not
    /// finish, kept to the tables selected now: a table newly selected is
    /// copied even after the snapshot completed. `None` when there is
    /// nothing to copy and nothing recorded.
    async fn snapshot_progress(
        &self,
        plan: &slot::Plan,
        take_snapshot: bool,
        recovered: Option<String>,
    ) -> Result<Option<Progress>, ConnectorError> {
        let fresh = matches!(plan, slot::Plan::Recreate | slot::Plan::Create { .. })
            || self.config.snapshot_mode == SnapshotMode::Always;
        let recorded = match recovered {
            Some(text) => Some(text),
            None => slot::progress(&self.sql, &self.config.publication, &self.config.slot).await?,
        };
        if take_snapshot && fresh {
            // A new copy of every table; the last signal acted on is still
            // known, so the slot's resend of it starts nothing.
            let mut progress = Progress::of(&self.tables);
            progress.last_signal = recorded
                .as_deref()
                .and_then(Progress::from_text)
                .and_then(|p| p.last_signal);
            return Ok(Some(progress));
        }
        if matches!(plan, slot::Plan::Adopt) || self.config.snapshot_mode == SnapshotMode::Never {
            // No snapshot of its own, but a copy a signal asked for goes
            // on, and the signals acted on stay known.
            return Ok(recorded
                .as_deref()
                .and_then(Progress::from_text)
                .filter(|p| !p.complete() || p.last_signal.is_some())
                .map(|mut p| {
                    let names: std::collections::HashSet<String> = self
                        .tables
                        .values()
                        .map(|t| format!("{}.{}", t.schema, t.name))
                        .collect();
                    p.tables.retain(|t| names.contains(&t.table));
                    p
                }));
        }
        let mut progress = match recorded.as_deref().and_then(Progress::from_text) {
            Some(p) => p,
            None if take_snapshot => Progress::of(&self.tables),
            // A snapshot completed before progress was recorded: every
            // table selected now counts as copied.
            None => {
                let mut all = Progress::of(&self.tables);
                all.tables.iter_mut().for_each(|t| t.done = true);
                slot::set_progress(
                    &self.sql,
                    &self.config.publication,
                    &self.config.slot,
                    &all.to_text(),
                )
                .await?;
                all
            }
        };
        progress.select(&self.tables);
        Ok(Some(progress))
    }

    /// Decide on the snapshot, create or reuse the slot, and start
    /// replication. `recovered` is the snapshot progress the runtime
    /// committed last (EFFECTIVELY_ONCE).
    async fn prepare_slot(&mut self, recovered: Option<String>) -> Result<(), ConnectorError> {
        let slot_name = self.config.slot.clone();
        let existing = slot::slot(&self.sql, &slot_name).await?;
        let markers = slot::markers(&self.sql, &self.config.publication, &slot_name).await?;
        let decision = slot::plan(&self.config, existing.as_ref(), markers)?;
        if let Some(gap) = &decision.gap {
            error!(slot = %slot_name, gap = %gap,
                "the slot sluice streamed from is lost: taking a new snapshot as snapshot.mode says; \
                 changes made in the gap are not on the topics, and rows deleted in it are not deleted downstream");
        }
        let take_snapshot = match decision.plan {
            slot::Plan::Recreate => true,
            slot::Plan::Create { snapshot } | slot::Plan::Resume { snapshot } => snapshot,
            slot::Plan::Adopt => false,
        };
        if take_snapshot && markers.complete {
            self.mark_snapshot(false).await?;
        }
        if decision.plan == slot::Plan::Recreate {
            warn!(
                slot = %slot_name,
                "dropping sluice's invalidated replication slot to take a new snapshot; rows already published are published again as op r"
            );
            self.sql
                .execute("SELECT pg_drop_replication_slot($1)", &[&slot_name])
                .await
                .map_err(|e| pg_error("drop the replication slot", e))?;
        }
        self.progress = self
            .snapshot_progress(&decision.plan, take_snapshot, recovered)
            .await?;
        if decision.plan == slot::Plan::Adopt {
            // The client that made the slot published every change up to
            // its confirmed position: record the slot as sluice's, with its
            // snapshot done, and stream on from there.
            for marker in [
                slot::owned_marker(&slot_name),
                slot::snapshot_marker(&slot_name),
            ] {
                slot::set_marker(&self.sql, &self.config.publication, &marker, true).await?;
            }
            warn!(slot = %slot_name,
                confirmed = %existing.as_ref().and_then(|s| s.confirmed_flush).map_or_else(|| "unknown".to_owned(), catalog::format_lsn),
                "adopted a replication slot that another client created (slot.adopt): streaming from its confirmed position, without a snapshot");
        }
        let resume = matches!(decision.plan, slot::Plan::Resume { .. } | slot::Plan::Adopt);
        let existing = existing.filter(|_| resume);
        if existing.is_none() {
            // Claim the slot before creating it: a crash in between leaves a
            // claim on no slot, never a slot that sluice would not own.
            slot::set_marker(
                &self.sql,
                &self.config.publication,
                &slot::owned_marker(&slot_name),
                true,
            )
            .await?;
        }
        let ack = existing.as_ref().and_then(|s| s.confirmed_flush);
        let mut repl_config = replication_config(&self.config, ack);
        let mut reported_start = None;
        let metrics = Arc::new(std::sync::OnceLock::<
            Arc<pgwire_replication::ReplicationMetrics>,
        >::new());
        if self.at_most_once {
            // At most once, a position must reach the server before the
            // records after it are published: report it at once, and tell
            // `commit` when it is reported.
            let (reported, watch) = tokio::sync::watch::channel(ack.unwrap_or(0));
            let reported = Arc::new(reported);
            reported_start = Some(Arc::clone(&reported));
            let cell = Arc::clone(&metrics);
            repl_config = repl_config
                .with_status_interval(AT_MOST_ONCE_STATUS_INTERVAL)
                .with_feedback_observer(pgwire_replication::FeedbackObserver::new(move |_| {
                    if let Some(m) = cell.get() {
                        reported.send_replace(m.last_applied_lsn().as_u64());
                    }
                }));
            self.reported = Some(watch);
        }
        let mut repl = ReplicationClient::connect_gated(repl_config)
            .await
            .map_err(|e| repl_error("open the replication connection", e))?;
        let _ = metrics.set(repl.metrics());
        if existing.is_none() {
            // No exported snapshot: the tables are copied chunk by chunk,
            // each chunk in a short transaction of its own (decision 0017).
            let rows = repl
                .simple_query(&format!(
                    "CREATE_REPLICATION_SLOT {slot_name} LOGICAL pgoutput (SNAPSHOT 'nothing')"
                ))
                .await
                .map_err(|e| repl_error("create the replication slot", e))?;
            self.confirmed = column(&rows, 1)
                .and_then(|l| catalog::parse_lsn(&l))
                .unwrap_or(0);
            info!(slot = %slot_name, consistent_point = %catalog::format_lsn(self.confirmed), "slot created");
        } else {
            self.confirmed = ack.unwrap_or(0);
            info!(slot = %slot_name, confirmed_flush = %catalog::format_lsn(self.confirmed), "resuming from the slot");
        }
        if let Some(progress) = self.progress.clone().filter(|p| !p.complete()) {
            let copied = progress.tables.iter().filter(|t| t.done).count();
            info!(
                tables = progress.tables.len(),
                copied, "the snapshot copies the tables chunk by chunk while streaming"
            );
            let chunks = Chunker::new(progress, &self.config);
            self.chunks = Some(if self.at_most_once {
                chunks.at_most_once()
            } else {
                chunks
            });
        }
        if let Some(reported) = reported_start {
            // Positions up to the slot's start need no report.
            reported.send_replace(self.confirmed);
        }
        repl.start()
            .await
            .map_err(|e| repl_error("start replication", e))?;
        repl.wait_started()
            .await
            .map_err(|e| repl_error("start replication", e))?;
        self.repl = Some(repl);
        Ok(())
    }
}

impl Worker {
    /// Read until the runtime goes away or something fails. Durable
    /// positions arrive on `acks` and are confirmed between reads and while
    /// the stream waits.
    async fn run(
        mut self,
        tx: tokio::sync::mpsc::Sender<Result<Option<SourceBatch>, ConnectorError>>,
        mut acks: tokio::sync::watch::Receiver<u64>,
    ) {
        loop {
            let durable = *acks.borrow_and_update();
            if let Err(e) = self.acknowledge(durable).await {
                let _ = tx.send(Err(e)).await;
                return;
            }
            self.stream.wake_at = match (self.reached.front(), self.snapshot_done_at) {
                (Some(&(at, _)), Some(done)) => Some(at.min(done)),
                (Some(&(at, _)), None) => Some(at),
                (None, done) => done,
            };
            let mut item = self.next(&mut acks).await;
            if let Ok(Some(batch)) = &mut item
                && let Err(e) = self.transformer.batch(batch)
            {
                item = Err(e);
            }
            if let Ok(Some(b)) = &item
                && b.records.is_empty()
                && b.checkpoint.is_none()
                && b.state.is_none()
            {
                // The stream woke for a durable position: record it above.
                continue;
            }
            let go_on = matches!(item, Ok(Some(_)));
            if tx.send(item).await.is_err() || !go_on {
                break;
            }
        }
        if let Some(mut repl) = self.repl.take() {
            let _ = repl.shutdown().await;
        }
        self.sql_task.abort();
    }

    async fn next(
        &mut self,
        acks: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<Option<SourceBatch>, ConnectorError> {
        if self.finished {
            return Ok(None);
        }
        if let Some(snap) = &mut self.snapshot {
            match snap
                .next_batch(&self.sql, &self.config, &self.tables)
                .await?
            {
                Some(batch) => return Ok(Some(batch)),
                None => {
                    // The snapshot is read: end its transaction and hand over
                    // the position that marks it complete.
                    let point = snap.consistent_point();
                    self.snapshot = None;
                    self.sql_exec("COMMIT").await?;
                    if self.config.snapshot_mode == SnapshotMode::InitialOnly {
                        self.finished = true;
                        info!(
                            "snapshot complete; snapshot.mode is initial_only, so the source stops"
                        );
                        return Ok(None);
                    }
                    self.snapshot_done_at = Some(point);
                    return Ok(Some(SourceBatch {
                        records: Vec::new(),
                        checkpoint: Some(Position(point)),
                        state: None,
                    }));
                }
            }
        }
        if let Some(chunks) = self.chunks.as_mut() {
            if !chunks.waiting() && !chunks.complete() {
                chunks.read(&self.sql, &self.config, &self.tables).await?;
            }
            self.reporter.show(&self.sql, chunks.report()).await?;
        }
        let Some(repl) = self.repl.as_mut() else {
            return Ok(None);
        };
        let Some(mut batch) = self
            .stream
            .next_batch(
                repl,
                acks,
                &mut self.confirmed,
                &self.sql,
                &self.config,
                &mut self.types,
            )
            .await?
        else {
            return Ok(None);
        };
        if let Some(last) = batch.records.iter().filter_map(|r| r.sequence).max() {
            self.last_sequence = self.last_sequence.max(last);
        }
        self.take_signals(&mut batch);
        let later = batch.checkpoint.is_some_and(|p| p.0 > self.handed);
        if let Some(p) = batch.checkpoint {
            self.handed = self.handed.max(p.0);
        }
        let Some(chunks) = self.chunks.as_mut() else {
            return Ok(Some(batch));
        };
        chunks.observe(&batch.records);
        let Some(position) = batch.checkpoint else {
            return Ok(Some(batch));
        };
        if !chunks.waiting() && chunks.complete() {
            // A signal stopped what was left to copy.
            let state = chunks.progress().to_text();
            batch.state = Some(state.clone());
            self.progress_changed = false;
            self.snapshot_done_at = Some(position.0);
            self.progress = Some(chunks.progress().clone());
            self.chunks = None;
            self.keep_progress(position.0, state).await?;
            return Ok(Some(batch));
        }
        let emitted = if later && self.chunk_unacked.is_none() {
            chunks.emit(position.0, self.last_sequence)
        } else {
            None
        };
        if let Some(emitted) = emitted {
            self.chunk_unacked = Some(position.0);
            self.progress_changed = false;
            if let Some(last) = emitted.records.last().and_then(|r| r.sequence) {
                self.last_sequence = last;
            }
            batch.records.extend(emitted.records);
            let state = emitted.progress.to_text();
            batch.state = Some(state.clone());
            if emitted.complete {
                self.reporter.show(&self.sql, chunks.report()).await?;
                info!(slot = %self.config.slot, "every table is copied; the snapshot completes once this is durable");
                self.snapshot_done_at = Some(position.0);
                self.progress = Some(emitted.progress);
                self.chunks = None;
            }
            self.keep_progress(position.0, state).await?;
        } else if self.progress_changed {
            let state = chunks.progress().to_text();
            batch.state = Some(state.clone());
            self.progress_changed = false;
            self.keep_progress(position.0, state).await?;
        }
        Ok(Some(batch))
    }

    /// Keep the snapshot's progress `state`, reached with the batch at
    /// `position`: recorded once that batch is durable; at most once,
    /// recorded now, before its rows go out, so that a crash loses them
    /// rather than copy them again. (The runtime counts a batch as done
    /// before publishing it, at a position the server may already have,
    /// so waiting for it to be durable would record the progress after
    /// the rows were out: a kill in between published 46 rows twice.)
    async fn keep_progress(&mut self, position: u64, state: String) -> Result<(), ConnectorError> {
        if self.at_most_once {
            slot::set_progress(
                &self.sql,
                &self.config.publication,
                &self.config.slot,
                &state,
            )
            .await
        } else {
            self.reached.push_back((position, state));
            Ok(())
        }
    }

    /// Take the signal table's records out of `batch` and do what they
    /// ask: copy tables (again), or stop copying them.
    fn take_signals(&mut self, batch: &mut SourceBatch) {
        let Some(topic) = &self.signal_topic else {
            return;
        };
        if !batch
            .records
            .iter()
            .any(|r| r.topic.as_ref() == Some(topic))
        {
            return;
        }
        let (found, rest): (Vec<crate::SourceRecord>, Vec<crate::SourceRecord>) =
            std::mem::take(&mut batch.records)
                .into_iter()
                .partition(|r| r.topic.as_ref() == Some(topic));
        batch.records = rest;
        for record in found {
            let (id, signal) = match signals::parse(&record) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(why) => {
                    warn!(table = ?self.config.signal_table, "a signal is refused: {why}");
                    continue;
                }
            };
            match signal {
                signals::Signal::Execute(patterns) => {
                    let names = match signals::matching(&patterns, &self.tables) {
                        Ok(names) => names,
                        Err(why) => {
                            warn!(signal = %id, "a signal is refused: {why}");
                            continue;
                        }
                    };
                    if names.is_empty() {
                        warn!(signal = %id, data_collections = ?patterns,
                            "execute-snapshot matches no captured table: nothing to copy");
                        continue;
                    }
                    let (tables, config) = (&self.tables, &self.config);
                    let (recorded, at_most_once) = (&self.progress, self.at_most_once);
                    let chunks = self.chunks.get_or_insert_with(|| {
                        // The copy so far is finished; its record keeps
                        // the signals acted on.
                        let mut all = recorded.clone().unwrap_or_else(|| Progress::of(tables));
                        all.tables.iter_mut().for_each(|t| t.done = true);
                        let chunks = Chunker::new(all, config);
                        if at_most_once {
                            chunks.at_most_once()
                        } else {
                            chunks
                        }
                    });
                    if !chunks.act_on(record.sequence.map(|s| s.0)) {
                        info!(signal = %id, "execute-snapshot was acted on before; the row streamed again is passed over");
                        continue;
                    }
                    chunks.request(&names);
                    self.progress_changed = true;
                    info!(signal = %id, tables = ?names,
                        "a snapshot of these tables was asked for: they are copied while streaming");
                }
                signals::Signal::Stop(patterns) => {
                    let Some(chunks) = self.chunks.as_mut() else {
                        info!(signal = %id, "stop-snapshot: no snapshot is running");
                        continue;
                    };
                    if !chunks.act_on(record.sequence.map(|s| s.0)) {
                        continue;
                    }
                    let names = match patterns.map(|p| signals::matching(&p, &self.tables)) {
                        None => None,
                        Some(Ok(names)) => Some(names),
                        Some(Err(why)) => {
                            warn!(signal = %id, "a signal is refused: {why}");
                            continue;
                        }
                    };
                    let stopped = chunks.stop(names.as_deref());
                    self.progress_changed = true;
                    info!(signal = %id, tables = ?stopped,
                        "stop-snapshot: these tables are no longer copied, and count as copied as far as they got");
                }
                signals::Signal::Log(message) => info!(signal = %id, message = %message, "signal"),
            }
        }
    }

    /// Confirm a durable position to the server, record the snapshot's
    /// progress durable with it, and the snapshot as complete once its
    /// last chunk is durable.
    async fn acknowledge(&mut self, durable: u64) -> Result<(), ConnectorError> {
        let mut progress = None;
        while self.reached.front().is_some_and(|(at, _)| *at <= durable) {
            progress = self.reached.pop_front().map(|(_, p)| p);
        }
        if let Some(progress) = progress {
            slot::set_progress(
                &self.sql,
                &self.config.publication,
                &self.config.slot,
                &progress,
            )
            .await?;
        }
        if self.chunk_unacked.is_some_and(|at| durable >= at) {
            self.chunk_unacked = None;
            if let Some(chunks) = self.chunks.as_mut().filter(|c| c.waiting()) {
                chunks.nudge(&self.sql).await;
            }
        }
        // The slot only moves forward.
        if durable > self.confirmed {
            self.confirmed = durable;
            if let Some(repl) = &self.repl {
                repl.update_applied_lsn(Lsn::from_u64(durable));
            }
        }
        if let Some(at) = self.snapshot_done_at
            && durable >= at
        {
            self.mark_snapshot(true).await?;
            self.snapshot_done_at = None;
            info!(slot = %self.config.slot, "snapshot complete and durable");
        }
        Ok(())
    }
}

impl Source for PostgresCdc {
    async fn read(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        match self.batches.recv().await {
            Some(item) => item,
            None => Err(ConnectorError::retryable("the Postgres reader stopped")),
        }
    }

    async fn commit(&mut self, position: Position) -> Result<(), ConnectorError> {
        self.durable.send_modify(|d| *d = (*d).max(position.0));
        if let Some(reported) = &mut self.reported {
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

    async fn close(&mut self) {
        self.batches.close();
        self.worker.abort();
    }
}
