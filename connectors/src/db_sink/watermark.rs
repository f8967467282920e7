//! The EFFECTIVELY_ONCE watermark: per sink and topic partition, the last
//! record applied, kept in the target and written in the same transaction
//! as the rows. A record at or below its watermark was applied before and is
//! skipped, even when Pulsar delivers it again or the topic holds it twice.
//!
//! Two marks, and which one a record is held to:
//! - its **message id** (ledger, entry, batch index), which the broker
//!   assigns and which grows along a topic partition: at or below the mark,
//!   the broker delivered it again (`redelivered`). No producer can forge
//!   it. Kept in `sluice_offsets`, one row per topic partition.
//! - its **`sluice.seq`, against the last one of the same producer**: at or
//!   below it, that producer published the record again, as a source does
//!   after a restart (`republished`). A producer is named by the broker's
//!   record of it; sluice's sources keep one name across restarts. Another
//!   producer's sequence, however large, moves only its own mark, so no
//!   producer can make the sink pass over another's records (decision
//!   0016). Kept in `sluice_sequences`, one row per topic partition and
//!   producer, at most [`MAX_PRODUCERS`] per topic partition.

use std::collections::HashMap;

use sqlx::{AnyConnection, AnyPool};
use tracing::warn;

use super::sql::{Dialect, TableName};
use super::text;
use crate::api::{MessageId, SinkRecord};

/// The message-id watermark table.
pub(crate) const TABLE: &str = "sluice_offsets";
/// The per-producer sequence table.
pub(crate) const SEQUENCES: &str = "sluice_sequences";

const COLUMNS: [&str; 5] = ["sink", "topic", "partition", "sequence", "message_id"];
const SEQUENCE_COLUMNS: [&str; 5] = ["sink", "topic", "producer", "sequence", "message_id"];

/// Producers whose sequences are kept per topic partition, at most. A new
/// producer past it takes the place of the one that published least
/// recently, which then can no longer have its republished records skipped.
pub(crate) const MAX_PRODUCERS: usize = 64;

/// A message id without its partition: (ledger, entry, batch index).
type Id = (i64, i64, i64);

/// A message id as kept in a watermark table (`ledger:entry:partition:batch`)
/// as (ledger, entry, batch).
fn parse_message_id(text: &str) -> Option<Id> {
    text.parse::<MessageId>().ok().map(|m| id(&m))
}

/// A message id without its partition: watermarks are kept per topic
/// partition already.
fn id(m: &MessageId) -> Id {
    (m.ledger as i64, m.entry as i64, i64::from(m.batch))
}

/// The partition a delivered topic name carries; `-1` for none.
fn partition(topic: &str) -> i64 {
    topic
        .rsplit_once("-partition-")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(-1)
}

/// The last sequence a producer published on a topic partition, and the
/// message id it came with (which orders producers by how recently they
/// published).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seq {
    sequence: u128,
    message_id: Id,
}

/// The marks of one topic partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Marks {
    message_id: Option<Id>,
    producers: HashMap<String, Seq>,
}

/// What to do with a record, against the marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Apply it.
    Apply,
    /// The broker delivered it again: skip it.
    Redelivered,
    /// Its producer published it again: skip it.
    Republished,
}

/// The producer whose sequences a record is held to, when it has a
/// sequence and a name that can be kept.
fn tracked(record: &SinkRecord) -> Option<(&str, u128)> {
    record
        .origin
        .held()
        .map(|(producer, seq)| (producer, seq.0))
}

impl Marks {
    fn verdict(&self, record: &SinkRecord) -> Verdict {
        let id = Some(id(&record.message_id));
        if let (Some(id), Some(mark)) = (id, self.message_id)
            && id <= mark
        {
            return Verdict::Redelivered;
        }
        if let Some((producer, seq)) = tracked(record)
            && self
                .producers
                .get(producer)
                .is_some_and(|m| seq <= m.sequence)
        {
            return Verdict::Republished;
        }
        Verdict::Apply
    }

    /// Move the marks past an applied record. A new producer past
    /// [`MAX_PRODUCERS`] takes the place of the least recent one, returned.
    fn advance(&mut self, record: &SinkRecord) -> Option<String> {
        let id = Some(id(&record.message_id));
        self.message_id = self.message_id.max(id);
        let ((producer, sequence), message_id) = tracked(record).zip(id)?;
        if let Some(mark) = self.producers.get_mut(producer) {
            *mark = Seq {
                sequence: sequence.max(mark.sequence),
                message_id: message_id.max(mark.message_id),
            };
            return None;
        }
        let evicted = (self.producers.len() >= MAX_PRODUCERS)
            .then(|| {
                self.producers
                    .iter()
                    .min_by_key(|(_, m)| m.message_id)
                    .map(|(p, _)| p.clone())
            })
            .flatten();
        if let Some(old) = &evicted {
            self.producers.remove(old);
        }
        self.producers.insert(
            producer.to_owned(),
            Seq {
                sequence,
                message_id,
            },
        );
        evicted
    }
}

