//! Debezium's `ExtractNewRecordState` (the "unwrap" transform): a change
//! event becomes the row it leaves behind, as Debezium 1.9 (the version
//! Pulsar's Debezium source runs) makes it.
//!
//! - An insert, an update or a snapshot read becomes its `after` row.
//! - A delete is dropped (`delete.handling.mode: drop`, the default),
//!   becomes its `before` row with `__deleted: "true"` (`rewrite`, where
//!   every other row gets `__deleted: "false"`), or a null value under the
//!   row's key (`none`).
//! - A truncate is dropped.
//! - `add.fields` copies fields of the event into the row, `add.headers`
//!   into the message's properties, each named with its prefix (`__` unless
//!   set): `op` and `ts_ms` are the event's own, `source.ts_ms` (or just
//!   `lsn`, `table`, ...) the `source` block's; `name:new` renames.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// `delete.handling.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deletes {
    Drop,
    Rewrite,
    None,
}

/// The field that `rewrite` adds to every row.
pub(crate) const DELETED_FIELD: &str = "__deleted";

/// Fields of the `source` block sluice's events are defined with.
pub(crate) const SOURCE_FIELDS: &[&str] = &[
    "version",
    "connector",
    "name",
    "ts_ms",
    "snapshot",
    "db",
    "sequence",
    "schema",
    "table",
    "txId",
    "lsn",
    "xmin",
];

/// Fields of the event itself.
const EVENT_FIELDS: &[&str] = &["op", "ts_ms"];

/// Fields Debezium reads from the `transaction` block, which sluice's
/// events do not carry.
const TRANSACTION_FIELDS: &[&str] = &["id", "total_order", "data_collection_order"];

/// Where an added field is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Event,
    Source,
}

/// One entry of `add.fields` or `add.headers`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Added {
    block: Block,
    field: String,
    /// The name it is added under, prefix included.
    pub(crate) name: String,
}

impl Added {
    /// Read `entry` (`op`, `source.ts_ms`, `lsn:position`) as Debezium does.
    pub(crate) fn parse(entry: &str, prefix: &str) -> Result<Self, String> {
        let (reference, renamed) = match entry.split_once(':') {
            Some((r, n)) if !n.is_empty() && !n.contains(':') => (r, Some(n)),
            Some(_) => return Err(format!("\"{entry}\" is not field or field:name")),
            None => (entry, None),
        };
        let (block, field) = match reference.split_once('.') {
            Some(("source", f)) => (Block::Source, f),
            Some(("transaction", _)) => {
                return Err(format!(
                    "\"{entry}\": sluice's events carry no transaction block"
                ));
            }
            Some(_) => {
                return Err(format!(
                    "\"{entry}\" is not a field of the event (op, ts_ms) or of its source block (source.<field>)"
                ));
            }
            None if EVENT_FIELDS.contains(&reference) => (Block::Event, reference),
            None if TRANSACTION_FIELDS.contains(&reference) => {
                return Err(format!(
                    "\"{entry}\": sluice's events carry no transaction block"
                ));
            }
            None => (Block::Source, reference),
        };
        if block == Block::Source && !SOURCE_FIELDS.contains(&field) {
            return Err(format!(
                "\"{entry}\": the source block has no field {field} (it has {})",
                SOURCE_FIELDS.join(", ")
            ));
        }
        let name = match renamed {
            Some(n) => format!("{prefix}{n}"),
            None if reference.contains('.') => format!("{prefix}source_{field}"),
            None => format!("{prefix}{field}"),
        };
        Ok(Self {
            block,
            field: field.to_owned(),
            name,
        })
    }

    fn value(&self, event: &Event<'_>) -> Value {
        let found = match (self.block, self.field.as_str()) {
            (Block::Event, "op") => event.op.as_ref(),
            (Block::Event, _) => event.ts_ms.as_ref(),
            (Block::Source, field) => event.source.get(field),
        };
        found.cloned().unwrap_or(Value::Null)
    }

