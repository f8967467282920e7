//! Snapshot rows as `op: r` events, written from the rows' text straight
//! into the envelope's bytes.
//!
//! A chunk holds thousands of rows of one table that share everything but
//! their values: topic, `source` block, properties and schema. Building each
//! row as a map of values, then the envelope as a map holding it, then
//! writing both out, spent most of a copy's CPU in allocating and freeing.
//! Here the shared parts are written once per chunk and
//! each row's values are written in place. The bytes are the ones
//! [`record`](super::events::record) makes for the same row: the same
//! conversions, and objects keyed in the order serde_json's map writes them
//! (by name); a test holds the two to that.

use std::sync::Arc;

use super::catalog::{Table, format_lsn};
use super::events::{LSN_PROPERTY, Origin, TXID_PROPERTY, source, write_object, write_value};
use crate::api::{Sequence, SourceRecord};
use crate::debezium::Op;

/// Writes one table's snapshot rows, taken at one point, as records.
pub(crate) struct ReadEvents<'a> {
    table: &'a Table,
    /// Everything after the row: `,"before":null,...,"ts_ms":N}`.
    tail: Vec<u8>,
    topic: String,
    properties: Vec<(String, String)>,
    sequence: Sequence,
    event_time_ms: u64,
    /// The last value's length, to size the next one's buffer.
    width: usize,
}

impl<'a> ReadEvents<'a> {
    pub(crate) fn new(
        prefix: &str,
        db: &str,
        table: &'a Table,
        origin: Origin,
        now_ms: u64,
    ) -> Self {
        let source = source(prefix, db, table, origin);
        let tail = format!(
            ",\"before\":null,\"op\":\"{}\",\"source\":{source},\"ts_ms\":{now_ms}}}",
            Op::Read.code()
        )
        .into_bytes();
        Self {
            table,
            tail,
            topic: table.topic(prefix),
            properties: vec![
                (LSN_PROPERTY.to_owned(), format_lsn(origin.commit_lsn)),
                (TXID_PROPERTY.to_owned(), origin.xid.to_string()),
            ],
            sequence: Sequence::from_parts(origin.commit_lsn, origin.ordinal),
            event_time_ms: origin.commit_ms,
            width: 256,
        }
    }

    /// The record of one row, given its columns' text in table order
    /// (`None` for SQL NULL).
    pub(crate) fn record(&mut self, values: &[Option<&str>]) -> SourceRecord {
        let mut value = Vec::with_capacity(self.width + self.tail.len() + 16);
        value.extend_from_slice(b"{\"after\":");
        self.object(&self.table.by_name, values, &mut value);
        value.extend_from_slice(&self.tail);
        self.width = value.len();
        let mut key = Vec::with_capacity(64);
        self.object(&self.table.key_by_name, values, &mut key);
        SourceRecord {
            topic: Some(self.topic.clone()),
            // Only valid UTF-8 went in: &str values, serde_json's escapes.
            key: Some(String::from_utf8(key).unwrap_or_default()),
            value: Some(value),
            properties: self.properties.clone(),
            event_time_ms: Some(self.event_time_ms),
            sequence: Some(self.sequence),
            schema: Some(Arc::clone(&self.table.event_schema)),
        }
    }

    /// `{"name":value,...}` of the columns `indices`, in that order.
    fn object(&self, indices: &[usize], values: &[Option<&str>], out: &mut Vec<u8>) {
        let table = self.table;
        write_object(table, indices, out, |i, out| {
            match values.get(i).copied().flatten() {
                None => out.extend_from_slice(b"null"),
                Some(text) => write_value(&table.kinds[i], text, out),
            }
        });
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::api::RecordSchema;
    use crate::postgres_cdc::events::record;
    use crate::postgres_cdc::pgoutput::Datum;
    use crate::postgres_cdc::types::Kind;

    pub(crate) fn table(key: Vec<usize>, keyed: bool) -> Table {
        Table {
            schema: "public".into(),
            name: "orders \"x\"".into(),
            columns: vec![
                "zeta".into(),
                "id".into(),
                "Note".into(),
                "paid".into(),
                "total".into(),
                "at".into(),
                "day".into(),
                "tags".into(),
                "ratio".into(),
                "blob".into(),
                "doc".into(),
                "région".into(),
            ],
            kinds: vec![
                Kind::Text,
                Kind::Int,
                Kind::Text,
                Kind::Bool,
                Kind::Decimal,
                Kind::TimestampTz,
                Kind::Date,
                Kind::Array(Box::new(Kind::Int)),
                Kind::Float,
                Kind::Bytea,
                Kind::Json,
                Kind::Text,
            ],
            key,
            keyed,
            event_schema: Arc::new(RecordSchema {
                key: String::new(),
                value: String::new(),
            }),
            by_name: Vec::new(),
            key_by_name: Vec::new(),
        }
        .ordered()
    }

    pub(crate) fn rows() -> Vec<Vec<Option<&'static str>>> {
        vec![
            vec![
                Some("z"),
                Some("42"),
                Some("a \"quoted\"\nline\u{1}é🙂"),
                Some("t"),
                Some("12.50"),
                Some("2026-01-01 10:00:00.5+00"),
                Some("2026-12-02"),
                Some("{1,NULL,3}"),
                Some("0.25"),
                Some("\\xdeadbeef"),
                Some("{\"a\": [1, 2]}"),
                Some("ü"),
            ],
            vec![
                None,
                Some("-9223372036854775808"),
                None,
                Some("f"),
                Some("NaN"),
                Some("infinity"),
                Some("5874897-12-31"),
                Some("{}"),
                Some("Infinity"),
                Some("\\x"),
                Some("null"),
                None,
            ],
            vec![
                Some(""),
                Some("not a number"),
                Some("\\"),
                Some("maybe"),
                Some("-0.000"),
                Some("garbage"),
                Some("1999-01-08 BC"),
                Some("{{1,2},{3,4}}"),
                Some("1e308"),
                Some("\\xzz"),
                Some(""),
                Some("\u{7f}"),
            ],
        ]
    }

    #[test]
    fn a_row_written_in_place_equals_the_event_built_from_values() {
        for (key, keyed) in [
            (vec![1], true),
            (vec![1, 0], true),
            ((0..12).collect(), false),
        ] {
            let t = table(key, keyed);
            for last in [false, true] {
                let origin = Origin {
                    commit_lsn: 0x2_0000_00a0,
                    lsn: 0x2_0000_00a0,
                    xid: 0,
                    commit_ms: 1_700_000_000_000,
                    ordinal: 0,
                    snapshot: Some(last),
                };
                let mut events = ReadEvents::new("shop", "orders", &t, origin, 1_800_000_000_000);
                for values in rows() {
                    let datums: Vec<Datum> = values
                        .iter()
                        .map(|v| match v {
                            Some(text) => Datum::Text(text.as_bytes().to_vec()),
                            None => Datum::Null,
                        })
                        .collect();
                    let expected = record(
                        "shop",
                        "orders",
                        &t,
                        Op::Read,
                        None,
                        Some(&datums),
                        origin,
                        1_800_000_000_000,
                    );
                    let made = events.record(&values);
                    assert_eq!(
                        String::from_utf8(made.value.clone().unwrap()).unwrap(),
                        String::from_utf8(expected.value.clone().unwrap()).unwrap()
                    );
                    assert_eq!(made.key, expected.key);
                    assert_eq!(made.topic, expected.topic);
                    assert_eq!(made.properties, expected.properties);
                    assert_eq!(made.sequence, expected.sequence);
                    assert_eq!(made.event_time_ms, expected.event_time_ms);
                }
            }
        }
    }
}
