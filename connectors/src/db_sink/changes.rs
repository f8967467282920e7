//! From records to row changes, and from changes to statement groups.
//!
//! `inputFormat` says what a record is (decision 0015). A Debezium change
//! event gives its operation (`c`, `r`, `u` upsert; `d` delete; `t`
//! truncate when allowed). A plain JSON row is written as `insertMode`
//! says, or, with `ROW_WITH_ACTION`, as its `ACTION` property says, as
//! Pulsar's JDBC sink does (`INSERT`, `UPDATE`, `UPSERT`, `DELETE`). A null
//! value is written as `nullValueAction` says. A row shaped like a change
//! event is still a row: whoever can publish plain rows cannot delete.
//!
//! The table comes from the configuration, by the record's topic: a
//! record's content may select a row, never a table. An envelope that names
//! another table than its topic's is refused (and so dead-lettered), unless
//! `tablesFromEnvelope` lists the table it names.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::config::{DbSinkConfig, InputFormat, InsertMode, NullValueAction, topic_table};
use super::encodings::Encodings;
use crate::api::{ConnectorError, SinkRecord};
use crate::debezium::{Op, UNAVAILABLE, parse_envelope, parse_row};

/// What a change does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Upsert,
    Insert,
    Update,
    Delete,
    Truncate,
}

/// One change to one row (or, for a truncate, to a table).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub(crate) table: String,
    pub(crate) kind: Kind,
    /// Column values: the row for an upsert, the key for a delete.
    pub(crate) values: Map<String, Value>,
    /// The key's values as text, once resolved; changes to one key keep
    /// their order.
    pub(crate) key: String,
    /// The index in its batch of the record the change comes from.
    pub(crate) record: usize,
}

fn permanent(record: &SinkRecord, what: &str) -> ConnectorError {
    ConnectorError::permanent(format!(
        "message {} on {}: {what}",
        record.message_id, record.topic
    ))
}

/// The changes a record asks for.
/// `encodings`: what the record's value schema says to decode.
/// A table that can never be a target (sluice's own, SQLite's) is refused
/// here too, since a topic's own name can choose one: a `topicsPattern`
/// sink maps a topic a stranger may create to its last name segment.
pub(crate) fn from_record(
    record: &SinkRecord,
    config: &DbSinkConfig,
    encodings: Option<&Encodings>,
) -> Result<Vec<Change>, ConnectorError> {
    let changes = asked(record, config, encodings)?;
    if let Some(why) = changes
        .iter()
        .find_map(|c| super::config::forbidden_table(&c.table))
    {
        return Err(permanent(record, &format!("cannot write there: {why}")));
    }
    Ok(changes)
}

fn asked(
    record: &SinkRecord,
    config: &DbSinkConfig,
    encodings: Option<&Encodings>,
) -> Result<Vec<Change>, ConnectorError> {
    let change = |table: String, kind: Kind, values: Map<String, Value>| Change {
        table,
        kind,
        values,
        key: String::new(),
        record: 0,
    };
    let mapped = config.table_for_topic(&record.topic);
    let Some(bytes) = &record.value else {
        return match config.null_value_action {
            NullValueAction::Fail => Err(permanent(
                record,
                "the value is null and nullValueAction is FAIL",
            )),
            NullValueAction::Delete => {
                let table = mapped;
                let key = record
                    .key
                    .as_deref()
                    .and_then(|k| serde_json::from_str::<Value>(k).ok())
                    .and_then(|k| k.as_object().cloned())
                    .ok_or_else(|| {
                        permanent(record, "a null value needs a JSON object key to delete by")
                    })?;
                Ok(vec![change(table, Kind::Delete, key)])
            }
        };
    };
    let decode = |mut row: Map<String, Value>| match encodings.filter(|e| !e.is_empty()) {
        Some(e) => e
            .decode(&mut row)
            .map(|()| row)
            .map_err(|what| permanent(record, &what)),
        None => Ok(row),
    };
    if config.input_format != InputFormat::Debezium {
        let object = decode(parse_row(bytes).map_err(|what| permanent(record, what))?)?;
        let kind = match action(record, config.input_format)? {
            Some(kind) => kind,
            None => match config.insert_mode {
                InsertMode::Insert => Kind::Insert,
                InsertMode::Upsert => Kind::Upsert,
                InsertMode::Update => Kind::Update,
            },
        };
        return Ok(vec![change(mapped, kind, object)]);
    }
    let parts = parse_envelope(bytes).map_err(|what| permanent(record, what))?;
    let table = envelope_table(record, config, parts.table.as_deref(), mapped)?;
    let row = |row: Option<Value>, field: &str| match row {
        Some(Value::Object(row)) => decode(row),
        _ => Err(permanent(
            record,
            &format!("the envelope has no `{field}` row"),
        )),
    };
    match Op::from_code(&parts.op) {
        Some(Op::Create | Op::Read | Op::Update) => Ok(vec![change(
            table,
            Kind::Upsert,
            row(parts.after, "after")?,
        )]),
        Some(Op::Delete) => Ok(vec![change(
            table,
            Kind::Delete,
            row(parts.before, "before")?,
        )]),
        Some(Op::Truncate) if config.allow_truncate => {
            Ok(vec![change(table, Kind::Truncate, Map::new())])
        }
        Some(Op::Truncate) => Ok(Vec::new()),
        None => Err(permanent(record, &format!("unknown op `{}`", parts.op))),
    }
}