    /// The field's definition in the record schema of the value, from the
    /// envelope's schema: optional, as Debezium adds it.
    fn definition(&self, envelope: &[Value]) -> Option<Value> {
        let named = |fields: &[Value], name: &str| {
            fields
                .iter()
                .find(|f| f.get("name").and_then(Value::as_str) == Some(name))
                .cloned()
        };
        let mut found = match self.block {
            Block::Event => named(envelope, &self.field)?,
            Block::Source => {
                let source = named(envelope, "source")?;
                let fields = source.get("type")?.get("fields")?.as_array()?.clone();
                named(&fields, &self.field)?
            }
        };
        found["name"] = Value::String(self.name.clone());
        let nullable = found["type"]
            .as_array()
            .is_some_and(|union| union.contains(&json!("null")));
        if !nullable {
            found["type"] = json!(["null", found["type"].take()]);
            found["default"] = Value::Null;
        }
        Some(found)
    }
}

/// A change event as the transform reads it: its rows left as the text
/// they are (an unwrapped row is that text, with any added fields spliced
/// in before its closing brace), the rest parsed.
pub(crate) struct Event<'a> {
    before: Option<&'a RawValue>,
    after: Option<&'a RawValue>,
    op: Option<Value>,
    ts_ms: Option<Value>,
    /// The `source` block, read only when a field is taken from it.
    source: Map<String, Value>,
}

#[derive(Deserialize)]
struct Parts<'a> {
    #[serde(borrow)]
    before: Option<&'a RawValue>,
    #[serde(borrow)]
    after: Option<&'a RawValue>,
    #[serde(borrow)]
    source: Option<&'a RawValue>,
    op: Option<Value>,
    ts_ms: Option<Value>,
}

/// What an event becomes.
#[derive(Debug, PartialEq)]
pub(crate) enum Unwrapped {
    /// Not published.
    Dropped,
    /// Published as its key with a null value.
    Null,
    /// Published as this row (a JSON object).
    Row(Vec<u8>),
}

/// The transform, configured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unwrap {
    pub(crate) deletes: Deletes,
    pub(crate) fields: Vec<Added>,
    pub(crate) headers: Vec<Added>,
}

