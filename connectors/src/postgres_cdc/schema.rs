//! The schema of a table's change events, as Debezium's Postgres connector
//! names and types them: a `Key` record of the key columns, and an
//! `Envelope` record whose `before` and `after` are `Value` records of
//! every column, with Debezium's `source` block. Definitions are Avro
//! records in JSON, the form Pulsar's schema registry keeps for JSON data,
//! so that consumers written against Pulsar's Debezium source read sluice's
//! topics through the same schema.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::types::Kind;
use crate::api::RecordSchema;

/// One column, as its schema needs it.
#[derive(Debug, Clone)]
pub(crate) struct ColumnType<'a> {
    pub(crate) name: &'a str,
    pub(crate) oid: u32,
    pub(crate) kind: &'a Kind,
    /// Whether the column may hold NULL.
    pub(crate) optional: bool,
}

/// The schema of `<prefix>.<schema>.<table>`'s events.
pub(crate) fn build(topic: &str, columns: &[ColumnType<'_>], key: &[usize]) -> Arc<RecordSchema> {
    let namespace = avro_namespace(topic);
    let key_columns: Vec<ColumnType<'_>> = key
        .iter()
        .filter_map(|&i| columns.get(i))
        .map(|c| ColumnType {
            optional: false,
            ..c.clone()
        })
        .collect();
    let key = record("Key", &namespace, fields(&key_columns));
    let row = record("Value", &namespace, fields(columns));
    let value = json!({
        "type": "record",
        "name": "Envelope",
        "namespace": namespace,
        "fields": [
            {"name": "before", "type": ["null", row], "default": null},
            {"name": "after", "type": ["null", format!("{namespace}.Value")], "default": null},
            {"name": "source", "type": source()},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": ["null", "long"], "default": null},
            {"name": "transaction", "type": ["null", transaction()], "default": null},
        ],
        "connect.name": format!("{namespace}.Envelope"),
    });
    Arc::new(RecordSchema {
        key: key.to_string(),
        value: value.to_string(),
    })
}

fn record(name: &str, namespace: &str, fields: Vec<Value>) -> Value {
    json!({
        "type": "record",
        "name": name,
        "namespace": namespace,
        "fields": fields,
        "connect.name": format!("{namespace}.{name}"),
    })
}

/// The fields of a row record. A column name that is not an Avro name is
/// made one (its JSON field keeps the column's name); two columns that
/// would then share a name are told apart by their position.
fn fields(columns: &[ColumnType<'_>]) -> Vec<Value> {
    let mut taken = HashSet::new();
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut name = avro_name(c.name);
            if !taken.insert(name.clone()) {
                name = format!("{name}_{i}");
                taken.insert(name.clone());
            }
            let t = column_type(c.oid, c.kind);
            if c.optional {
                json!({"name": name, "type": ["null", t], "default": null})
            } else {
                json!({"name": name, "type": t})
            }
        })
        .collect()
}

/// The Avro type of a column's JSON value, with Debezium's logical name
/// where it has one (see the conversions in `types.rs`).
fn column_type(oid: u32, kind: &Kind) -> Value {
    let logical =
        |avro: &str, name: &str| json!({"type": avro, "connect.version": 1, "connect.name": name});
    match kind {
        Kind::Bool => json!("boolean"),
        Kind::Int => match oid {
            21 => json!({"type": "int", "connect.type": "int16"}),
            23 => json!("int"),
            _ => json!("long"),
        },
        Kind::Float if oid == 700 => json!("float"),
        Kind::Float => json!("double"),
        Kind::Bytea => json!("bytes"),
        Kind::Date => logical("int", "io.debezium.time.Date"),
        Kind::Time => logical("long", "io.debezium.time.MicroTime"),
        Kind::TimeTz => logical("string", "io.debezium.time.ZonedTime"),
        Kind::Timestamp => logical("long", "io.debezium.time.MicroTimestamp"),
        Kind::TimestampTz => logical("string", "io.debezium.time.ZonedTimestamp"),
        Kind::Interval => logical("long", "io.debezium.time.MicroDuration"),
        Kind::Json => logical("string", "io.debezium.data.Json"),
        Kind::Text if oid == 2950 => logical("string", "io.debezium.data.Uuid"),
        Kind::Decimal | Kind::Text => json!("string"),
        Kind::Array(element) => {
            json!({"type": "array", "items": ["null", column_type(0, element)]})
        }
    }
}