/// The property by which a producer tells Pulsar's JDBC sink what to do
/// with a plain row.
const ACTION_PROPERTY: &str = "ACTION";

/// A plain row's `ACTION`, when it has one and the sink follows it. A sink
/// that does not refuses the record rather than write it otherwise than
/// its producer asked.
fn action(record: &SinkRecord, format: InputFormat) -> Result<Option<Kind>, ConnectorError> {
    let Some((_, action)) = record.properties.iter().find(|(k, _)| k == ACTION_PROPERTY) else {
        return Ok(None);
    };
    if format != InputFormat::RowWithAction {
        return Err(permanent(
            record,
            &format!(
                "it has the property ACTION={}, which this sink does not follow: \
                 its inputFormat is ROW, so every record is written as insertMode says \
                 (set inputFormat: ROW_WITH_ACTION to follow ACTION)",
                action.chars().take(32).collect::<String>()
            ),
        ));
    }
    Ok(Some(match action.as_str() {
        "INSERT" => Kind::Insert,
        "UPDATE" => Kind::Update,
        "UPSERT" => Kind::Upsert,
        "DELETE" => Kind::Delete,
        other => {
            return Err(permanent(
                record,
                &format!(
                    "ACTION `{}` is not one of INSERT, UPDATE, UPSERT, DELETE",
                    other.chars().take(32).collect::<String>()
                ),
            ));
        }
    }))
}

/// The table an envelope's change goes to: the one its topic maps to. The
/// envelope may name that table, or the topic's own (a renamed target), or
/// nothing; naming another is refused, unless `tablesFromEnvelope` lists it.
fn envelope_table(
    record: &SinkRecord,
    config: &DbSinkConfig,
    named: Option<&str>,
    mapped: String,
) -> Result<String, ConnectorError> {
    if !config.tables_from_envelope.is_empty() {
        return match named {
            Some(t) if config.tables_from_envelope.iter().any(|a| a == t) => Ok(t.to_owned()),
            Some(t) => Err(permanent(
                record,
                &format!("the envelope names table {t}, which tablesFromEnvelope does not list"),
            )),
            None => Err(permanent(
                record,
                "the envelope names no source.table, and tablesFromEnvelope routes by it",
            )),
        };
    }
    match named {
        Some(t) if t != mapped && t != topic_table(&record.topic) => Err(permanent(
            record,
            &format!(
                "the envelope names table {t}, but its topic maps to table {mapped}: \
                 the configuration chooses the table, never the record"
            ),
        )),
        _ => Ok(mapped),
    }
}

