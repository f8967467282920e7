//! The schema a source's producer declares: a connector's
//! [`RecordSchema`] as Pulsar's `KEY_VALUE` schema, key and value each JSON
//! and the key carried as the message key (`SEPARATED`), named as Pulsar's
//! own Debezium source names them.

use magnetar::proto::pb;
use sluice_connectors::RecordSchema;

/// What Pulsar's Kafka Connect adaptor calls a JSON sub-schema.
const SUB_SCHEMA_NAME: &str = "KafKaJson";
/// A JSON sub-schema's properties: its Avro definition is read from byte 0.
const SUB_SCHEMA_PROPERTIES: &str = r#"{"__AVRO_READ_OFFSET__":"0"}"#;

/// `schema` as a `KEY_VALUE` schema of two JSON schemas.
pub(super) fn key_value(schema: &RecordSchema) -> pb::Schema {
    let mut data = Vec::with_capacity(8 + schema.key.len() + schema.value.len());
    for part in [&schema.key, &schema.value] {
        let len = i32::try_from(part.len()).unwrap_or(i32::MAX);
        data.extend_from_slice(&len.to_be_bytes());
        data.extend_from_slice(part.as_bytes());
    }
    let property = |key: &str, value: &str| pb::KeyValue {
        key: key.to_owned(),
        value: value.to_owned(),
    };
    pb::Schema {
        name: "KeyValue".to_owned(),
        schema_data: data.into(),
        r#type: pb::schema::Type::KeyValue as i32,
        properties: vec![
            property("key.schema.name", SUB_SCHEMA_NAME),
            property("key.schema.type", "JSON"),
            property("key.schema.properties", SUB_SCHEMA_PROPERTIES),
            property("value.schema.name", SUB_SCHEMA_NAME),
            property("value.schema.type", "JSON"),
            property("value.schema.properties", SUB_SCHEMA_PROPERTIES),
            property("kv.encoding.type", "SEPARATED"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_definitions_are_length_prefixed_in_order() {
        let schema = key_value(&RecordSchema {
            key: "{k}".into(),
            value: "{value}".into(),
        });
        assert_eq!(
            schema.schema_data.as_ref(),
            b"\0\0\0\x03{k}\0\0\0\x07{value}".as_slice()
        );
        assert_eq!(schema.r#type, pb::schema::Type::KeyValue as i32);
        assert!(
            schema
                .properties
                .iter()
                .any(|p| p.key == "kv.encoding.type" && p.value == "SEPARATED")
        );
    }
}
