//! Debezium change events: the key, the envelope and the properties of one
//! record, built from a decoded row.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::catalog::{Table, format_lsn};
use super::pgoutput::Datum;
use super::types::convert;
use crate::api::{Sequence, SourceRecord};
pub(crate) use crate::debezium::Op;
use crate::debezium::{UNAVAILABLE, envelope};

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

/// A row's values as a JSON object. `None` for an absent tuple.
pub(crate) fn row(table: &Table, datums: &[Datum]) -> Value {
    let mut map = Map::with_capacity(table.columns.len());
    for (i, name) in table.columns.iter().enumerate() {
        let value = match datums.get(i) {
            None | Some(Datum::Null) => Value::Null,
            Some(Datum::Unchanged) => Value::String(UNAVAILABLE.to_owned()),
            Some(Datum::Text(bytes) | Datum::Binary(bytes)) => match std::str::from_utf8(bytes) {
                Ok(text) => convert(&table.kinds[i], text),
                Err(_) => Value::Null,
            },
        };
        map.insert(name.clone(), value);
    }
    Value::Object(map)
}

/// The key columns of a row, as a JSON object.
fn key(table: &Table, row: &Value) -> Value {
    let mut map = Map::with_capacity(table.key.len());
    for &i in &table.key {
        let name = &table.columns[i];
        map.insert(name.clone(), row.get(name).cloned().unwrap_or(Value::Null));
    }
    Value::Object(map)
}

/// Whether two rows differ in their key columns.
pub(crate) fn key_changed(table: &Table, before: &Value, after: &Value) -> bool {
    table.key.iter().any(|&i| {
        let name = &table.columns[i];
        before.get(name) != after.get(name)
    })
}

/// An event's `source` block: where the change came from.
pub(crate) fn source(prefix: &str, db: &str, table: &Table, origin: Origin) -> Value {
    let snapshot = match origin.snapshot {
        None => "false",
        Some(true) => "last",
        Some(false) => "true",
    };
    json!({
        "version": concat!("sluice-", env!("CARGO_PKG_VERSION")),
        "connector": "postgresql",
        "name": prefix,
        "ts_ms": origin.commit_ms,
        "snapshot": snapshot,
        "db": db,
        "schema": table.schema,
        "table": table.name,
        "txId": origin.xid,
        "lsn": origin.lsn,
    })
}

/// One Debezium change event as a source record.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    prefix: &str,
    db: &str,
    table: &Table,
    op: Op,
    before: Option<Value>,
    after: Option<Value>,
    origin: Origin,
    now_ms: u64,
) -> SourceRecord {
    let key_source = after.as_ref().or(before.as_ref());
    let key = key_source.map(|r| key(table, r).to_string());
    let value = envelope(op, before, after, source(prefix, db, table, origin), now_ms);
    SourceRecord {
        topic: Some(table.topic(prefix)),
        key,
        value: Some(value.to_string().into_bytes()),
        properties: vec![
            (LSN_PROPERTY.to_owned(), format_lsn(origin.commit_lsn)),
            (TXID_PROPERTY.to_owned(), origin.xid.to_string()),
        ],
        event_time_ms: Some(origin.commit_ms),
        sequence: Some(Sequence::from_parts(origin.commit_lsn, origin.ordinal)),
        schema: Some(Arc::clone(&table.event_schema)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RecordSchema;
    use crate::postgres_cdc::types::Kind;

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
        }
    }

    #[test]
    fn an_update_event_has_the_debezium_shape() {
        let t = orders();
        let before = row(
            &t,
            &[
                Datum::Text(b"7".to_vec()),
                Datum::Null,
                Datum::Text(b"1.50".to_vec()),
            ],
        );
        let after = row(
            &t,
            &[
                Datum::Text(b"7".to_vec()),
                Datum::Unchanged,
                Datum::Text(b"2.00".to_vec()),
            ],
        );
        let origin = Origin {
            commit_lsn: 0x1_0000_0010,
            lsn: 0x1_0000_0008,
            xid: 42,
            commit_ms: 1000,
            ordinal: 3,
            snapshot: None,
        };
        let r = record(
            "retail",
            "orders",
            &t,
            Op::Update,
            Some(before),
            Some(after),
            origin,
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
    fn a_key_change_is_detected() {
        let t = orders();
        let a = row(&t, &[Datum::Text(b"1".to_vec()), Datum::Null, Datum::Null]);
        let b = row(&t, &[Datum::Text(b"2".to_vec()), Datum::Null, Datum::Null]);
        assert!(key_changed(&t, &a, &b));
        assert!(!key_changed(&t, &a, &a));
    }

    #[test]
    fn postgres_time_converts_to_unix_milliseconds() {
        assert_eq!(pg_time_to_unix_ms(0), 946_684_800_000);
    }
}
