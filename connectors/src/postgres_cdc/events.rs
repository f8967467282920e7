//! Debezium change events: the key, the envelope and the properties of one
//! record, built from a decoded row.

use std::sync::Arc;

use super::catalog::{Table, format_lsn};
use super::pgoutput::Datum;
use super::types::{Kind, convert};
use crate::api::{Sequence, SourceRecord};
pub(crate) use crate::debezium::Op;
use crate::debezium::UNAVAILABLE;

/// The property holding the commit LSN of the source transaction.
pub const LSN_PROPERTY: &str = "sluice.lsn";
/// The property holding the source transaction id.
pub const TXID_PROPERTY: &str = "sluice.txid";

/// Microseconds between 1970-01-01 and Postgres's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Postgres time (microseconds since 2000-01-01) as Unix milliseconds.
pub(crate) fn pg_time_to_unix_ms(micros: i64) -> u64 {
    u64::try_from((micros + PG_EPOCH_MICROS) / 1000).unwrap_or(0)
}

/// Where a change came from: the source transaction and, for a snapshot,
/// whether the row is the snapshot's last.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub(crate) commit_lsn: u64,
    /// The LSN of the change itself (`source.lsn`).
    pub(crate) lsn: u64,
    pub(crate) xid: u32,
    pub(crate) commit_ms: u64,
    pub(crate) ordinal: u64,
    /// `None` when streaming, `Some(last)` during a snapshot.
    pub(crate) snapshot: Option<bool>,
}

/// An event's `source` block: where the change came from. Its fields are
/// declared in the order serde_json's map writes keys (by name), so an
/// event written from it has the bytes of one built as a map.
#[derive(serde::Serialize)]
struct SourceBlock<'a> {
    connector: &'static str,
    db: &'a str,
    lsn: u64,
    name: &'a str,
    schema: &'a str,
    snapshot: &'static str,
    table: &'a str,
    ts_ms: u64,
    #[serde(rename = "txId")]
    tx_id: u32,
    version: &'static str,
}