impl Unwrap {
    /// Read an event (a JSON object) for this transform.
    pub(crate) fn read<'a>(&self, event: &'a [u8]) -> Result<Event<'a>, String> {
        let parts: Parts<'a> = serde_json::from_slice(event)
            .map_err(|e| format!("the event is not a change event: {e}"))?;
        let wants_source = self
            .fields
            .iter()
            .chain(&self.headers)
            .any(|a| a.block == Block::Source);
        let source = match parts.source {
            Some(raw) if wants_source => serde_json::from_str(raw.get())
                .map_err(|e| format!("the event's source block is not an object: {e}"))?,
            _ => Map::new(),
        };
        let object = |raw: Option<&'a RawValue>| raw.filter(|r| r.get().starts_with('{'));
        Ok(Event {
            before: object(parts.before),
            after: object(parts.after),
            op: parts.op,
            ts_ms: parts.ts_ms,
            source,
        })
    }

    /// The properties `add.headers` adds to the event's message: strings as
    /// they are, other values as their JSON text, nulls left out.
    pub(crate) fn headers(&self, event: &Event<'_>) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter_map(|h| match h.value(event) {
                Value::Null => None,
                Value::String(s) => Some((h.name.clone(), s)),
                other => Some((h.name.clone(), other.to_string())),
            })
            .collect()
    }

    /// The value an event becomes. (A column of an added field's name is
    /// refused by [`Unwrap::schema`], which every table's events pass.)
    pub(crate) fn value(&self, event: &Event<'_>) -> Unwrapped {
        let (row, deleted) = match (event.after, event.before) {
            (Some(after), _) => (after.get(), false),
            (None, Some(before)) => match self.deletes {
                Deletes::Drop => return Unwrapped::Dropped,
                Deletes::None => return Unwrapped::Null,
                Deletes::Rewrite => (before.get(), true),
            },
            // A truncate.
            (None, None) => return Unwrapped::Dropped,
        };
        let mut added: Vec<(&str, Value)> = self
            .fields
            .iter()
            .map(|a| (a.name.as_str(), a.value(event)))
            .collect();
        if self.deletes == Deletes::Rewrite {
            added.push((DELETED_FIELD, json!(deleted.to_string())));
        }
        if added.is_empty() {
            return Unwrapped::Row(row.as_bytes().to_vec());
        }
        // `row` is an object: `{...}`, maybe `{}`.
        let body = row[1..row.len() - 1].trim();
        let mut out = Vec::with_capacity(row.len() + 32 * added.len());
        out.push(b'{');
        out.extend_from_slice(body.as_bytes());
        for (i, (name, value)) in added.iter().enumerate() {
            if i > 0 || !body.is_empty() {
                out.push(b',');
            }
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, name);
            out.push(b':');
            let _ = serde_json::to_writer(&mut out, value);
        }
        out.push(b'}');
        Unwrapped::Row(out)
    }

    /// The schema of the values it makes, from the envelope's (an Avro
    /// record in JSON): the row's record, with the added fields.
    pub(crate) fn schema(&self, envelope: &Value) -> Result<Value, String> {
        let fields = envelope
            .get("fields")
            .and_then(Value::as_array)
            .ok_or("the event's schema has no fields")?;
        let mut row = fields
            .iter()
            .find(|f| f.get("name").and_then(Value::as_str) == Some("before"))
            .and_then(|f| f.get("type")?.as_array()?.get(1).cloned())
            .filter(Value::is_object)
            .ok_or("the event's schema does not define its row")?;
        let mut added: Vec<Value> = Vec::new();
        for a in &self.fields {
            added.push(
                a.definition(fields)
                    .ok_or_else(|| format!("the event's schema has no field for {}", a.name))?,
            );
        }
        if self.deletes == Deletes::Rewrite {
            added.push(json!({"name": DELETED_FIELD, "type": ["null", "string"], "default": null}));
        }
        let Some(Value::Array(columns)) = row.get_mut("fields") else {
            return Err("the row's schema has no fields".into());
        };
        for field in added {
            let name = field.get("name").and_then(Value::as_str).unwrap_or("");
            if columns
                .iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some(name))
            {
                return Err(format!(
                    "the table has a column {name}, which the unwrap transform adds too: set add.fields.prefix, or rename it with field:name"
                ));
            }
            columns.push(field);
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unwrap(deletes: Deletes, fields: &[&str], headers: &[&str]) -> Unwrap {
        Unwrap {
            deletes,
            fields: fields
                .iter()
                .map(|f| Added::parse(f, "__").unwrap())
                .collect(),
            headers: headers
                .iter()
                .map(|f| Added::parse(f, "__").unwrap())
                .collect(),
        }
    }

    /// Debezium's documented events: a row of `customers`, created, then
    /// deleted.
    fn event(op: &str, before: Value, after: Value) -> Vec<u8> {
        json!({
            "before": before,
            "after": after,
            "source": {"version": "sluice", "connector": "postgresql", "name": "dbserver1",
                       "ts_ms": 1559033904863_u64, "snapshot": "false", "db": "postgres",
                       "schema": "inventory", "table": "customers", "txId": 556, "lsn": 24023128},
            "op": op,
            "ts_ms": 1559033904863_u64,
        })
        .to_string()
        .into_bytes()
    }

    /// What an event becomes, its row parsed.
    #[derive(Debug, PartialEq)]
    enum Out {
        Dropped,
        Null,
        Row(Value),
    }

    fn run(u: &Unwrap, event: Vec<u8>) -> Out {
        match u.value(&u.read(&event).unwrap()) {
            Unwrapped::Dropped => Out::Dropped,
            Unwrapped::Null => Out::Null,
            Unwrapped::Row(bytes) => Out::Row(serde_json::from_slice(&bytes).unwrap()),
        }
    }

    fn row(value: Value) -> Out {
        Out::Row(value)
    }

    #[test]
    fn a_change_becomes_its_row_as_debezium_documents() {
        let customer = json!({"id": 1004, "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org"});
        let u = unwrap(Deletes::Drop, &[], &[]);
        assert_eq!(
            run(&u, event("c", Value::Null, customer.clone())),
            row(customer.clone())
        );
        assert_eq!(
            run(
                &u,
                event(
                    "u",
                    json!({"id": 1004, "first_name": "A"}),
                    customer.clone()
                )
            ),
            row(customer.clone())
        );
        assert_eq!(
            run(&u, event("r", Value::Null, customer.clone())),
            row(customer.clone())
        );
        // Deletes and truncates are dropped by default.
        assert_eq!(
            run(&u, event("d", customer.clone(), Value::Null)),
            Out::Dropped
        );
        assert_eq!(run(&u, event("t", Value::Null, Value::Null)), Out::Dropped);
    }

    #[test]
    fn deletes_are_dropped_rewritten_or_null_as_set() {
        let customer = json!({"id": 1004, "email": "annek@noanswer.org"});
        let none = unwrap(Deletes::None, &[], &[]);
        assert_eq!(
            run(&none, event("d", customer.clone(), Value::Null)),
            Out::Null
        );
        // Debezium's rewrite example: `"__deleted": "true"` on the last
        // row, "false" on every other.
        let rewrite = unwrap(Deletes::Rewrite, &[], &[]);
        assert_eq!(
            run(&rewrite, event("d", customer.clone(), Value::Null)),
            row(json!({"id": 1004, "email": "annek@noanswer.org", "__deleted": "true"}))
        );
        assert_eq!(
            run(&rewrite, event("c", Value::Null, customer.clone())),
            row(json!({"id": 1004, "email": "annek@noanswer.org", "__deleted": "false"}))
        );
        assert_eq!(
            run(&rewrite, event("t", Value::Null, Value::Null)),
            Out::Dropped
        );
    }

    #[test]
    fn fields_and_headers_are_added_with_debeziums_names() {
        // Debezium's example: `add.fields=op,table,lsn,source.ts_ms`.
        let u = unwrap(
            Deletes::Rewrite,
            &["op", "table", "lsn", "source.ts_ms"],
            &["db", "table:from", "txId"],
        );
        let customer = json!({"id": 1004});
        let e = event("d", customer, Value::Null);
        assert_eq!(
            u.headers(&u.read(&e).unwrap()),
            vec![
                ("__db".to_owned(), "postgres".to_owned()),
                ("__from".to_owned(), "customers".to_owned()),
                ("__txId".to_owned(), "556".to_owned()),
            ]
        );
        assert_eq!(
            run(&u, e),
            row(
                json!({"id": 1004, "__op": "d", "__table": "customers", "__lsn": 24023128,
                       "__source_ts_ms": 1559033904863_u64, "__deleted": "true"})
            )
        );
        // A row without columns takes the fields alone.
        assert_eq!(
            run(&u, event("c", Value::Null, json!({}))),
            row(
                json!({"__op": "c", "__table": "customers", "__lsn": 24023128,
                       "__source_ts_ms": 1559033904863_u64, "__deleted": "false"})
            )
        );
        assert_eq!(Added::parse("ts_ms", "meta_").unwrap().name, "meta_ts_ms");
        assert_eq!(Added::parse("source.ts_ms:at", "").unwrap().name, "at");
    }

    #[test]
    fn fields_sluice_does_not_write_are_refused_by_name() {
        for (entry, says) in [
            ("transaction.id", "no transaction block"),
            ("total_order", "no transaction block"),
            ("source.commit_lsn", "has no field commit_lsn"),
            ("nonesuch", "has no field nonesuch"),
            ("after.id", "is not a field of the event"),
            ("op:", "is not field or field:name"),
        ] {
            let e = Added::parse(entry, "__").unwrap_err();
            assert!(e.contains(says), "{entry}: {e}");
        }
    }

    #[test]
    fn the_schema_is_the_rows_with_the_added_fields() {
        let envelope = json!({
            "type": "record", "name": "Envelope", "namespace": "shop.public.orders",
            "fields": [
                {"name": "before", "type": ["null", {"type": "record", "name": "Value",
                    "namespace": "shop.public.orders",
                    "fields": [{"name": "id", "type": "long"}]}], "default": null},
                {"name": "after", "type": ["null", "shop.public.orders.Value"], "default": null},
                {"name": "source", "type": {"type": "record", "name": "Source",
                    "fields": [{"name": "table", "type": "string"},
                               {"name": "lsn", "type": ["null", "long"], "default": null}]}},
                {"name": "op", "type": "string"},
                {"name": "ts_ms", "type": ["null", "long"], "default": null},
            ],
        });
        let u = unwrap(Deletes::Rewrite, &["op", "source.lsn"], &[]);
        let schema = u.schema(&envelope).unwrap();
        assert_eq!(schema["name"], "Value");
        assert_eq!(
            schema["fields"],
            json!([
                {"name": "id", "type": "long"},
                {"name": "__op", "type": ["null", "string"], "default": null},
                {"name": "__source_lsn", "type": ["null", "long"], "default": null},
                {"name": "__deleted", "type": ["null", "string"], "default": null},
            ])
        );
        let clash = unwrap(Deletes::Drop, &["table:id"], &[]);
        let prefixless = Unwrap {
            fields: vec![Added::parse("table:id", "").unwrap()],
            ..clash
        };
        assert!(
            prefixless
                .schema(&envelope)
                .unwrap_err()
                .contains("has a column id")
        );
    }
}
