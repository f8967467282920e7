//! What a snapshot shows while it runs: each table's rows copied against
//! its estimate, rate, time left and chunk in flight, on the runtime's
//! board (`/connectors`, `/metrics`) at every step; and every 10 s the WAL
//! the slot holds back, in the log with a line of progress. A copy that at
//! its rate would outlast what `max_slot_wal_keep_size` lets the slot keep
//! is warned about while the slot is still whole.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tracing::{info, warn};

use super::catalog::pg_error;
use crate::api::{ConnectorError, SnapshotBoard, SnapshotReport, TableCopy};

/// How often the WAL is looked at and a progress line logged.
const EVERY: Duration = Duration::from_secs(10);
/// How often a risk to the slot is warned about, at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The slot's WAL as the server reports it.
#[derive(Debug, Clone, Default)]
struct Wal {
    retained: Option<u64>,
    status: Option<String>,
    safe: Option<i64>,
}

/// Reports one source's snapshot.
#[derive(Debug)]
pub(crate) struct Reporter {
    board: Arc<SnapshotBoard>,
    slot: String,
    wal: Wal,
    last_look: Option<Instant>,
    /// The retained WAL at the last look, to tell how fast it grows.
    grown_from: Option<(Instant, u64)>,
    last_warning: Option<Instant>,
    /// The server has no `wal_status` (before Postgres 13).
    old_server: bool,
}

impl Reporter {
    pub(crate) fn new(board: Arc<SnapshotBoard>, slot: &str) -> Self {
        Self {
            board,
            slot: slot.to_owned(),
            wal: Wal::default(),
            last_look: None,
            grown_from: None,
            last_warning: None,
            old_server: false,
        }
    }

    /// Show `tables` on the board; every [`EVERY`], look at the slot's WAL
    /// first and log a line of progress.
    pub(crate) async fn show(
        &mut self,
        sql: &Client,
        tables: Vec<TableCopy>,
    ) -> Result<(), ConnectorError> {
        if self.last_look.is_none_or(|at| at.elapsed() >= EVERY) {
            self.last_look = Some(Instant::now());
            self.look_at_wal(sql).await?;
            self.log(&tables);
            self.warn_of_risk(&tables);
        }
        self.board.set(SnapshotReport {
            tables,
            wal_retained_bytes: self.wal.retained,
            wal_status: self.wal.status.clone(),
            wal_safe_bytes: self.wal.safe,
        });
        Ok(())
    }

    /// While the source streams with no snapshot copying: every [`EVERY`],
    /// look at the slot's WAL and show it beside the tables the last
    /// snapshot copied, if any, so that what the slot holds back is seen
    /// (and alerted on) for the source's whole life. A failed look is
    /// logged, not fatal: the stream does not depend on it.
    pub(crate) async fn watch_wal(&mut self, sql: &Client) {
        if self.last_look.is_some_and(|at| at.elapsed() < EVERY) {
            return;
        }
        self.last_look = Some(Instant::now());
        if let Err(e) = self.look_at_wal(sql).await {
            warn!(slot = %self.slot, error = %e, "could not read the slot's WAL");
            return;
        }
        let tables = self.board.get().map(|r| r.tables).unwrap_or_default();
        self.board.set(SnapshotReport {
            tables,
            wal_retained_bytes: self.wal.retained,
            wal_status: self.wal.status.clone(),
            wal_safe_bytes: self.wal.safe,
        });
    }

    async fn look_at_wal(&mut self, sql: &Client) -> Result<(), ConnectorError> {
        if self.old_server {
            return Ok(());
        }
        let answer = sql
            .query_opt(
                "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint, wal_status, safe_wal_size \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )
            .await;
        let row = match answer {
            Ok(row) => row,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN) => {
                self.old_server = true;
                return Ok(());
            }
            Err(e) => return Err(pg_error("read the replication slot's WAL", e)),
        };
        let Some(row) = row else {
            return Ok(());
        };
        let retained: Option<i64> = row.get(0);
        self.wal = Wal {
            retained: retained.and_then(|r| u64::try_from(r).ok()),
            status: row.get(1),
            safe: row.get(2),
        };
        Ok(())
    }

    fn log(&self, tables: &[TableCopy]) {
        let Some(t) = tables.iter().find(|t| !t.done) else {
            return;
        };
        let copied = tables.iter().filter(|t| t.done).count();
        info!(
            table = %t.table,
            rows = t.rows,
            estimate = t.estimate.map_or_else(|| "unknown".to_owned(), |e| e.to_string()),
            rows_per_second = t.rows_per_second.unwrap_or(0.0),
            eta_seconds = t.eta_seconds.map_or_else(|| "unknown".to_owned(), |e| e.to_string()),
            tables_copied = copied,
            tables = tables.len(),
            wal_retained_bytes = self.wal.retained.unwrap_or(0),
            wal_status = self.wal.status.as_deref().unwrap_or("unknown"),
            "snapshot progress"
        );
    }

    /// Warn when the slot is past its keep size, or when the WAL it holds
    /// grows fast enough to pass it before the copy ends.
    fn warn_of_risk(&mut self, tables: &[TableCopy]) {
        let now = Instant::now();
        let growth = match (self.grown_from, self.wal.retained) {
            (Some((at, from)), Some(to)) if to > from => {
                Some((to - from) as f64 / now.duration_since(at).as_secs_f64().max(1.0))
            }
            _ => None,
        };
        if let Some(retained) = self.wal.retained {
            self.grown_from = Some((now, retained));
        }
        if self
            .last_warning
            .is_some_and(|at| at.elapsed() < WARN_EVERY)
        {
            return;
        }
        let left: u64 = tables.iter().filter_map(|t| t.eta_seconds).sum();
        let why = match (self.wal.status.as_deref(), self.wal.safe, growth) {
            (Some("unreserved" | "lost"), _, _) => Some(format!(
                "the slot's WAL is past max_slot_wal_keep_size (wal_status {}): the server may remove WAL the slot needs, \
                 and the source would have to take a new snapshot",
                self.wal.status.as_deref().unwrap_or_default()
            )),
            (_, Some(safe), Some(rate)) if rate * left as f64 > safe as f64 => Some(format!(
                "at {:.0} bytes of WAL a second, the {left} s the copy still needs would pass the {safe} bytes \
                 the slot may still keep (max_slot_wal_keep_size): raise it, or copy when fewer changes are written",
                rate
            )),
            _ => None,
        };
        if let Some(why) = why {
            warn!(slot = %self.slot, "{why}");
            self.last_warning = Some(now);
        }
    }
}