impl Change {
    /// Fit the change to its table: a delete keeps only the key; a write
    /// drops unavailable TOAST values (the column is left untouched) and,
    /// with `nonKey`, the columns not listed. The key must be present.
    pub(crate) fn resolve(
        mut self,
        key: &[String],
        non_key: &[String],
    ) -> Result<Self, ConnectorError> {
        if self.kind == Kind::Truncate {
            return Ok(self);
        }
        let mut key_values = Vec::with_capacity(key.len());
        for k in key {
            match self.values.get(k) {
                Some(v) if !v.is_null() && v.as_str() != Some(UNAVAILABLE) => {
                    key_values.push(v.clone())
                }
                _ => {
                    return Err(ConnectorError::permanent(format!(
                        "a change to {} has no value for its key column {k}",
                        self.table
                    )));
                }
            }
        }
        self.key = Value::Array(key_values).to_string();
        self.values.retain(|column, value| {
            let is_key = key.contains(column);
            match self.kind {
                Kind::Delete => is_key,
                _ => {
                    value.as_str() != Some(UNAVAILABLE)
                        && (is_key || non_key.is_empty() || non_key.contains(column))
                }
            }
        });
        Ok(self)
    }
}

/// Consecutive changes that one statement can carry.
#[derive(Debug)]
pub(crate) struct Group<'a> {
    pub(crate) table: String,
    pub(crate) kind: Kind,
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<&'a Change>,
}

/// Split resolved changes into groups, in order. A group holds changes of
/// one kind to one table with the same columns, and each key at most once:
/// a second change to a key starts a new group, so changes to one key keep
/// their order.
pub(crate) fn groups(changes: &[Change]) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    let mut keys: HashSet<&str> = HashSet::new();
    for change in changes {
        let joins = out.last().is_some_and(|g| {
            change.kind != Kind::Truncate
                && g.kind == change.kind
                && g.table == change.table
                && g.columns.iter().eq(change.values.keys())
                && !keys.contains(change.key.as_str())
        });
        if !joins {
            keys.clear();
            out.push(Group {
                table: change.table.clone(),
                kind: change.kind,
                columns: change.values.keys().cloned().collect(),
                rows: Vec::new(),
            });
        }
        keys.insert(&change.key);
        if let Some(g) = out.last_mut() {
            g.rows.push(change);
        }
    }
    out
}

/// About how many bytes a change's values take in a statement: text and
/// binary by their length, other scalars as a few bytes each.
pub(crate) fn weight(change: &Change) -> usize {
    fn bytes(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len(),
            Value::Array(_) | Value::Object(_) => v.to_string().len(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        }
    }
    // Each bound value also costs a type and a length on the wire.
    change.values.values().map(|v| bytes(v) + 8).sum()
}

