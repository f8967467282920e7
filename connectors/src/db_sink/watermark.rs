//! The EFFECTIVELY_ONCE watermark: per sink, topic and partition, the last
//! record applied, kept in the target's `sluice_offsets` table and written
//! in the same transaction as the rows. A record at or below its watermark
//! was applied before and is skipped, even when Pulsar delivers it again or
//! the topic holds it twice.
//!
//! Two marks, and which one a record is held to:
//! - its **message id** (ledger, entry, batch index), which the broker
//!   assigns and which grows along a topic partition: at or below the mark,
//!   the broker delivered it again (`redelivered`). No producer can forge it.
//! - its **`sluice.seq`**, only when the runtime vouches that a sluice
//!   source set it ([`SinkRecord::sequence_trusted`]). At or below the mark,
//!   a source published it again after a restart (`republished`). Any other
//!   sequence is ignored: it can neither skip the record nor move the mark,
//!   so a foreign producer cannot make the sink pass over later records.

use std::collections::HashMap;

use sqlx::AnyPool;

use super::sql::{Dialect, TableName};
use super::text;
use crate::api::SinkRecord;

/// The watermark table.
pub(crate) const TABLE: &str = "sluice_offsets";

const COLUMNS: [&str; 5] = ["sink", "topic", "partition", "sequence", "message_id"];

/// The last record applied on one topic partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Mark {
    sequence: Option<u128>,
    message_id: Option<(i64, i64, i64)>,
}

/// The watermarks of one sink, by topic as delivered: a partition of a
/// partitioned topic is a topic of its own (`name-partition-N`).
#[derive(Debug, Default)]
pub(crate) struct Watermarks {
    sink: String,
    marks: HashMap<String, Mark>,
}

/// The partition a delivered topic name carries; `-1` for none.
fn partition(topic: &str) -> i64 {
    topic
        .rsplit_once("-partition-")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(-1)
}

/// `ledger:entry:partition:batch` as (ledger, entry, batch).
fn parse_message_id(text: &str) -> Option<(i64, i64, i64)> {
    let mut parts = text.split(':').map(str::parse::<i64>);
    let (ledger, entry, _, batch) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    parts.next().is_none().then_some((ledger, entry, batch))
}

/// What to do with a record, against the marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Apply it; `trusted` when its sequence may move the mark.
    Apply { trusted: bool },
    /// The broker delivered it again: skip it.
    Redelivered,
    /// A source published it again: skip it.
    Republished,
}

/// Whether a record's `sluice.seq` may be trusted: it has one, and the
/// runtime vouches that a sluice source set it.
pub(crate) fn trusted(record: &SinkRecord) -> bool {
    record.sequence.is_some() && record.sequence_trusted
}

impl Mark {
    fn of(record: &SinkRecord, trusted: bool) -> Self {
        Self {
            sequence: record.sequence.filter(|_| trusted).map(|s| s.0),
            message_id: parse_message_id(&record.message_id),
        }
    }

    fn verdict(&self, record: &SinkRecord) -> Verdict {
        if let (Some(id), Some(mark)) = (parse_message_id(&record.message_id), self.message_id)
            && id <= mark
        {
            return Verdict::Redelivered;
        }
        let trusted = trusted(record);
        if trusted
            && let (Some(seq), Some(mark)) = (record.sequence, self.sequence)
            && seq.0 <= mark
        {
            return Verdict::Republished;
        }
        Verdict::Apply { trusted }
    }

    fn advance(&mut self, other: Self) {
        self.sequence = self.sequence.max(other.sequence);
        self.message_id = self.message_id.max(other.message_id);
    }
}

