//! The worker's loop: batches made from the snapshot and the stream,
//! signals taken, and durable positions confirmed to the server.

use super::*;

impl Worker {
    /// Read until the runtime goes away or something fails. Durable
    /// positions arrive on `acks` and are confirmed between reads and while
    /// the stream waits.
    pub(super) async fn run(
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

    pub(super) async fn next(
        &mut self,
        acks: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<Option<SourceBatch>, ConnectorError> {
        if self.finished {
            return Ok(None);
        }
        if self.snapshot.is_some() {
            return self.next_from_snapshot().await;
        }
        if let Some(chunks) = self.chunks.as_mut() {
            if !chunks.waiting() && !chunks.complete() {
                chunks.read(&self.sql, &self.config, &self.tables).await?;
            }
            self.reporter.show(&self.sql, chunks.report()).await?;
        } else {
            self.reporter.watch_wal(&self.sql).await;
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
        self.with_chunk(batch, later).await.map(Some)
    }

    /// The next batch of the snapshot read in one transaction
    /// (`initial_only`); once it is read, the position that marks it
    /// complete.
    async fn next_from_snapshot(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        let Some(snap) = &mut self.snapshot else {
            return Ok(None);
        };
        if let Some(batch) = snap
            .next_batch(&self.sql, &self.config, &self.tables)
            .await?
        {
            return Ok(Some(batch));
        }
        // The snapshot is read: end its transaction and hand over the
        // position that marks it complete.
        let point = snap.consistent_point();
        self.snapshot = None;
        self.sql_exec("COMMIT").await?;
        if self.config.snapshot_mode == SnapshotMode::InitialOnly {
            self.finished = true;
            info!("snapshot complete; snapshot.mode is initial_only, so the source stops");
            return Ok(None);
        }
        self.snapshot_done_at = Some(point);
        Ok(Some(SourceBatch {
            records: Vec::new(),
            checkpoint: Some(Position(point)),
            state: None,
        }))
    }

    /// `batch`, from the stream, with the next chunk of the snapshot when
    /// one may go with it (`later`: its position is past every one handed
    /// over), and the snapshot's progress to keep with it.
    async fn with_chunk(
        &mut self,
        mut batch: SourceBatch,
        later: bool,
    ) -> Result<SourceBatch, ConnectorError> {
        let Some(chunks) = self.chunks.as_mut() else {
            return Ok(batch);
        };
        chunks.observe(&batch.records);
        let Some(position) = batch.checkpoint else {
            return Ok(batch);
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
            return Ok(batch);
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
        Ok(batch)
    }

    /// Keep the snapshot's progress `state`, reached with the batch at
    /// `position`: recorded once that batch is durable; at most once,
    /// recorded now, before its rows go out, so that a crash loses them
    /// rather than copy them again. (The runtime counts a batch as done
    /// before publishing it, at a position the server may already have,
    /// so waiting for it to be durable would record the progress after
    /// the rows were out: a kill in between published 46 rows twice.)
    pub(super) async fn keep_progress(
        &mut self,
        position: u64,
        state: String,
    ) -> Result<(), ConnectorError> {
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
    pub(super) fn take_signals(&mut self, batch: &mut SourceBatch) {
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
    pub(super) async fn acknowledge(&mut self, durable: u64) -> Result<(), ConnectorError> {
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