/// The watermarks of one sink, by topic as delivered: a partition of a
/// partitioned topic is a topic of its own (`name-partition-N`).
#[derive(Debug, Default)]
pub(crate) struct Watermarks {
    sink: String,
    marks: HashMap<String, Marks>,
}

/// The marks a batch moves to, to store with its rows: per topic
/// partition, and the producers that no longer have a mark there.
#[derive(Debug, Default)]
pub(crate) struct Moved {
    marks: HashMap<String, Marks>,
    evicted: Vec<(String, String)>,
}

impl Watermarks {
    /// Create the tables if needed and read this sink's marks.
    pub(crate) async fn load(
        pool: &AnyPool,
        dialect: Dialect,
        sink: &str,
    ) -> Result<Self, sqlx::Error> {
        // MySQL and MariaDB compare text by its collation: a case-blind
        // one, or any PAD SPACE one (`utf8mb4_bin` too), takes `Src` or
        // `src ` for `src`, so a producer's look-alike name would land on
        // its row. Names are kept as bytes there.
        let (text, name, integer) = match dialect {
            Dialect::Postgres => ("text", "text", "integer"),
            Dialect::MySql => ("VARCHAR(255)", "VARBINARY(255)", "INTEGER"),
            Dialect::Sqlite => ("TEXT", "TEXT", "INTEGER"),
        };
        let typed = |columns: &[&str]| -> Vec<(String, &str)> {
            columns
                .iter()
                .map(|c| {
                    let ty = match *c {
                        "partition" => integer,
                        "sink" | "topic" | "producer" => name,
                        _ => text,
                    };
                    ((*c).to_owned(), ty)
                })
                .collect()
        };
        let key = |columns: &[&str]| -> Vec<String> {
            columns[..3].iter().map(|c| (*c).to_owned()).collect()
        };
        // Identifiers are quoted (see `sql`).
        for (table_name, columns) in [(TABLE, &COLUMNS), (SEQUENCES, &SEQUENCE_COLUMNS)] {
            let create = dialect.create_table(&table(table_name), &typed(columns), &key(columns));
            sqlx::query(&create).execute(pool).await?;
            if dialect == Dialect::MySql {
                names_as_bytes(pool, table_name).await?;
            }
        }
        let mut conn = pool.acquire().await?;
        let marks = read_marks(&mut conn, dialect, sink, None).await?;
        Ok(Self {
            sink: sink.to_owned(),
            marks,
        })
    }

    /// Read this sink's marks of `topics` again, inside the batch's
    /// transaction, their rows locked where the database can: another
    /// process of the sink may have moved them since this one read them (a
    /// partition that moved between processes, whose last batch the other
    /// committed and the broker delivers again), and another writer of the
    /// same partition waits until this transaction ends. Whether any of
    /// them differed from what this process held.
    pub(crate) async fn refresh(
        &mut self,
        conn: &mut AnyConnection,
        dialect: Dialect,
        topics: &[&str],
    ) -> Result<bool, sqlx::Error> {
        if topics.is_empty() {
            return Ok(false);
        }
        let fresh = read_marks(conn, dialect, &self.sink, Some(topics)).await?;
        let changed = topics.iter().any(|t| self.marks.get(*t) != fresh.get(*t));
        for topic in topics {
            self.marks.remove(*topic);
        }
        self.marks.extend(fresh);
        Ok(changed)
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
        let mut running: HashMap<&str, Marks> = HashMap::new();
        batch
            .iter()
            .map(|record| {
                let marks = running
                    .entry(record.topic.as_str())
                    .or_insert_with(|| self.marks.get(&record.topic).cloned().unwrap_or_default());
                let verdict = marks.verdict(record);
                if verdict == Verdict::Apply {
                    marks.advance(record);
                }
                verdict
            })
            .collect()
    }

