//! The schemas that a topic's records were written with, by version, for
//! sinks that decode values by them (see `SinkRecord::value_schema`).
//!
//! A message carries the version of the schema its producer declared;
//! the definition is read once per version from the admin REST API
//! (`GET /admin/v2/schemas/<topic>/schema/<version>`, which takes the
//! permission to look the topic up).
//!
//! A version the API cannot be asked about (none configured, the role may
//! not, no such version) is a miss: values pass as they are, with a
//! warning per version (at most one a minute per topic, with a count of
//! the others). A miss is remembered for [`MISS_TTL`] only, and apart from
//! the versions read: a producer that stamps made-up versions costs one
//! lookup each, but can neither keep a real version from being read nor
//! fill the memory. A failure that asking again may mend (the API
//! unreachable, or failing on its side) fails the receive, so the records
//! come again once it answers, rather than pass undecoded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::warn;

use super::PulsarError;
use super::admin::Get;

/// Versions read and kept per topic, at most; the least recently used
/// goes first. A topic's schema rarely has more.
const MAX_VERSIONS: usize = 64;
/// Misses remembered per topic, at most; the oldest goes first.
const MAX_MISSES: usize = 256;
/// How long a version that could not be read is not asked for again.
const MISS_TTL: Duration = Duration::from_secs(60);
/// At most one warning about unreadable versions per topic this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One topic's schema definitions, by version.
pub(super) struct ValueSchemas {
    get: Option<Arc<Get>>,
    topic: String,
    /// Versions read: their definition (`None` when the schema describes
    /// no record), and when each was last used.
    known: HashMap<Bytes, (Option<Arc<str>>, u64)>,
    /// Versions that could not be read, and when.
    misses: HashMap<Bytes, Instant>,
    uses: u64,
    /// When the last warning went out, and the misses not warned about since.
    warned: Option<(Instant, u64)>,
}

impl ValueSchemas {
    /// `get` asks the admin REST API; without it no schema is known.
    pub(super) fn new(get: Option<Arc<Get>>, topic: &str) -> Self {
        Self {
            get,
            topic: topic.to_owned(),
            known: HashMap::new(),
            misses: HashMap::new(),
            uses: 0,
            warned: None,
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
        self.uses += 1;
        if let Some((definition, used)) = self.known.get_mut(version) {
            *used = self.uses;
            return Ok(definition.clone());
        }
        if self
            .misses
            .get(version)
            .is_some_and(|at| at.elapsed() < MISS_TTL)
        {
            return Ok(None);
        }
        match self.read(version).await? {
            Ok(definition) => {
                self.misses.remove(version);
                if self.known.len() >= MAX_VERSIONS
                    && let Some(oldest) = self
                        .known
                        .iter()
                        .min_by_key(|(_, (_, used))| *used)
                        .map(|(v, _)| v.clone())
                {
                    self.known.remove(&oldest);
                }
                self.known
                    .insert(version.clone(), (definition.clone(), self.uses));
                Ok(definition)
            }
            Err(why) => {
                self.missed(version, &why);
                Ok(None)
            }
        }
    }

    /// Ask the admin API for `version`: its definition, why it cannot be
    /// had, or an error worth asking again for.
    async fn read(&self, version: &Bytes) -> Result<Result<Option<Arc<str>>, String>, PulsarError> {
        let (Some(get), Ok(number)) = (&self.get, <[u8; 8]>::try_from(version.as_ref())) else {
            return Ok(Err(if self.get.is_none() {
                "no admin REST API to ask".to_owned()
            } else {
                format!("a schema version of {} bytes", version.len())
            }));
        };
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
            Ok(reply) => Ok(Ok(value_definition(&reply.body))),
            Err(e) if e.is_transient() => Err(PulsarError::new(
                format!("read the schema of {} at version {number}", self.topic),
                e,
            )),
            Err(e) => Ok(Err(format!("version {number}: {e}"))),
        }
    }

    /// Remember a miss for a while, and warn about it unless a warning went
    /// out lately.
    fn missed(&mut self, version: &Bytes, why: &str) {
        if self.misses.len() >= MAX_MISSES {
            self.misses.retain(|_, at| at.elapsed() < MISS_TTL);
            if self.misses.len() >= MAX_MISSES
                && let Some(oldest) = self
                    .misses
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(v, _)| v.clone())
            {
                self.misses.remove(&oldest);
            }
        }
        self.misses.insert(version.clone(), Instant::now());
        match &mut self.warned {
            Some((at, unwarned)) if at.elapsed() < WARN_EVERY => *unwarned += 1,
            _ => {
                let unwarned = self.warned.map_or(0, |(_, n)| n);
                warn!(topic = %self.topic, error = %why, others_since_last_warning = unwarned,
                    "cannot read the schema a record was written with: values that only it \
                     explains (Debezium's precise decimals, millisecond timestamps) pass undecoded; \
                     asked again in a minute");
                self.warned = Some((Instant::now(), 0));
            }
        }
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
pub(crate) fn value_definition(answer: &str) -> Option<Arc<str>> {
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