/// Cut `rows` into runs that one statement each can carry: at most
/// `max_rows` rows, and at most `max_bytes` of values unless a single row
/// is larger alone.
pub(crate) fn statements<'a, 'c>(
    rows: &'a [&'c Change],
    max_rows: usize,
    max_bytes: usize,
) -> Vec<&'a [&'c Change]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let w = weight(row);
        if i > start && (i - start == max_rows.max(1) || bytes + w > max_bytes) {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += w;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigMap, ConfigValue};
    use serde_json::json;

    fn config(pairs: &[(&str, &str)]) -> DbSinkConfig {
        let mut map: ConfigMap = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ConfigValue::String((*v).to_owned())))
            .collect();
        map.insert(
            "jdbcUrl".into(),
            ConfigValue::String("postgres://db/w".into()),
        );
        DbSinkConfig::from_configs(&map).0.unwrap()
    }

    /// A sink configured for Debezium change events.
    fn cdc(pairs: &[(&str, &str)]) -> DbSinkConfig {
        let mut pairs = pairs.to_vec();
        pairs.push(("inputFormat", "DEBEZIUM"));
        config(&pairs)
    }

    fn record(value: Value) -> SinkRecord {
        SinkRecord {
            topic: "persistent://public/default/retail.public.orders".into(),
            value: Some(value.to_string().into_bytes()),
            message_id: "1:1:-1:-1".parse().unwrap(),
            ..SinkRecord::default()
        }
    }

    fn envelope(op: &str, before: Value, after: Value) -> Value {
        json!({"op": op, "before": before, "after": after, "source": {"table": "orders"}})
    }

    fn resolved(v: Value, cfg: &DbSinkConfig) -> Vec<Change> {
        from_record(&record(v), cfg, None)
            .unwrap()
            .into_iter()
            .map(|c| c.resolve(&["id".to_owned()], &[]).unwrap())
            .collect()
    }

    #[test]
    fn the_topic_chooses_the_table_never_the_envelope() {
        // An envelope on the orders topic naming another table is refused.
        let hostile = json!({"op": "c", "after": {"id": 1}, "source": {"table": "sluice_offsets"}});
        let err = from_record(&record(hostile.clone()), &cdc(&[]), None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("names table sluice_offsets, but its topic maps to table orders"),
            "{err}"
        );
        // A renamed target takes the topic's records, envelope naming the source table.
        let renamed = cdc(&[("topicToTable", "retail.public.orders:orders_copy")]);
        let ok = json!({"op": "c", "after": {"id": 1}, "source": {"table": "orders"}});
        assert_eq!(resolved(ok.clone(), &renamed)[0].table, "orders_copy");
        // Routing by the envelope is opt-in, and only to listed tables.
        let routed = cdc(&[("tablesFromEnvelope", "orders,items")]);
        assert_eq!(resolved(ok, &routed)[0].table, "orders");
        assert!(from_record(&record(hostile), &routed, None).is_err());
    }

    #[test]
    fn envelopes_become_upserts_deletes_and_optional_truncates() {
        let cfg = cdc(&[]);
        let up = resolved(
            envelope(
                "u",
                Value::Null,
                json!({"id": 1, "v": "x", "doc": UNAVAILABLE}),
            ),
            &cfg,
        );
        assert_eq!((up[0].kind, up[0].table.as_str()), (Kind::Upsert, "orders"));
        assert_eq!(
            up[0].values,
            json!({"id": 1, "v": "x"}).as_object().unwrap().clone(),
            "the unavailable value is left out"
        );
        let del = resolved(
            envelope("d", json!({"id": 1, "v": null}), Value::Null),
            &cfg,
        );
        assert_eq!((del[0].kind, del[0].values.len()), (Kind::Delete, 1));
        assert!(resolved(envelope("t", Value::Null, Value::Null), &cfg).is_empty());
        let cfg = cdc(&[("allowTruncate", "true")]);
        assert_eq!(
            resolved(envelope("t", Value::Null, Value::Null), &cfg)[0].kind,
            Kind::Truncate
        );
    }

    #[test]
    fn plain_rows_follow_insert_mode_and_null_value_action() {
        let cfg = config(&[
            ("tableName", "items"),
            ("insertMode", "UPDATE"),
            ("nullValueAction", "DELETE"),
        ]);
        let row = resolved(json!({"id": 2, "v": "y"}), &cfg);
        assert_eq!(
            (row[0].kind, row[0].table.as_str()),
            (Kind::Update, "items")
        );
        let tombstone = SinkRecord {
            key: Some("{\"id\":2}".into()),
            value: None,
            ..record(Value::Null)
        };
        let del = from_record(&tombstone, &cfg, None).unwrap();
        assert_eq!(del[0].kind, Kind::Delete);
        let cfg = config(&[("tableName", "items")]);
        assert!(
            from_record(&tombstone, &cfg, None).is_err(),
            "FAIL is the default"
        );
        assert!(from_record(&record(json!([1])), &cfg, None).is_err());
    }

    #[test]
    fn a_plain_rows_action_property_overrides_insert_mode_when_the_sink_follows_it() {
        let cfg = config(&[
            ("tableName", "items"),
            ("insertMode", "INSERT"),
            ("inputFormat", "ROW_WITH_ACTION"),
        ]);
        let with = |action: &str| SinkRecord {
            properties: vec![("ACTION".into(), action.into())],
            ..record(json!({"id": 2, "v": "y"}))
        };
        for (action, kind) in [
            ("UPSERT", Kind::Upsert),
            ("UPDATE", Kind::Update),
            ("INSERT", Kind::Insert),
            ("DELETE", Kind::Delete),
        ] {
            let changes = from_record(&with(action), &cfg, None).map_err(|e| e.to_string());
            assert_eq!(changes.map(|c| c[0].kind), Ok(kind), "{action}");
        }
        let refused = from_record(&with("MERGE"), &cfg, None).map_err(|e| e.to_string());
        assert!(refused.is_err_and(|e| e.contains("ACTION `MERGE` is not one of")));
        // A plain-row sink refuses a record that asks for an action.
        let rows = config(&[("tableName", "items"), ("insertMode", "UPSERT")]);
        let refused = from_record(&with("DELETE"), &rows, None).map_err(|e| e.to_string());
        assert!(
            refused.is_err_and(|e| e.contains("ACTION=DELETE, which this sink does not follow")),
            "a plain-row sink never deletes because a record asks"
        );
        // An envelope says what it does itself.
        let envelope = SinkRecord {
            properties: vec![("ACTION".into(), "DELETE".into())],
            ..record(envelope("c", Value::Null, json!({"id": 1, "v": "x"})))
        };
        let changes = from_record(&envelope, &cdc(&[]), None).map_err(|e| e.to_string());
        assert_eq!(changes.map(|c| c[0].kind), Ok(Kind::Upsert));
    }

    #[test]
    fn a_row_shaped_like_a_delete_is_written_as_a_row() {
        // GIVEN a plain-row sink, in each insert mode
        for (mode, kind) in [
            ("INSERT", Kind::Insert),
            ("UPSERT", Kind::Upsert),
            ("UPDATE", Kind::Update),
        ] {
            let cfg = config(&[("tableName", "orders"), ("insertMode", mode)]);
            // WHEN a record looks like a Debezium delete
            let hostile = json!({"op": "d", "source": {}, "before": {"id": 1}});
            let changes = from_record(&record(hostile), &cfg, None).unwrap();
            // THEN it is a row of the insert mode, its fields columns
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0].kind, kind, "{mode}");
            assert!(changes[0].values.contains_key("op"));
        }
        // AND a change-event sink refuses a value that is not one
        let err = from_record(&record(json!({"id": 1})), &cdc(&[]), None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not a Debezium change event"), "{err}");
    }

    #[test]
    fn a_missing_key_is_refused() {
        let cfg = cdc(&[]);
        let c = from_record(
            &record(envelope("c", Value::Null, json!({"v": 1}))),
            &cfg,
            None,
        )
        .unwrap()
        .remove(0);
        assert!(c.resolve(&["id".to_owned()], &[]).is_err());
    }

    #[test]
    fn groups_batch_alike_changes_and_keep_per_key_order() {
        let cfg = cdc(&[]);
        let mut all = Vec::new();
        for v in [
            envelope("c", Value::Null, json!({"id": 1, "v": "a"})),
            envelope("c", Value::Null, json!({"id": 2, "v": "b"})),
            envelope("u", Value::Null, json!({"id": 1, "v": "c"})),
            envelope("d", json!({"id": 2}), Value::Null),
            envelope("d", json!({"id": 3}), Value::Null),
        ] {
            all.extend(resolved(v, &cfg));
        }
        let g = groups(&all);
        let shape: Vec<(Kind, usize)> = g.iter().map(|g| (g.kind, g.rows.len())).collect();
        assert_eq!(
            shape,
            [(Kind::Upsert, 2), (Kind::Upsert, 1), (Kind::Delete, 2)]
        );
    }
    #[test]
    fn statements_are_cut_by_rows_and_by_bytes() {
        let cfg = cdc(&[]);
        let row = |id: i64, size: usize| {
            resolved(
                envelope("c", Value::Null, json!({"id": id, "v": "x".repeat(size)})),
                &cfg,
            )
            .remove(0)
        };
        let rows: Vec<Change> = (0..5).map(|i| row(i, 100)).collect();
        let refs: Vec<&Change> = rows.iter().collect();
        let lens = |cut: Vec<&[&Change]>| cut.iter().map(|s| s.len()).collect::<Vec<_>>();
        assert_eq!(lens(statements(&refs, 2, usize::MAX)), [2, 2, 1]);
        assert_eq!(lens(statements(&refs, 100, 3 * 124)), [3, 2]);
        // Four rows of 4.8 MB under a 15 MiB limit: three, then one.
        let big: Vec<Change> = (0..4).map(|i| row(i, 4_800_000)).collect();
        let refs: Vec<&Change> = big.iter().collect();
        assert_eq!(lens(statements(&refs, 1000, 15 << 20)), [3, 1]);
        // A row larger than the limit goes alone.
        assert_eq!(lens(statements(&refs, 1000, 1 << 20)), [1, 1, 1, 1]);
        assert!(statements(&[], 10, 10).is_empty());
    }
}
