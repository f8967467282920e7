//! What one request carries: the body, Pulsar's headers, the idempotency
//! key and the signature.

use super::*;

/// Builds each record's request.
pub(super) struct Requests<'a> {
    pub(super) config: &'a HttpSinkConfig,
    pub(super) headers: &'a [(HeaderName, HeaderValue)],
    pub(super) content_type_set: bool,
}

/// The headers Pulsar's HTTP sink sends, and the prefix of each property's.
pub(super) const TOPIC: &str = "PulsarTopic";

pub(super) const KEY: &str = "PulsarKey";

pub(super) const EVENT_TIME: &str = "PulsarEventTime";

pub(super) const PUBLISH_TIME: &str = "PulsarPublishTime";

pub(super) const MESSAGE_ID: &str = "PulsarMessageId";

pub(super) const PROPERTY_PREFIX: &str = "PulsarProperties-";

impl Requests<'_> {
    /// The headers and body of `record`'s request. The body is the value as
    /// it is (`null` for an empty one), or the whole record as JSON under
    /// `bodyFormat: record`; it is labelled JSON when it parses as JSON.
    pub(super) fn of(&self, record: &SinkRecord) -> (Vec<(HeaderName, HeaderValue)>, Bytes) {
        let body = match (self.config.body, &record.value) {
            (BodyFormat::Record, _) => Bytes::from(record_json(record).to_string()),
            (BodyFormat::Value, Some(v)) => Bytes::from(v.clone()),
            (BodyFormat::Value, None) => Bytes::from_static(b"null"),
        };
        let mut headers = self.headers.to_vec();
        let mut add = |name: &str, value: &str| {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                headers.push((n, v));
            }
        };
        if !self.content_type_set {
            let json = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
            add(
                CONTENT_TYPE.as_str(),
                if json {
                    "application/json"
                } else {
                    "application/octet-stream"
                },
            );
        }
        add(TOPIC, &record.topic);
        if let Some(key) = &record.key {
            add(KEY, key);
        }
        if let Some(t) = record.event_time_ms {
            add(EVENT_TIME, &t.to_string());
        }
        add(PUBLISH_TIME, &record.publish_time_ms.to_string());
        add(MESSAGE_ID, &record.message_id.to_string());
        for (name, value) in &record.properties {
            // A property whose name or value a header cannot carry is left
            // out of the headers; the record itself is sent.
            add(&format!("{PROPERTY_PREFIX}{name}"), value);
        }
        add(
            &self.config.idempotency_key_header,
            &idempotency_key(record),
        );
        self.sign(&mut headers, &body);
        (headers, body)
    }

    /// The request for a group of a batch's records: with
    /// `requestBatchSize` over 1 its body is an array, even of one record
    /// (the last of a lane, or one tried alone after its request was
    /// refused), so a receiver of arrays always gets one.
    pub(super) fn of_group(
        &self,
        batch: &[SinkRecord],
        group: &[usize],
    ) -> (Vec<(HeaderName, HeaderValue)>, Bytes) {
        match group {
            [one] if self.config.request_batch_size == 1 => self.of(&batch[*one]),
            many => self.of_many(many.iter().map(|&i| &batch[i])),
        }
    }

    /// The headers and body of a request that carries several records: a
    /// JSON array of each record as `bodyFormat: record` shapes it, with its
    /// idempotency key in `idempotencyKey`. Pulsar's per-record headers and
    /// the request's own idempotency key are left out: a group may be made
    /// differently when the records come again, so receivers deduplicate by
    /// each item's key.
    pub(super) fn of_many<'r>(
        &self,
        records: impl Iterator<Item = &'r SinkRecord>,
    ) -> (Vec<(HeaderName, HeaderValue)>, Bytes) {
        let items: Vec<serde_json::Value> = records
            .map(|r| {
                let mut item = record_json(r);
                item["idempotencyKey"] = serde_json::Value::String(idempotency_key(r));
                item
            })
            .collect();
        let body = Bytes::from(serde_json::Value::Array(items).to_string());
        let mut headers = self.headers.to_vec();
        if !self.content_type_set {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        }
        self.sign(&mut headers, &body);
        (headers, body)
    }

    /// Add the body's signature, when a secret is configured. The header's
    /// name was checked with the config; the value is ASCII.
    pub(super) fn sign(&self, headers: &mut Vec<(HeaderName, HeaderValue)>, body: &[u8]) {
        let Some(secret) = &self.config.signature_secret else {
            return;
        };
        let value_of = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.to_str().ok())
                .unwrap_or("")
        };
        let signed = signature::Signed {
            method: "POST",
            path: &self.config.endpoint.path,
            content_type: value_of(CONTENT_TYPE.as_str()),
            idempotency_key: value_of(&self.config.idempotency_key_header),
            body,
        };
        let value = signature::sign(
            secret.expose().as_bytes(),
            self.config.signature_version,
            unix_seconds(),
            &signed,
        );
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(self.config.signature_header.as_str()),
            HeaderValue::try_from(value),
        ) {
            headers.push((name, value));
        }
    }
}

/// A record as one JSON object: its value as JSON when it is JSON, else as
/// text when it is UTF-8, else in base64 (`value_base64`).
pub(super) fn record_json(record: &SinkRecord) -> serde_json::Value {
    use base64::Engine;
    let properties: serde_json::Map<String, serde_json::Value> = record
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let mut out = serde_json::json!({
        "topic": record.topic,
        "key": record.key,
        "messageId": record.message_id.to_string(),
        "publishTime": record.publish_time_ms,
        "eventTime": record.event_time_ms,
        "properties": properties,
    });
    let value = match &record.value {
        None => ("value", serde_json::Value::Null),
        Some(bytes) => match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(json) => ("value", json),
            Err(_) => match std::str::from_utf8(bytes) {
                Ok(text) => ("value", serde_json::Value::String(text.to_owned())),
                Err(_) => (
                    "value_base64",
                    serde_json::Value::String(
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                    ),
                ),
            },
        },
    };
    out[value.0] = value.1;
    out
}

/// The idempotency key of a record: the same for every delivery of it.
/// A sequence names the record within its producer's stream across that
/// producer's restarts, which may publish it again under a new message id,
/// so the key holds the producer too: another producer's sequence names
/// another record (decision 0016). Without a sequence, the message id names
/// it across redeliveries.
pub(super) fn idempotency_key(record: &SinkRecord) -> String {
    match record.origin.held() {
        Some((producer, seq)) => format!("{}/seq/{}/{seq}", record.topic, escaped(producer)),
        None => format!("{}/id/{}", record.topic, record.message_id),
    }
}

/// `text` with every byte but ASCII letters, digits and `-._~`
/// percent-encoded: a producer name fit for a header, that no other name
/// encodes to.
pub(super) fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
