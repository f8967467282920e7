//! Debezium's `ByLogicalTableRouter`: the events of tables whose topic
//! matches `topic.regex` go to the topic `topic.replacement` makes of it,
//! as Debezium 1.9 routes them.
//!
//! - Several tables may share the new topic (shards of one logical table).
//!   So that their keys stay apart, each key gets a field
//!   (`key.field.name`, `__dbz__physicalTableIdentifier` unless set) that
//!   holds the table's own topic, or what `key.field.regex` /
//!   `key.field.replacement` make of it; `key.enforce.uniqueness: false`
//!   leaves keys as they are.
//! - The key's and the value's schemas are named after the new topic.
//! - A topic the pattern does not match is left alone.

use serde_json::{Map, Value, json};

use super::pattern::{Pattern, Replacement};
use crate::postgres_cdc::schema::avro_namespace;

/// `key.field.name` unless set.
pub(crate) const DEFAULT_KEY_FIELD: &str = "__dbz__physicalTableIdentifier";

/// The field added to keys, and how its value is made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyField {
    pub(crate) name: String,
    /// `key.field.regex` and `key.field.replacement`, over the table's topic.
    pub(crate) rewrite: Option<(Pattern, Replacement)>,
}

/// The transform, configured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Route {
    pub(crate) topic: Pattern,
    pub(crate) replacement: Replacement,
    /// `None` under `key.enforce.uniqueness: false`.
    pub(crate) key: Option<KeyField>,
}

impl Route {
    /// The topic a table's events go to; `None` leaves them where they are.
    /// An empty name (the replacement made nothing of this topic) leaves
    /// them too, as Debezium does; the caller warns.
    pub(crate) fn topic(&self, topic: &str) -> Option<String> {
        self.topic.replace(topic, &self.replacement)
    }

    /// A key (a JSON object) of an event of `topic`, with the table's
    /// identifier added.
    pub(crate) fn key(&self, key: &str, topic: &str) -> Result<String, String> {
        let Some(field) = &self.key else {
            return Ok(key.to_owned());
        };
        let mut object: Map<String, Value> = serde_json::from_str(key)
            .map_err(|_| format!("the key of an event of {topic} is not a JSON object"))?;
        let identifier = field
            .rewrite
            .as_ref()
            .and_then(|(p, r)| p.replace(topic, r))
            .unwrap_or_else(|| topic.to_owned());
        if object
            .insert(field.name.clone(), Value::String(identifier))
            .is_some()
        {
            return Err(clash(&field.name));
        }
        Ok(Value::Object(object).to_string())
    }

    /// The key's schema with the identifier's field, when keys get one.
    pub(crate) fn key_schema(&self, key: &mut Value) -> Result<(), String> {
        let Some(field) = &self.key else {
            return Ok(());
        };
        let Some(Value::Array(fields)) = key.get_mut("fields") else {
            return Err("the key's schema has no fields".into());
        };
        if fields
            .iter()
            .any(|f| f.get("name").and_then(Value::as_str) == Some(field.name.as_str()))
        {
            return Err(clash(&field.name));
        }
        fields.push(json!({"name": field.name, "type": "string"}));
        Ok(())
    }
}

fn clash(name: &str) -> String {
    format!(
        "the table's key has a column {name}, which the router adds to keys: set key.field.name"
    )
}

/// Name a schema's records (the key, the envelope, the row) after topic
/// `to` rather than `from`, as Debezium names them after the new topic.
pub(crate) fn rename(schema: &mut Value, from: &str, to: &str) {
    rename_in(schema, &avro_namespace(from), &avro_namespace(to));
}

/// [`rename`] with the namespaces already made.
fn rename_in(schema: &mut Value, from: &str, to: &str) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (key.as_str(), &*value) {
                    ("namespace", Value::String(ns)) if ns == from => {
                        *value = Value::String(to.to_owned());
                    }
                    ("connect.name" | "type", Value::String(name)) => {
                        if let Some(new) = renamed(name, from, to) {
                            *value = Value::String(new);
                        }
                    }
                    _ => rename_in(value, from, to),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    // A union names a record defined earlier.
                    Value::String(name) => {
                        if let Some(new) = renamed(name, from, to) {
                            *name = new;
                        }
                    }
                    other => rename_in(other, from, to),
                }
            }
        }
        _ => {}
    }
}

