//! What a sink does with a record the target rejects: try it
//! `maxMessageRetries` more times, then publish it to the dead-letter topic
//! with the error and where it came from, or stop the sink when there is no
//! dead-letter topic, so that nothing is dropped.

use sluice_connectors::{ConnectorError, Sink, SinkRecord, SourceRecord, Written};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::broker::{Broker, Publish};
use super::sink_task::write_retrying;
use super::status::ConnectorStatus;
use super::{Backoff, TaskError};
use crate::config::SinkDef;
use crate::pulsar::{Access, ProducerOptions};

/// Properties set on a dead-lettered message.
pub const ERROR_PROPERTY: &str = "sluice.error";
/// The topic the dead-lettered message came from.
pub const ORIGIN_TOPIC_PROPERTY: &str = "sluice.origin.topic";
/// Its message id there.
pub const ORIGIN_MESSAGE_ID_PROPERTY: &str = "sluice.origin.message_id";
/// The sink that gave up on it.
pub const ORIGIN_SINK_PROPERTY: &str = "sluice.origin.sink";

/// A sink's handling of rejected records; its dead-letter producer opens
/// with the first one.
pub(crate) struct DeadLetters<'a, B: Broker> {
    def: &'a SinkDef,
    client: &'a B,
    producer: Option<B::Producer>,
}

impl<'a, B: Broker> DeadLetters<'a, B> {
    pub(crate) fn new(def: &'a SinkDef, client: &'a B) -> Self {
        Self {
            def,
            client,
            producer: None,
        }
    }

    /// Try `record` again, and dead-letter it if it is still rejected.
    /// Called before the records behind it are written: under
    /// EFFECTIVELY_ONCE the target skips a record at or below marks that
    /// later records move, so a retry after them would look applied.
    pub(crate) async fn reject<S: Sink>(
        &mut self,
        sink: &mut S,
        record: &SinkRecord,
        first_error: ConnectorError,
        status: &ConnectorStatus,
        shutdown: &CancellationToken,
    ) -> Result<(), TaskError> {
        let def = self.def;
        let Some(error) = retry(def, sink, record, first_error, status, shutdown).await? else {
            return Ok(());
        };
        let Some(topic) = &def.dead_letter_topic else {
            error!(
                connector = %def.name, topic = %record.topic, message_id = %record.message_id, error = %error,
                "the target rejects a record and no deadLetterTopic is set; stopping this sink"
            );
            return Err(TaskError::Connector(error));
        };
        if self.producer.is_none() {
            let options = ProducerOptions::plain(Access::Shared);
            self.producer = Some(self.client.producer(topic, &options).await?);
        }
        if let Some(producer) = &mut self.producer {
            producer
                .publish(dead_letter(def, record, &error), None)
                .await
                .await?;
        }
        status.count_dead_lettered(1);
        warn!(
            connector = %def.name, topic = %record.topic, message_id = %record.message_id,
            dead_letter_topic = %topic, error = %error, "record dead-lettered"
        );
        Ok(())
    }
}

/// Try a rejected record `maxMessageRetries` more times. `None` when one of
/// the attempts succeeds, else the last error.
async fn retry<S: Sink>(
    def: &SinkDef,
    sink: &mut S,
    record: &SinkRecord,
    first_error: ConnectorError,
    status: &ConnectorStatus,
    shutdown: &CancellationToken,
) -> Result<Option<ConnectorError>, TaskError> {
    let mut last = first_error;
    let mut backoff = Backoff::default();
    for _ in 0..def.max_retries {
        tokio::select! {
            () = shutdown.cancelled() => return Err(TaskError::Connector(last)),
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
        match write_retrying(sink, std::slice::from_ref(record), None, status, shutdown).await? {
            Ok(Written::All) => return Ok(None),
            Ok(Written::AllBut(mut refused)) => {
                if let Some((_, e)) = refused.pop() {
                    last = e;
                }
            }
            Err(e) => last = e,
        }
    }
    Ok(Some(last))
}

/// The dead-letter message: the original key, value and properties, plus
/// the error and where the record came from.
fn dead_letter(def: &SinkDef, record: &SinkRecord, error: &ConnectorError) -> SourceRecord {
    let mut properties = record.properties.clone();
    properties.push((ERROR_PROPERTY.to_owned(), error_chain(error)));
    properties.push((ORIGIN_TOPIC_PROPERTY.to_owned(), record.topic.clone()));
    properties.push((
        ORIGIN_MESSAGE_ID_PROPERTY.to_owned(),
        record.message_id.to_string(),
    ));
    properties.push((ORIGIN_SINK_PROPERTY.to_owned(), def.name.clone()));
    SourceRecord {
        topic: None,
        key: record.key.clone(),
        value: record.value.clone(),
        properties,
        event_time_ms: record.event_time_ms,
        // The sequence travels in the copied properties.
        sequence: None,
        schema: None,
    }
}

fn error_chain(error: &ConnectorError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