impl Watermarks {
    /// Create the table if needed and read this sink's marks.
    pub(crate) async fn load(
        pool: &AnyPool,
        dialect: Dialect,
        sink: &str,
    ) -> Result<Self, sqlx::Error> {
        let text = match dialect {
            Dialect::Postgres => "text",
            Dialect::MySql => "VARCHAR(255)",
            Dialect::Sqlite => "TEXT",
        };
        let integer = if dialect == Dialect::Postgres {
            "integer"
        } else {
            "INTEGER"
        };
        let columns: Vec<(String, &str)> = COLUMNS
            .iter()
            .map(|c| {
                (
                    (*c).to_owned(),
                    if *c == "partition" { integer } else { text },
                )
            })
            .collect();
        let key: Vec<String> = COLUMNS[..3].iter().map(|c| (*c).to_owned()).collect();
        let create = dialect.create_table(&table(), &columns, &key);
        // Identifiers are quoted (see `sql`).
        sqlx::query(&create).execute(pool).await?;
        // The partition column is for people reading the table: the topic
        // as delivered already names its partition.
        let select = format!(
            "SELECT {}, {}, {} FROM {} WHERE {} = {}",
            dialect.quote("topic"),
            dialect.quote("sequence"),
            dialect.quote("message_id"),
            dialect.table(&table()),
            dialect.quote("sink"),
            if dialect == Dialect::Postgres {
                "$1"
            } else {
                "?"
            }
        );
        let rows = sqlx::query(&select).bind(sink).fetch_all(pool).await?;
        let mut marks = HashMap::new();
        for row in rows {
            let topic = text::required(&row, 0)?;
            let sequence = text::nullable(&row, 1)?;
            let message_id = text::nullable(&row, 2)?;
            marks.insert(
                topic,
                Mark {
                    sequence: sequence.and_then(|s| s.parse().ok()),
                    message_id: message_id.as_deref().and_then(parse_message_id),
                },
            );
        }
        Ok(Self {
            sink: sink.to_owned(),
            marks,
        })
    }

    /// What to do with `record`.
    #[cfg(test)]
    fn verdict(&self, record: &SinkRecord) -> Verdict {
        self.verdicts(std::slice::from_ref(record))[0]
    }

    /// What to do with each record of a batch, in order: held to the marks
    /// as they stand after the records before it in the batch, so that a
    /// record published again within one batch is skipped too.
    pub(crate) fn verdicts(&self, batch: &[SinkRecord]) -> Vec<Verdict> {
        let mut running: HashMap<&str, Mark> = HashMap::new();
        batch
            .iter()
            .map(|record| {
                let mark = running
                    .entry(record.topic.as_str())
                    .or_insert_with(|| self.marks.get(&record.topic).copied().unwrap_or_default());
                let verdict = mark.verdict(record);
                if let Verdict::Apply { trusted } = verdict {
                    mark.advance(Mark::of(record, trusted));
                }
                verdict
            })
            .collect()
    }

    /// The marks that applying `records` moves to, per topic partition:
    /// message ids always, sequences only where trusted.
    pub(crate) fn after(&self, records: &[&SinkRecord]) -> HashMap<String, Mark> {
        let mut out: HashMap<String, Mark> = HashMap::new();
        for record in records {
            let mark = Mark::of(record, trusted(record));
            match out.get_mut(record.topic.as_str()) {
                Some(m) => m.advance(mark),
                None => {
                    let mut m = self.marks.get(&record.topic).copied().unwrap_or_default();
                    m.advance(mark);
                    out.insert(record.topic.clone(), m);
                }
            }
        }
        out
    }

    /// The statement and values that store `marks`.
    pub(crate) fn upsert(
        &self,
        dialect: Dialect,
        marks: &HashMap<String, Mark>,
    ) -> Option<(String, Vec<Option<String>>)> {
        if marks.is_empty() {
            return None;
        }
        let columns: Vec<String> = COLUMNS.iter().map(|c| (*c).to_owned()).collect();
        let types: Vec<String> = COLUMNS
            .iter()
            .map(|c| if *c == "partition" { "integer" } else { "text" }.to_owned())
            .collect();
        let statement =
            dialect.upsert(&table(), &columns, Some(&types), &columns[..3], marks.len());
        let mut values = Vec::with_capacity(marks.len() * COLUMNS.len());
        for (topic, mark) in marks {
            let partition = partition(topic);
            values.push(Some(self.sink.clone()));
            values.push(Some(topic.clone()));
            values.push(Some(partition.to_string()));
            values.push(mark.sequence.map(|s| s.to_string()));
            values.push(
                mark.message_id
                    .map(|(l, e, b)| format!("{l}:{e}:{}:{b}", partition)),
            );
        }
        Some((statement, values))
    }