/// A full name in namespace `from`, in namespace `to`.
fn renamed(name: &str, from: &str, to: &str) -> Option<String> {
    name.strip_prefix(from)
        .filter(|rest| [".Key", ".Value", ".Envelope"].contains(rest))
        .map(|rest| format!("{to}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debezium's documented example: three shards of `customers` routed
    /// to one topic.
    fn shards(key: Option<KeyField>) -> Route {
        let topic = Pattern::new("(.*)customers_shard(.*)").unwrap();
        let replacement = Replacement::new("$1customers_all_shards", &topic).unwrap();
        Route {
            topic,
            replacement,
            key,
        }
    }

    fn default_key() -> Option<KeyField> {
        Some(KeyField {
            name: DEFAULT_KEY_FIELD.into(),
            rewrite: None,
        })
    }

    #[test]
    fn shards_go_to_one_topic_and_their_keys_stay_apart() {
        let r = shards(default_key());
        for n in 1..=3 {
            let from = format!("myserver.mydb.customers_shard{n}");
            assert_eq!(
                r.topic(&from).as_deref(),
                Some("myserver.mydb.customers_all_shards")
            );
            assert_eq!(
                r.key(r#"{"id":1}"#, &from).unwrap(),
                format!(r#"{{"__dbz__physicalTableIdentifier":"{from}","id":1}}"#)
            );
        }
        assert_eq!(r.topic("myserver.mydb.orders"), None);
    }

    #[test]
    fn the_key_field_is_named_rewritten_or_left_out_as_set() {
        let regex = Pattern::new(".*customers_shard(.*)").unwrap();
        let replacement = Replacement::new("shard$1", &regex).unwrap();
        let r = shards(Some(KeyField {
            name: "shard".into(),
            rewrite: Some((regex, replacement)),
        }));
        assert_eq!(
            r.key(r#"{"id":1}"#, "s.d.customers_shard2").unwrap(),
            r#"{"id":1,"shard":"shard2"}"#
        );
        assert!(
            r.key(r#"{"shard":1}"#, "s.d.customers_shard2")
                .unwrap_err()
                .contains("set key.field.name")
        );
        let plain = shards(None);
        assert_eq!(
            plain.key(r#"{"id":1}"#, "s.d.customers_shard2").unwrap(),
            r#"{"id":1}"#
        );
        let empty = Pattern::new("drop.me").unwrap();
        let nothing = Replacement::new("", &empty).unwrap();
        let r = Route {
            topic: empty,
            replacement: nothing,
            key: None,
        };
        assert_eq!(r.topic("drop.me").as_deref(), Some(""));
    }

    #[test]
    fn schemas_are_named_after_the_new_topic() {
        let mut value = json!({
            "type": "record", "name": "Envelope", "namespace": "s.d.customers_shard1",
            "fields": [
                {"name": "before", "type": ["null", {"type": "record", "name": "Value",
                    "namespace": "s.d.customers_shard1", "fields": [],
                    "connect.name": "s.d.customers_shard1.Value"}]},
                {"name": "after", "type": ["null", "s.d.customers_shard1.Value"]},
                {"name": "source", "type": {"type": "record", "name": "Source",
                    "namespace": "io.debezium.connector.postgresql", "fields": []}},
            ],
            "connect.name": "s.d.customers_shard1.Envelope",
        });
        rename(
            &mut value,
            "s.d.customers_shard1",
            "s.d.customers_all_shards",
        );
        assert_eq!(value["namespace"], "s.d.customers_all_shards");
        assert_eq!(value["connect.name"], "s.d.customers_all_shards.Envelope");
        assert_eq!(
            value["fields"][0]["type"][1]["namespace"],
            "s.d.customers_all_shards"
        );
        assert_eq!(
            value["fields"][0]["type"][1]["connect.name"],
            "s.d.customers_all_shards.Value"
        );
        assert_eq!(
            value["fields"][1]["type"][1],
            "s.d.customers_all_shards.Value"
        );
        assert_eq!(
            value["fields"][2]["type"]["namespace"],
            "io.debezium.connector.postgresql"
        );
        // Only the names the source made after the topic are renamed.
        let mut logical = json!({"type": "string", "connect.name": "s.d.customers_shard1.Json"});
        rename(
            &mut logical,
            "s.d.customers_shard1",
            "s.d.customers_all_shards",
        );
        assert_eq!(logical["connect.name"], "s.d.customers_shard1.Json");
        let mut key = json!({"type": "record", "name": "Key", "namespace": "s.d.customers_shard1",
                             "fields": [{"name": "id", "type": "long"}]});
        shards(default_key()).key_schema(&mut key).unwrap();
        assert_eq!(
            key["fields"][1],
            json!({"name": "__dbz__physicalTableIdentifier", "type": "string"})
        );
    }
}
