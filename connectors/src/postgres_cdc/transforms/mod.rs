//! Debezium's transforms on the source's events: `unwrap`
//! (`ExtractNewRecordState`) and the logical-table router
//! (`ByLogicalTableRouter`), configured with the keys Kafka Connect reads
//! (`transforms`, `transforms.<alias>.type`, `transforms.<alias>.<key>`).
//!
//! They apply where Kafka Connect applies them: to each event as it leaves
//! the source. Everything inside the source (the snapshot's chunks, which
//! match streamed changes against copied rows, and its last-row mark) sees
//! the events whole.

mod pattern;
mod route;
pub(crate) mod settings;
mod unwrap;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use crate::api::{ConnectorError, RecordSchema, SourceBatch, SourceRecord};
pub(crate) use settings::from_configs;
use unwrap::Unwrapped;

/// The transforms a source's configs name; none by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transforms {
    unwrap: Option<unwrap::Unwrap>,
    route: Option<route::Route>,
}

impl Transforms {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.unwrap.is_none() && self.route.is_none()
    }
}

/// The transforms at work: what they do to each record, and the schemas
/// they made, by the table's own topic (so that the records of one table
/// share one schema, as untransformed ones do).
#[derive(Debug)]
pub(crate) struct Transformer {
    transforms: Transforms,
    schemas: HashMap<String, (Arc<RecordSchema>, Arc<RecordSchema>)>,
    /// Topics the router made an empty name of, warned about once.
    unrouted: HashSet<String>,
}

impl Transformer {
    pub(crate) fn new(transforms: Transforms) -> Self {
        Self {
            transforms,
            schemas: HashMap::new(),
            unrouted: HashSet::new(),
        }
    }

    /// Transform a batch's records in place, dropping those the transforms
    /// drop. The batch keeps its checkpoint and state.
    pub(crate) fn batch(&mut self, batch: &mut SourceBatch) -> Result<(), ConnectorError> {
        if self.transforms.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut batch.records);
        batch.records.reserve(records.len());
        for record in records {
            if let Some(r) = self.record(record)? {
                batch.records.push(r);
            }
        }
        Ok(())
    }

    /// One record, or `None` when it is dropped.
    fn record(&mut self, mut record: SourceRecord) -> Result<Option<SourceRecord>, ConnectorError> {
        let Some(topic) = record.topic.clone() else {
            return Ok(Some(record));
        };
        let fail = |e: String| ConnectorError::permanent(format!("transforms, on {topic}: {e}"));
        let routed = match self.transforms.route.as_ref().and_then(|r| r.topic(&topic)) {
            Some(empty) if empty.is_empty() => {
                if self.unrouted.insert(topic.clone()) {
                    tracing::warn!(topic = %topic, "topic.replacement makes an empty topic name of this topic: its events keep it");
                }
                None
            }
            routed => routed,
        };
        if let Some(unwrap) = &self.transforms.unwrap {
            let bytes = record.value.take().unwrap_or_default();
            let event = unwrap.read(&bytes).map_err(fail)?;
            record.properties.extend(unwrap.headers(&event));
            match unwrap.value(&event) {
                Unwrapped::Dropped => return Ok(None),
                Unwrapped::Null => record.value = None,
                Unwrapped::Row(row) => record.value = Some(row),
            }
        }
        if let (Some(route), Some(to)) = (&self.transforms.route, &routed) {
            if let Some(key) = &record.key {
                record.key = Some(route.key(key, &topic).map_err(fail)?);
            }
            record.topic = Some(to.clone());
        }
        if let Some(schema) = record.schema.take() {
            record.schema = Some(
                self.schema(&topic, routed.as_deref(), schema)
                    .map_err(fail)?,
            );
        }
        Ok(Some(record))
    }

    /// The schema of `topic`'s transformed records, made once per schema
    /// of the table.
    fn schema(
        &mut self,
        topic: &str,
        routed: Option<&str>,
        schema: Arc<RecordSchema>,
    ) -> Result<Arc<RecordSchema>, String> {
        if let Some((from, made)) = self.schemas.get(topic)
            && Arc::ptr_eq(from, &schema)
        {
            return Ok(Arc::clone(made));
        }
        let parse = |text: &str| -> Result<Value, String> {
            serde_json::from_str(text)
                .map_err(|e| format!("the event's schema does not parse: {e}"))
        };
        let mut key = parse(&schema.key)?;
        let mut value = parse(&schema.value)?;
        if let Some(unwrap) = &self.transforms.unwrap {
            value = unwrap.schema(&value)?;
        }
        if let (Some(route), Some(to)) = (&self.transforms.route, routed) {
            route.key_schema(&mut key)?;
            route::rename(&mut key, topic, to);
            route::rename(&mut value, topic, to);
        }
        let made = Arc::new(RecordSchema {
            key: key.to_string(),
            value: value.to_string(),
        });
        self.schemas
            .insert(topic.to_owned(), (schema, Arc::clone(&made)));
        Ok(made)
    }
}