impl<'a> SourceBlock<'a> {
    fn new(prefix: &'a str, db: &'a str, table: &'a Table, origin: Origin) -> Self {
        Self {
            connector: "postgresql",
            db,
            lsn: origin.lsn,
            name: prefix,
            schema: &table.schema,
            snapshot: match origin.snapshot {
                None => "false",
                Some(true) => "last",
                Some(false) => "true",
            },
            table: &table.name,
            ts_ms: origin.commit_ms,
            tx_id: origin.xid,
            version: concat!("sluice-", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// An event's `source` block as JSON text.
pub(crate) fn source(prefix: &str, db: &str, table: &Table, origin: Origin) -> String {
    let mut out = Vec::with_capacity(192);
    write_json(&SourceBlock::new(prefix, db, table, origin), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Whether two rows differ in their key columns, as their events would
/// show them.
pub(crate) fn key_changed(table: &Table, before: &[Datum], after: &[Datum]) -> bool {
    let mut a = Vec::with_capacity(64);
    let mut b = Vec::with_capacity(64);
    write_row(table, &table.key_by_name, before, &mut a);
    write_row(table, &table.key_by_name, after, &mut b);
    a != b
}

/// One Debezium change event as a source record, written from the rows'
/// datums straight into the envelope's bytes: no map of values is built
/// per row (`read_events` does the same for snapshot rows).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    prefix: &str,
    db: &str,
    table: &Table,
    op: Op,
    before: Option<&[Datum]>,
    after: Option<&[Datum]>,
    origin: Origin,
    now_ms: u64,
) -> SourceRecord {
    let width: usize = [before, after]
        .iter()
        .flatten()
        .map(|datums| datums.iter().map(text_len).sum::<usize>() + 8 * datums.len())
        .sum();
    let mut value = Vec::with_capacity(width + 256);
    let row_or_null = |datums: Option<&[Datum]>, out: &mut Vec<u8>| match datums {
        Some(datums) => write_row(table, &table.by_name, datums, out),
        None => out.extend_from_slice(b"null"),
    };
    value.extend_from_slice(b"{\"after\":");
    row_or_null(after, &mut value);
    value.extend_from_slice(b",\"before\":");
    row_or_null(before, &mut value);
    value.extend_from_slice(b",\"op\":\"");
    value.extend_from_slice(op.code().as_bytes());
    value.extend_from_slice(b"\",\"source\":");
    write_json(&SourceBlock::new(prefix, db, table, origin), &mut value);
    value.extend_from_slice(b",\"ts_ms\":");
    write_json(&now_ms, &mut value);
    value.push(b'}');
    let key = after.or(before).map(|datums| {
        let mut key = Vec::with_capacity(64);
        write_row(table, &table.key_by_name, datums, &mut key);
        // Only valid UTF-8 went in: names, and serde_json's output.
        String::from_utf8(key).unwrap_or_default()
    });
    SourceRecord {
        topic: Some(table.topic(prefix)),
        key,
        value: Some(value),
        properties: vec![
            (LSN_PROPERTY.to_owned(), format_lsn(origin.commit_lsn)),
            (TXID_PROPERTY.to_owned(), origin.xid.to_string()),
        ],
        event_time_ms: Some(origin.commit_ms),
        sequence: Some(Sequence::from_parts(origin.commit_lsn, origin.ordinal)),
        schema: Some(Arc::clone(&table.event_schema)),
    }
}

/// The length of a datum's text, to size an event's buffer.
fn text_len(datum: &Datum) -> usize {
    match datum {
        Datum::Text(bytes) | Datum::Binary(bytes) => bytes.len(),
        Datum::Null | Datum::Unchanged => 0,
    }
}

/// `{"name":value,...}` of a row's columns `indices`: a NULL as `null`,
/// an unchanged TOAST value as Debezium's placeholder, text that is not
/// UTF-8 as `null`, and the rest as [`write_value`] converts it.
fn write_row(table: &Table, indices: &[usize], datums: &[Datum], out: &mut Vec<u8>) {
    write_object(table, indices, out, |i, out| match datums.get(i) {
        None | Some(Datum::Null) => out.extend_from_slice(b"null"),
        Some(Datum::Unchanged) => write_json(UNAVAILABLE, out),
        Some(Datum::Text(bytes) | Datum::Binary(bytes)) => match std::str::from_utf8(bytes) {
            Ok(text) => write_value(&table.kinds[i], text, out),
            Err(_) => out.extend_from_slice(b"null"),
        },
    });
}

/// `{"name":value,...}` of the table's columns `indices`, in that order,
/// each value written by `value(column index, out)`.
pub(crate) fn write_object(
    table: &Table,
    indices: &[usize],
    out: &mut Vec<u8>,
    mut value: impl FnMut(usize, &mut Vec<u8>),
) {
    out.push(b'{');
    for (n, &i) in indices.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_json(table.columns[i].as_str(), out);
        out.push(b':');
        value(i, out);
    }
    out.push(b'}');
}

/// `value` as JSON, appended to `out`.
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing into a Vec fails only for a value that cannot be JSON, which
    // none of these is.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// A column's text as the JSON value [`convert`] makes of it, written
/// without building the value for the common kinds.
pub(crate) fn write_value(kind: &Kind, text: &str, out: &mut Vec<u8>) {
    match kind {
        Kind::Decimal | Kind::Text | Kind::Json => write_json(text, out),
        Kind::Int => match text.parse::<i64>() {
            Ok(n) => write_json(&n, out),
            Err(_) => write_json(text, out),
        },
        Kind::Bool => match text {
            "t" | "true" => out.extend_from_slice(b"true"),
            "f" | "false" => out.extend_from_slice(b"false"),
            _ => write_json(text, out),
        },
        _ => write_json(&convert(kind, text), out),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::api::RecordSchema;
    use crate::postgres_cdc::read_events::tests::{rows, table};

    fn orders() -> Table {
        Table {
            schema: "public".into(),
            name: "orders".into(),
            columns: vec!["id".into(), "note".into(), "total".into()],
            kinds: vec![Kind::Int, Kind::Text, Kind::Decimal],
            key: vec![0],
            keyed: true,
            event_schema: Arc::new(RecordSchema {
                key: String::new(),
                value: String::new(),
            }),
            by_name: Vec::new(),
            key_by_name: Vec::new(),
        }
        .ordered()
    }

    /// A row as a map of converted values: the shape events had when they
    /// were built from values, which the bytes written in place must keep.
    fn row(table: &Table, datums: &[Datum]) -> Value {
        let mut map = Map::new();
        for (i, name) in table.columns.iter().enumerate() {
            let value = match datums.get(i) {
                None | Some(Datum::Null) => Value::Null,
                Some(Datum::Unchanged) => Value::String(UNAVAILABLE.to_owned()),
                Some(Datum::Text(bytes) | Datum::Binary(bytes)) => {
                    match std::str::from_utf8(bytes) {
                        Ok(text) => convert(&table.kinds[i], text),
                        Err(_) => Value::Null,
                    }
                }
            };
            map.insert(name.clone(), value);
        }
        Value::Object(map)
    }

    /// The event's value and key, built as maps and written by serde_json.
    fn built(
        table: &Table,
        op: Op,
        before: Option<&[Datum]>,
        after: Option<&[Datum]>,
        origin: Origin,
    ) -> (String, Option<String>) {
        let before = before.map(|d| row(table, d));
        let after = after.map(|d| row(table, d));
        let key = after.as_ref().or(before.as_ref()).map(|r| {
            let key: Map<String, Value> = table
                .key
                .iter()
                .map(|&i| (table.columns[i].clone(), r[&table.columns[i]].clone()))
                .collect();
            Value::Object(key).to_string()
        });
        let source: Value = serde_json::from_str(&source("shop", "orders", table, origin)).unwrap();
        let value = json!({
            "before": before,
            "after": after,
            "source": source,
            "op": op.code(),
            "ts_ms": 1_800_000_000_000u64,
        });
        (value.to_string(), key)
    }

    fn origin(snapshot: Option<bool>) -> Origin {
        Origin {
            commit_lsn: 0x1_0000_0010,
            lsn: 0x1_0000_0008,
            xid: 42,
            commit_ms: 1000,
            ordinal: 3,
            snapshot,
        }
    }

    #[test]
    fn an_update_event_has_the_debezium_shape() {
        let t = orders();
        let before = [
            Datum::Text(b"7".to_vec()),
            Datum::Null,
            Datum::Text(b"1.50".to_vec()),
        ];
        let after = [
            Datum::Text(b"7".to_vec()),
            Datum::Unchanged,
            Datum::Text(b"2.00".to_vec()),
        ];
        let r = record(
            "retail",
            "orders",
            &t,
            Op::Update,
            Some(&before),
            Some(&after),
            origin(None),
            2000,
        );
        assert_eq!(r.topic.as_deref(), Some("retail.public.orders"));
        assert_eq!(r.key.as_deref(), Some("{\"id\":7}"));
        assert_eq!(r.sequence, Some(Sequence::from_parts(0x1_0000_0010, 3)));
        assert_eq!(
            r.properties[0],
            ("sluice.lsn".to_owned(), "1/10".to_owned())
        );
        let v: Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        assert_eq!(v["op"], "u");
        assert_eq!(v["before"]["total"], "1.50");
        assert_eq!(v["after"]["note"], UNAVAILABLE);
        assert_eq!(v["source"]["table"], "orders");
        assert_eq!(v["source"]["snapshot"], "false");
        assert_eq!(v["source"]["txId"], 42);
        assert_eq!(v["ts_ms"], 2000);
    }

    #[test]
    fn an_event_written_in_place_equals_the_event_built_from_values() {
        let datums = |values: &[Option<&str>]| -> Vec<Datum> {
            values
                .iter()
                .map(|v| match v {
                    Some(text) => Datum::Text(text.as_bytes().to_vec()),
                    None => Datum::Null,
                })
                .collect()
        };
        let mut odd = datums(&rows()[0]);
        odd[2] = Datum::Unchanged;
        odd[0] = Datum::Text(vec![0xff, 0xfe]);
        odd.pop();
        for (key, keyed) in [
            (vec![1], true),
            (vec![1, 0], true),
            ((0..12).collect(), false),
        ] {
            let t = table(key, keyed);
            let mut all: Vec<Vec<Datum>> = rows().iter().map(|r| datums(r)).collect();
            all.push(odd.clone());
            for (a, b) in all.iter().zip(all.iter().rev()) {
                for (op, before, after) in [
                    (Op::Create, None, Some(a.as_slice())),
                    (Op::Update, Some(b.as_slice()), Some(a.as_slice())),
                    (Op::Update, None, Some(a.as_slice())),
                    (Op::Delete, Some(a.as_slice()), None),
                    (Op::Truncate, None, None),
                ] {
                    for snapshot in [None, Some(true)] {
                        let made = record(
                            "shop",
                            "orders",
                            &t,
                            op,
                            before,
                            after,
                            origin(snapshot),
                            1_800_000_000_000,
                        );
                        let (value, key) = built(&t, op, before, after, origin(snapshot));
                        assert_eq!(String::from_utf8(made.value.unwrap()).unwrap(), value);
                        assert_eq!(made.key, key);
                    }
                }
            }
        }
    }

    #[test]
    fn a_key_change_is_detected() {
        let t = orders();
        let a = [Datum::Text(b"1".to_vec()), Datum::Null, Datum::Null];
        let b = [
            Datum::Text(b"2".to_vec()),
            Datum::Null,
            Datum::Text(b"9".to_vec()),
        ];
        let c = [
            Datum::Text(b"1".to_vec()),
            Datum::Text(b"x".to_vec()),
            Datum::Null,
        ];
        assert!(key_changed(&t, &a, &b));
        assert!(!key_changed(&t, &a, &a));
        assert!(!key_changed(&t, &a, &c), "only the key counts");
    }

    #[test]
    fn postgres_time_converts_to_unix_milliseconds() {
        assert_eq!(pg_time_to_unix_ms(0), 946_684_800_000);
    }
}
