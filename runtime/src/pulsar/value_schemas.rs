//! The schemas that a topic's records were written with, by version, for
//! sinks that decode values by them (see `SinkRecord::value_schema`).
//!
//! A message carries the version of the schema its producer declared;
//! the definition is read once per version from the admin REST API
//! (`GET /admin/v2/schemas/<topic>/schema/<version>`, which takes the
//! permission to look the topic up).
//!
//! A version the API cannot be asked about (none configured, the role may
//! not, no such version) is remembered as having no definition, with one
//! warning: values pass as they are. A failure that asking again may mend
//! (the API unreachable, or failing on its side) fails the receive, so the
//! records come again once it answers, rather than pass undecoded. A
//! producer stamps the version, so the versions remembered are bounded.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use super::PulsarError;
use super::admin::Get;

/// Versions remembered per topic, at most: a topic's schema rarely has more,
/// and a producer stamping arbitrary versions asks no more than this.
const MAX_VERSIONS: usize = 64;

/// One topic's schema definitions, by version.
pub(super) struct ValueSchemas {
    get: Option<Arc<Get>>,
    topic: String,
    known: HashMap<Bytes, Option<Arc<str>>>,
    warned: bool,
}

impl ValueSchemas {
    /// `get` asks the admin REST API; without it no schema is known.
    pub(super) fn new(get: Option<Arc<Get>>, topic: &str) -> Self {
        Self {
            get,
            topic: topic.to_owned(),
            known: HashMap::new(),
            warned: false,
        }
    }

    /// The definition of the value's schema at `version`, if the topic has
    /// one that describes records (JSON or Avro, or the value of a
    /// `KEY_VALUE` of them).
    pub(super) async fn value_schema(
        &mut self,
        version: Option<&Bytes>,
    ) -> Result<Option<Arc<str>>, PulsarError> {
        let Some(version) = version.filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        if let Some(known) = self.known.get(version) {
            return Ok(known.clone());
        }
        let answer = match (&self.get, <[u8; 8]>::try_from(version.as_ref())) {
            _ if self.known.len() >= MAX_VERSIONS => {
                Err(format!("more than {MAX_VERSIONS} schema versions seen"))
            }
            (None, _) => Err("no admin REST API to ask".to_owned()),
            (Some(_), Err(_)) => Err(format!("a schema version of {} bytes", version.len())),
            (Some(get), Ok(number)) => {
                let get = Arc::clone(get);
                let number = i64::from_be_bytes(number);
                let path = format!(
                    "/admin/v2/schemas/{}/schema/{number}",
                    schema_name(&self.topic)
                );
                let reply = tokio::task::spawn_blocking(move || get(path))
                    .await
                    .map_err(|e| PulsarError::new("read a schema", e))?;
                match reply {
                    Ok(reply) => Ok(value_definition(&reply.body)),
                    Err(e) if e.is_transient() => {
                        return Err(PulsarError::new(
                            format!("read the schema of {} at version {number}", self.topic),
                            e,
                        ));
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let definition = answer.unwrap_or_else(|e| {
            if !std::mem::replace(&mut self.warned, true) {
                warn!(topic = %self.topic, error = %e,
                    "cannot read the schema this topic's records were written with: values \
                     that only it explains (Debezium's precise decimals, millisecond \
                     timestamps) will not be decoded");
            }
            None
        });
        if self.known.len() < MAX_VERSIONS {
            self.known.insert(version.clone(), definition.clone());
        }
        Ok(definition)
    }
}

/// The topic as the schema API names it: `tenant/namespace/topic`, without
/// the domain or a partition's suffix.
fn schema_name(topic: &str) -> &str {
    let name = topic.split_once("://").map_or(topic, |(_, rest)| rest);
    match name.rsplit_once("-partition-") {
        Some((base, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => base,
        _ => name,
    }
}

/// From a `GET …/schema/<version>` answer, the definition of the value: a
/// JSON or Avro schema's own, or a `KEY_VALUE` schema's value half.
fn value_definition(answer: &str) -> Option<Arc<str>> {
    let answer: serde_json::Value = serde_json::from_str(answer).ok()?;
    let data = answer["data"].as_str()?;
    match answer["type"].as_str()? {
        "JSON" | "AVRO" => Some(Arc::from(data)),
        "KEY_VALUE" => {
            let data: serde_json::Value = serde_json::from_str(data).ok()?;
            let value = &data["value"];
            value.is_object().then(|| Arc::from(value.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_value_definition_is_found_in_each_kind_of_schema() {
        let kv = json!({"version": 1, "type": "KEY_VALUE",
            "data": json!({"key": {"type": "record"}, "value": {"type": "record", "name": "Envelope"}}).to_string()});
        assert_eq!(
            value_definition(&kv.to_string()).as_deref(),
            Some(r#"{"name":"Envelope","type":"record"}"#)
        );
        let plain = json!({"version": 0, "type": "JSON", "data": "{\"type\":\"record\"}"});
        assert_eq!(
            value_definition(&plain.to_string()).as_deref(),
            Some("{\"type\":\"record\"}")
        );
        let bytes = json!({"version": 0, "type": "BYTES", "data": ""});
        assert_eq!(value_definition(&bytes.to_string()), None);
        assert_eq!(value_definition("not json"), None);
    }

    #[test]
    fn the_schema_api_names_a_partitions_topic() {
        assert_eq!(
            schema_name("persistent://t/n/orders-partition-3"),
            "t/n/orders"
        );
        assert_eq!(schema_name("persistent://t/n/orders"), "t/n/orders");
        assert_eq!(schema_name("t/n/a-partition-x"), "t/n/a-partition-x");
    }
}