    /// Keep `marks` once their transaction has committed.
    pub(crate) fn committed(&mut self, marks: HashMap<String, Mark>) {
        self.marks.extend(marks);
    }
}

fn table() -> TableName {
    TableName {
        schema: None,
        table: TABLE.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Sequence;

    fn record(topic: &str, seq: Option<u128>, id: &str) -> SinkRecord {
        SinkRecord {
            topic: topic.into(),
            sequence: seq.map(Sequence),
            message_id: id.into(),
            sequence_trusted: true,
            ..SinkRecord::default()
        }
    }

    fn foreign(topic: &str, seq: u128, id: &str) -> SinkRecord {
        SinkRecord {
            sequence_trusted: false,
            ..record(topic, Some(seq), id)
        }
    }

    const APPLY: Verdict = Verdict::Apply { trusted: true };

    #[test]
    fn redeliveries_and_republished_records_are_skipped() {
        let mut w = Watermarks::default();
        let marks = w.after(&[&record("t", Some(5), "1:1:-1:-1")]);
        w.committed(marks);
        // The broker's message id decides first.
        assert_eq!(
            w.verdict(&record("t", Some(5), "1:1:-1:-1")),
            Verdict::Redelivered
        );
        assert_eq!(
            w.verdict(&record("t", None, "1:0:-1:-1")),
            Verdict::Redelivered
        );
        // A source's republished sequence, under a new message id.
        assert_eq!(
            w.verdict(&record("t", Some(5), "1:9:-1:-1")),
            Verdict::Republished
        );
        assert_eq!(
            w.verdict(&record("t", Some(4), "1:9:-1:-1")),
            Verdict::Republished
        );
        assert_eq!(w.verdict(&record("t", Some(6), "1:9:-1:-1")), APPLY);
        assert_eq!(
            w.verdict(&record("u", Some(1), "1:0:-1:-1")),
            APPLY,
            "another topic"
        );
        assert_eq!(
            w.verdict(&record("t", None, "1:2:-1:-1")),
            Verdict::Apply { trusted: false }
        );
    }

    #[test]
    fn a_foreign_sequence_neither_skips_nor_moves_the_mark() {
        let mut w = Watermarks::default();
        let marks = w.after(&[&record("t", Some(5), "1:1:-1:-1")]);
        w.committed(marks);
        // GIVEN a foreign producer's record claiming a huge sequence
        let hostile = foreign("t", u128::MAX, "1:2:-1:-1");
        assert_eq!(w.verdict(&hostile), Verdict::Apply { trusted: false });
        let marks = w.after(&[&hostile]);
        w.committed(marks);
        // THEN the source's next records still apply, and a low foreign
        // sequence skips nothing either
        assert_eq!(w.verdict(&record("t", Some(6), "1:3:-1:-1")), APPLY);
        assert_eq!(
            w.verdict(&foreign("t", 1, "1:4:-1:-1")),
            Verdict::Apply { trusted: false }
        );
    }

    #[test]
    fn partitions_keep_their_own_marks() {
        let w = Watermarks::default();
        let a = record("t-partition-0", Some(9), "1:1:0:-1");
        let b = record("t-partition-1", Some(2), "2:1:1:-1");
        let marks = w.after(&[&a, &b]);
        assert_eq!(marks.len(), 2);
        assert_eq!(marks["t-partition-1"].sequence, Some(2));
        assert_eq!((partition("t-partition-1"), partition("t")), (1, -1));
    }
}
