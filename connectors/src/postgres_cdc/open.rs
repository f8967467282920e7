//! Opening the source: the catalog, the publication, the slot, and the
//! snapshot's progress kept in the publication's comment.

use super::connect::{column, connect_sql, repl_error, replication_config};
use super::*;

impl Worker {
    pub(super) async fn open(
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
        source
            .prepare_slot(context.state.clone(), context.took_over)
            .await?;
        // The runtime starts out with the slot's position as durable.
        source.handed = source.confirmed;
        Ok(source)
    }

    pub(super) async fn sql_exec(&self, statement: &str) -> Result<(), ConnectorError> {
        self.sql
            .batch_execute(statement)
            .await
            .map_err(|e| pg_error(statement, e))
    }

    pub(super) async fn current_wal_lsn(&self) -> Result<u64, ConnectorError> {
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
    pub(super) async fn ensure_publication(&mut self) -> Result<(), ConnectorError> {
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
    pub(super) async fn signal_oid(&self) -> Result<Option<u32>, ConnectorError> {
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
    pub(super) async fn mark_snapshot(&self, complete: bool) -> Result<(), ConnectorError> {
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
    pub(super) async fn snapshot_progress(
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
    /// Settle the slot as its state and `snapshot.mode` ask, start
    /// replication from it, and set the snapshot's chunks going.
    /// `took_over`: the runtime fenced out an instance that stopped
    /// beating, whose walsender may still hold the slot.
    pub(super) async fn prepare_slot(
        &mut self,
        recovered: Option<String>,
        took_over: bool,
    ) -> Result<(), ConnectorError> {
        let slot_name = self.config.slot.clone();
        let existing = self.settle_slot(&slot_name, recovered, took_over).await?;
        let ack = existing.as_ref().and_then(|s| s.confirmed_flush);
        let (mut repl, reported_start) = self.replication_client(ack).await?;
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
        self.start_chunks();
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

    /// Plan what to do with the slot, record that plan (snapshot markers,
    /// adoption, the claim on a slot about to be made), and drop an
    /// invalidated slot; the existing slot to resume from, if any.
    async fn settle_slot(
        &mut self,
        slot_name: &str,
        recovered: Option<String>,
        took_over: bool,
    ) -> Result<Option<slot::SlotState>, ConnectorError> {
        let mut existing = slot::slot(&self.sql, slot_name).await?;
        let markers = slot::markers(&self.sql, &self.config.publication, slot_name).await?;
        if took_over
            && markers.owned
            && let Some(pid) = existing.as_ref().and_then(|s| s.active_pid)
        {
            existing = slot::free(&self.sql, slot_name, pid).await?;
        }
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
                slot::owned_marker(slot_name),
                slot::snapshot_marker(slot_name),
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
                &slot::owned_marker(slot_name),
                true,
            )
            .await?;
        }
        Ok(existing)
    }

    /// The replication connection, from the slot's confirmed position
    /// `ack`. Under ATMOST_ONCE, with the watch `commit` waits on for a
    /// position to reach the server.
    async fn replication_client(
        &mut self,
        ack: Option<u64>,
    ) -> Result<
        (
            ReplicationClient,
            Option<Arc<tokio::sync::watch::Sender<u64>>>,
        ),
        ConnectorError,
    > {
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
        let repl = ReplicationClient::connect_gated(repl_config)
            .await
            .map_err(|e| repl_error("open the replication connection", e))?;
        let _ = metrics.set(repl.metrics());
        Ok((repl, reported_start))
    }

    /// Copy the tables chunk by chunk alongside the stream, when a snapshot
    /// is under way.
    fn start_chunks(&mut self) {
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
    }
}