    /// The marks that applying `records` moves to.
    pub(crate) fn after(&self, records: &[&SinkRecord]) -> Moved {
        let mut moved = Moved::default();
        for record in records {
            let marks = moved
                .marks
                .entry(record.topic.clone())
                .or_insert_with(|| self.marks.get(&record.topic).cloned().unwrap_or_default());
            if let Some(producer) = marks.advance(record) {
                moved.evicted.push((record.topic.clone(), producer));
            }
        }
        // A producer forgotten and then seen again in the same batch keeps
        // its new mark.
        let marks = &moved.marks;
        moved
            .evicted
            .retain(|(topic, producer)| !marks[topic].producers.contains_key(producer));
        moved
    }

    /// The statements and values that store `moved`.
    pub(crate) fn statements(
        &self,
        dialect: Dialect,
        moved: &Moved,
    ) -> Vec<(String, Vec<Option<String>>)> {
        let mut out = Vec::new();
        if moved.marks.is_empty() {
            return out;
        }
        let columns: Vec<String> = COLUMNS.iter().map(|c| (*c).to_owned()).collect();
        let types: Vec<String> = COLUMNS
            .iter()
            .map(|c| if *c == "partition" { "integer" } else { "text" }.to_owned())
            .collect();
        let statement = dialect.upsert(
            &table(TABLE),
            &columns,
            Some(&types),
            &columns[..3],
            moved.marks.len(),
        );
        let mut values = Vec::with_capacity(moved.marks.len() * COLUMNS.len());
        for (topic, marks) in &moved.marks {
            let partition = partition(topic);
            values.push(Some(self.sink.clone()));
            values.push(Some(topic.clone()));
            values.push(Some(partition.to_string()));
            values.push(None);
            values.push(marks.message_id.map(|id| id_text(id, partition)));
        }
        out.push((statement, values));
        let mut values = Vec::new();
        let mut rows = 0;
        for (topic, marks) in &moved.marks {
            let before = self.marks.get(topic);
            for (producer, seq) in &marks.producers {
                if before.and_then(|b| b.producers.get(producer)) == Some(seq) {
                    continue;
                }
                rows += 1;
                values.push(Some(self.sink.clone()));
                values.push(Some(topic.clone()));
                values.push(Some(producer.clone()));
                values.push(Some(seq.sequence.to_string()));
                values.push(Some(id_text(seq.message_id, partition(topic))));
            }
        }
        if rows > 0 {
            let columns: Vec<String> = SEQUENCE_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
            let types = vec!["text".to_owned(); columns.len()];
            let statement = dialect.upsert(
                &table(SEQUENCES),
                &columns,
                Some(&types),
                &columns[..3],
                rows,
            );
            out.push((statement, values));
        }
        for (topic, producer) in &moved.evicted {
            let p = |n: usize| {
                if dialect == Dialect::Postgres {
                    format!("${n}")
                } else {
                    "?".to_owned()
                }
            };
            let statement = format!(
                "DELETE FROM {} WHERE {} = {} AND {} = {} AND {} = {}",
                dialect.table(&table(SEQUENCES)),
                dialect.quote("sink"),
                p(1),
                dialect.quote("topic"),
                p(2),
                dialect.quote("producer"),
                p(3)
            );
            let values = vec![
                Some(self.sink.clone()),
                Some(topic.clone()),
                Some(producer.clone()),
            ];
            out.push((statement, values));
        }
        out
    }

    /// Keep `moved` once its transaction has committed.
    pub(crate) fn committed(&mut self, moved: Moved) {
        for (topic, producer) in &moved.evicted {
            warn!(topic = %topic, producer = %producer, limit = MAX_PRODUCERS,
                "a topic partition has more producers with sequences than the sink keeps: the one that published least recently is forgotten, and records it publishes again would be applied again");
        }
        self.marks.extend(moved.marks);
    }
}