/// Debezium's `source` block for Postgres.
fn source() -> Value {
    let required = |name: &str, t: &str| json!({"name": name, "type": t});
    let optional =
        |name: &str, t: &str| json!({"name": name, "type": ["null", t], "default": null});
    json!({
        "type": "record",
        "name": "Source",
        "namespace": "io.debezium.connector.postgresql",
        "fields": [
            required("version", "string"),
            required("connector", "string"),
            required("name", "string"),
            required("ts_ms", "long"),
            {
                "name": "snapshot",
                "type": [{
                    "type": "string",
                    "connect.version": 1,
                    "connect.parameters": {"allowed": "true,last,false,incremental"},
                    "connect.default": "false",
                    "connect.name": "io.debezium.data.Enum",
                }, "null"],
                "default": "false",
            },
            required("db", "string"),
            optional("sequence", "string"),
            required("schema", "string"),
            required("table", "string"),
            optional("txId", "long"),
            optional("lsn", "long"),
            optional("xmin", "long"),
        ],
        "connect.name": "io.debezium.connector.postgresql.Source",
    })
}

/// Debezium's transaction block (unnamed in Kafka Connect, so named as the
/// Avro converter names unnamed structs).
fn transaction() -> Value {
    json!({
        "type": "record",
        "name": "ConnectDefault",
        "namespace": "io.confluent.connect.avro",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "total_order", "type": "long"},
            {"name": "data_collection_order", "type": "long"},
        ],
    })
}

/// An Avro name: letters, digits and `_`, not starting with a digit.
fn avro_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// A topic as an Avro namespace: each dotted part an Avro name.
pub(crate) fn avro_namespace(topic: &str) -> String {
    topic
        .split('.')
        .map(avro_name)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column<'a>(name: &'a str, oid: u32, kind: &'a Kind, optional: bool) -> ColumnType<'a> {
        ColumnType {
            name,
            oid,
            kind,
            optional,
        }
    }

    #[test]
    fn key_and_envelope_are_named_and_typed_as_debezium_does() {
        let (int, text, decimal, ts) = (Kind::Int, Kind::Text, Kind::Decimal, Kind::Timestamp);
        let columns = [
            column("id", 23, &int, false),
            column("note", 25, &text, true),
            column("total", 1700, &decimal, false),
            column("made", 1114, &ts, true),
        ];
        let schema = build("retail.public.orders", &columns, &[0]);
        let key: Value = serde_json::from_str(&schema.key).unwrap_or_default();
        assert_eq!(
            key,
            json!({"type": "record", "name": "Key", "namespace": "retail.public.orders",
                   "fields": [{"name": "id", "type": "int"}],
                   "connect.name": "retail.public.orders.Key"})
        );
        let value: Value = serde_json::from_str(&schema.value).unwrap_or_default();
        assert_eq!(value["name"], "Envelope");
        let names: Vec<&str> = value["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["before", "after", "source", "op", "ts_ms", "transaction"]
        );
        let row = &value["fields"][0]["type"][1];
        assert_eq!(row["name"], "Value");
        assert_eq!(
            row["fields"],
            json!([
                {"name": "id", "type": "int"},
                {"name": "note", "type": ["null", "string"], "default": null},
                {"name": "total", "type": "string"},
                {"name": "made", "type": ["null", {"type": "long", "connect.version": 1,
                    "connect.name": "io.debezium.time.MicroTimestamp"}], "default": null},
            ])
        );
        assert_eq!(value["fields"][1]["type"][1], "retail.public.orders.Value");
    }

    #[test]
    fn names_that_avro_refuses_are_made_avro_names() {
        let text = Kind::Text;
        let columns = [
            column("order-id", 25, &text, false),
            column("order_id", 25, &text, false),
            column("1st", 25, &text, false),
        ];
        let schema = build("shop-1.public.line items", &columns, &[0]);
        let key: Value = serde_json::from_str(&schema.key).unwrap_or_default();
        assert_eq!(key["namespace"], "shop_1.public.line_items");
        let value: Value = serde_json::from_str(&schema.value).unwrap_or_default();
        let names: Vec<&str> = value["fields"][0]["type"][1]["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert_eq!(names, ["order_id", "order_id_1", "_1st"]);
    }
}
