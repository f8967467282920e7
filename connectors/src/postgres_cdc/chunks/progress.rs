//! How far the snapshot got, per table, kept as the batch's `state`; and
//! which transactions a chunk's snapshot saw.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use tracing::info;

use super::super::catalog::Table;

/// One table's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TableProgress {
    /// `schema.table`.
    pub(crate) table: String,
    /// The key (or `[page]` of a key-less table, `[partition, page]` of a
    /// key-less partitioned one) of the last row emitted; `None` before
    /// the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) after: Option<Vec<Option<String>>>,
    /// The largest key (or page count) when the table's copy began: rows
    /// past it came later, and the stream carries them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upper: Option<Vec<Option<String>>>,
    /// Every chunk is emitted.
    #[serde(default)]
    pub(crate) done: bool,
    /// Rows emitted so far.
    #[serde(default)]
    pub(crate) rows: u64,
    /// At most once: the transactions committed (`pg_current_snapshot()`)
    /// when the slot was made or the copy asked for; a row version a
    /// later one wrote is on the stream (see [`Chunker::at_most_once`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<String>,
}

/// The snapshot's progress: the tables to copy, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub(crate) tables: Vec<TableProgress>,
    /// The stream position (sequence, as decimal text) of the last signal
    /// acted on: a signal row the slot streams again after a restart (it
    /// resends from its confirmed position) is at or before it, and is not
    /// acted on twice, nor starts a finished copy over. By position, not
    /// by the row's id: ids may repeat, or be numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_signal: Option<String>,
}

impl Progress {
    /// A fresh snapshot of `tables`, by name.
    pub(crate) fn of(tables: &HashMap<u32, Table>) -> Self {
        let mut names: Vec<String> = tables
            .values()
            .map(|t| format!("{}.{}", t.schema, t.name))
            .collect();
        names.sort();
        Self {
            tables: names
                .into_iter()
                .map(|table| TableProgress {
                    table,
                    ..TableProgress::default()
                })
                .collect(),
            last_signal: None,
        }
    }

    /// The text kept between runs.
    pub(crate) fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Note the signal at stream position `at` as acted on; `false` when
    /// it is at or before the last one, so was acted on already. A signal
    /// without a position is always acted on.
    pub(crate) fn act_on(&mut self, at: Option<u128>) -> bool {
        let Some(at) = at else {
            return true;
        };
        let last = self
            .last_signal
            .as_deref()
            .and_then(|l| l.parse::<u128>().ok());
        if last.is_some_and(|last| at <= last) {
            return false;
        }
        self.last_signal = Some(at.to_string());
        true
    }

    /// Whether every table is copied.
    pub(crate) fn complete(&self) -> bool {
        self.tables.iter().all(|t| t.done)
    }

    /// Keep to `tables`: a table no longer selected is dropped, and one
    /// newly selected is added to copy.
    pub(crate) fn select(&mut self, tables: &HashMap<u32, Table>) {
        let wanted: HashSet<String> = tables
            .values()
            .map(|t| format!("{}.{}", t.schema, t.name))
            .collect();
        self.tables.retain(|t| wanted.contains(&t.table));
        let known: HashSet<String> = self.tables.iter().map(|t| t.table.clone()).collect();
        let mut added: Vec<&String> = wanted.iter().filter(|t| !known.contains(*t)).collect();
        added.sort();
        for table in added {
            info!(table = %table, "a table newly selected is copied while streaming");
            self.tables.push(TableProgress {
                table: table.clone(),
                ..TableProgress::default()
            });
        }
    }
}

/// Which transactions a chunk's read saw: `pg_current_snapshot()`, its
/// 64-bit ids cut to the 32 bits pgoutput gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    xmin: u32,
    xmax: u32,
    xip: HashSet<u32>,
}

/// Whether `a` comes before `b` in the 32-bit transaction id circle.
fn precedes(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl Seen {
    /// `xmin:xmax:xip,...` as `pg_current_snapshot()::text` prints it.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        let cut = |t: &str| t.parse::<u64>().ok().map(|x| x as u32);
        let xmin = cut(parts.next()?)?;
        let xmax = cut(parts.next()?)?;
        let xip = parts
            .next()?
            .split(',')
            .filter(|x| !x.is_empty())
            .map(cut)
            .collect::<Option<HashSet<u32>>>()?;
        Some(Self { xmin, xmax, xip })
    }

    /// Whether the transaction `xid` had committed when the chunk was read.
    pub(crate) fn saw(&self, xid: u32) -> bool {
        precedes(xid, self.xmin) || (precedes(xid, self.xmax) && !self.xip.contains(&xid))
    }
}