/// A sink's marks as stored: of every topic, or of `topics` only, their
/// rows then locked for the transaction `conn` is in (but on SQLite, whose
/// writer holds the whole file).
async fn read_marks(
    conn: &mut AnyConnection,
    dialect: Dialect,
    sink: &str,
    topics: Option<&[&str]>,
) -> Result<HashMap<String, Marks>, sqlx::Error> {
    let query = |table_name: &str, columns: &[&str]| {
        let mut q = select(dialect, table_name, columns);
        if let Some(topics) = topics {
            let marks: Vec<String> = (2..2 + topics.len())
                .map(|n| {
                    if dialect == Dialect::Postgres {
                        format!("${n}")
                    } else {
                        "?".to_owned()
                    }
                })
                .collect();
            q.push_str(&format!(
                " AND {} IN ({})",
                dialect.quote("topic"),
                marks.join(", ")
            ));
            if dialect != Dialect::Sqlite {
                q.push_str(" FOR UPDATE");
            }
        }
        q
    };
    fn bound<'q>(
        statement: &'q str,
        sink: &str,
        topics: Option<&[&str]>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let mut q = sqlx::query(statement).bind(sink.to_owned());
        for topic in topics.unwrap_or_default() {
            q = q.bind((*topic).to_owned());
        }
        q
    }
    let mut marks: HashMap<String, Marks> = HashMap::new();
    // The `sequence` column of `sluice_offsets` is no longer read: a
    // sequence counts only against its own producer's.
    let statement = query(TABLE, &["topic", "message_id"]);
    for row in bound(&statement, sink, topics)
        .fetch_all(&mut *conn)
        .await?
    {
        let topic = text::required(&row, 0)?;
        let id = text::nullable(&row, 1)?;
        marks.entry(topic).or_default().message_id = id.as_deref().and_then(parse_message_id);
    }
    let statement = query(SEQUENCES, &["topic", "producer", "sequence", "message_id"]);
    for row in bound(&statement, sink, topics)
        .fetch_all(&mut *conn)
        .await?
    {
        let topic = text::required(&row, 0)?;
        let producer = text::required(&row, 1)?;
        let sequence = text::required(&row, 2)?.parse().ok();
        let message_id = parse_message_id(&text::required(&row, 3)?);
        if let (Some(sequence), Some(message_id)) = (sequence, message_id) {
            marks.entry(topic).or_default().producers.insert(
                producer,
                Seq {
                    sequence,
                    message_id,
                },
            );
        }
    }
    Ok(marks)
}

/// Turn the name columns of a table that an earlier version made as text
/// (compared by collation) into bytes, on MySQL and MariaDB.
async fn names_as_bytes(pool: &AnyPool, table_name: &str) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? \
         AND COLUMN_NAME IN ('sink', 'topic', 'producer') AND DATA_TYPE <> 'varbinary'",
    )
    .bind(table_name)
    .fetch_all(pool)
    .await?;
    let mut columns = Vec::with_capacity(rows.len());
    for row in &rows {
        columns.push(text::required(row, 0)?);
    }
    if columns.is_empty() {
        return Ok(());
    }
    let dialect = Dialect::MySql;
    let changes: Vec<String> = columns
        .iter()
        .map(|c| format!("MODIFY {} VARBINARY(255) NOT NULL", dialect.quote(c)))
        .collect();
    sqlx::query(&format!(
        "ALTER TABLE {} {}",
        dialect.table(&table(table_name)),
        changes.join(", ")
    ))
    .execute(pool)
    .await?;
    tracing::info!(table = table_name, columns = ?columns, "the watermark table's name columns now hold bytes, compared exactly");
    Ok(())
}

/// A message id as text, `ledger:entry:partition:batch`.
fn id_text((ledger, entry, batch): Id, partition: i64) -> String {
    format!("{ledger}:{entry}:{partition}:{batch}")
}

/// `SELECT columns FROM table WHERE sink = <the one parameter>`.
fn select(dialect: Dialect, name: &str, columns: &[&str]) -> String {
    let columns: Vec<String> = columns.iter().map(|c| dialect.quote(c)).collect();
    format!(
        "SELECT {} FROM {} WHERE {} = {}",
        columns.join(", "),
        dialect.table(&table(name)),
        dialect.quote("sink"),
        if dialect == Dialect::Postgres {
            "$1"
        } else {
            "?"
        }
    )
}

fn table(name: &str) -> TableName {
    TableName {
        schema: None,
        table: name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Origin, Sequence};

    fn record(topic: &str, seq: Option<u128>, id: &str) -> SinkRecord {
        from("source", topic, seq, id)
    }

    fn from(producer: &str, topic: &str, seq: Option<u128>, id: &str) -> SinkRecord {
        SinkRecord {
            topic: topic.into(),
            origin: Origin::new(producer, seq.map(Sequence)),
            message_id: id.parse().unwrap(),
            ..SinkRecord::default()
        }
    }

    fn commit(w: &mut Watermarks, records: &[&SinkRecord]) {
        let moved = w.after(records);
        w.committed(moved);
    }

    #[test]
    fn redeliveries_and_republished_records_are_skipped() {
        let mut w = Watermarks::default();
        commit(&mut w, &[&record("t", Some(5), "1:1:-1:-1")]);
        // The broker's message id decides first.
        assert_eq!(
            w.verdict(&record("t", Some(5), "1:1:-1:-1")),
            Verdict::Redelivered
        );
        assert_eq!(
            w.verdict(&record("t", None, "1:0:-1:-1")),
            Verdict::Redelivered
        );
        // The producer's republished sequence, under a new message id.
        assert_eq!(
            w.verdict(&record("t", Some(5), "1:9:-1:-1")),
            Verdict::Republished
        );
        assert_eq!(
            w.verdict(&record("t", Some(4), "1:9:-1:-1")),
            Verdict::Republished
        );
        assert_eq!(
            w.verdict(&record("t", Some(6), "1:9:-1:-1")),
            Verdict::Apply
        );
        assert_eq!(
            w.verdict(&record("u", Some(1), "1:0:-1:-1")),
            Verdict::Apply,
            "another topic"
        );
        assert_eq!(w.verdict(&record("t", None, "1:2:-1:-1")), Verdict::Apply);
    }

    #[test]
    fn one_producers_sequence_never_skips_anothers_records() {
        let mut w = Watermarks::default();
        commit(&mut w, &[&record("t", Some(5), "1:1:-1:-1")]);
        // GIVEN another producer's record claiming the largest sequence,
        // under a name like a sluice source's
        let hostile = from("sluice-x", "t", Some(u128::MAX), "1:2:-1:-1");
        assert_eq!(w.verdict(&hostile), Verdict::Apply);
        commit(&mut w, &[&hostile]);
        // THEN the source's next records still apply, within a batch too
        let next = [
            record("t", Some(6), "1:3:-1:-1"),
            record("t", Some(7), "1:4:-1:-1"),
        ];
        assert_eq!(w.verdicts(&next), [Verdict::Apply, Verdict::Apply]);
        // AND the impostor's own stream is held to its own mark
        assert_eq!(
            w.verdict(&from("sluice-x", "t", Some(1), "1:5:-1:-1")),
            Verdict::Republished
        );
    }

    #[test]
    fn a_producer_past_the_limit_replaces_the_least_recent_one() {
        let mut w = Watermarks::default();
        let records: Vec<SinkRecord> = (0..MAX_PRODUCERS as i64)
            .map(|i| from(&format!("p{i}"), "t", Some(10), &format!("1:{i}:-1:-1")))
            .collect();
        commit(&mut w, &records.iter().collect::<Vec<_>>());
        let newcomer = from("new", "t", Some(1), "2:0:-1:-1");
        let moved = w.after(&[&newcomer]);
        assert_eq!(moved.evicted, [("t".to_owned(), "p0".to_owned())]);
        let statements = w.statements(Dialect::Postgres, &moved);
        assert_eq!(statements.len(), 3, "marks, the newcomer, the eviction");
        w.committed(moved);
        assert_eq!(
            w.verdict(&from("p1", "t", Some(10), "3:0:-1:-1")),
            Verdict::Republished
        );
        assert_eq!(
            w.verdict(&from("p0", "t", Some(10), "3:0:-1:-1")),
            Verdict::Apply,
            "forgotten"
        );
    }

    #[test]
    fn a_producer_forgotten_and_seen_again_in_one_batch_keeps_its_mark() {
        let mut w = Watermarks::default();
        let records: Vec<SinkRecord> = (0..MAX_PRODUCERS as i64)
            .map(|i| from(&format!("p{i}"), "t", Some(10), &format!("1:{i}:-1:-1")))
            .collect();
        commit(&mut w, &records.iter().collect::<Vec<_>>());
        // GIVEN a batch where a newcomer takes p0's place, then p0 publishes
        // again and takes p1's
        let newcomer = from("new", "t", Some(1), "2:0:-1:-1");
        let back = from("p0", "t", Some(11), "2:1:-1:-1");
        let moved = w.after(&[&newcomer, &back]);
        // THEN only p1 is forgotten: deleting p0's row would lose its mark
        assert_eq!(moved.evicted, [("t".to_owned(), "p1".to_owned())]);
        w.committed(moved);
        assert_eq!(
            w.verdict(&from("p0", "t", Some(11), "3:0:-1:-1")),
            Verdict::Republished
        );
    }

    #[test]
    fn partitions_keep_their_own_marks() {
        let w = Watermarks::default();
        let a = record("t-partition-0", Some(9), "1:1:0:-1");
        let b = record("t-partition-1", Some(2), "2:1:1:-1");
        let moved = w.after(&[&a, &b]);
        assert_eq!(moved.marks.len(), 2);
        assert_eq!(moved.marks["t-partition-1"].producers["source"].sequence, 2);
        assert_eq!((partition("t-partition-1"), partition("t")), (1, -1));
    }
}
