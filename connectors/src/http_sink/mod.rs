//! `http`: POST each record to a URL (a webhook), with the headers Pulsar's
//! HTTP sink sends, an idempotency key, and optionally an HMAC signature.
//!
//! Records of one key go one after another, in order, on one connection;
//! records of different keys go out on up to `maxConcurrency` connections
//! at once. An answer decides what happens to a record (see [`policy`]):
//! 2xx delivers it, 408/429/5xx and failures to get an answer are retried
//! with backoff, other 4xx refuse it (it is dead-lettered), and answers
//! that say the URL or credentials are wrong stop the sink.

mod client;
mod config;
mod endpoint;
pub(crate) mod policy;
mod redact;
mod request;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use tracing::debug;

use self::client::{Client, Conn};
pub use self::config::{BodyFormat, HttpSinkConfig};
pub use self::endpoint::Endpoint;
use self::policy::Verdict;
use crate::api::{
    BatchPolicy, ConnectorError, Finding, MessageId, Sink, SinkConnector, SinkContext, SinkRecord,
    Written,
};
use crate::config::{ConfigMap, ConfigReport};
use crate::signature;
use redact::redacted;
use request::Requests;

/// The `http` sink.
pub struct HttpSink {
    config: HttpSinkConfig,
    client: Client,
    /// One connection per lane, opened on first use.
    lanes: Vec<Option<Conn>>,
    /// The configured headers, checked.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether `headers` sets `Content-Type` itself.
    content_type_set: bool,
    /// Message ids a write delivered before it failed as a whole: the
    /// runtime writes that batch again, and these do not go out twice.
    delivered: HashSet<MessageId>,
    /// Message ids answered a suspect status while other records of their
    /// batch were delivered: the record's fault, when it comes alone again.
    confirmed: HashSet<MessageId>,
    /// Where records the filter passes over are counted.
    skips: std::sync::Arc<crate::api::Skips>,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SinkConnector for HttpSink {
    const CLASS_NAMES: &'static [&'static str] = &["http", "org.apache.pulsar.io.http.HttpSink"];
    const ARCHIVES: &'static [&'static str] = &["http"];
    const KEYS: &'static [crate::config::Key] = config::KEYS;
    type Config = HttpSinkConfig;

    fn configure(configs: &ConfigMap) -> (Option<HttpSinkConfig>, ConfigReport) {
        HttpSinkConfig::from_configs(configs)
    }

    /// Ready the client; connections open on first use.
    async fn open(config: HttpSinkConfig, context: &SinkContext) -> Result<Self, ConnectorError> {
        let client = Client::new(
            &config.endpoint,
            config.trust_file.as_deref(),
            config.request_timeout,
        )?;
        let mut headers = Vec::with_capacity(config.headers.len());
        for (name, value) in &config.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|e| ConnectorError::configuration(format!("header {name}: {e}")))?;
            let mut value = HeaderValue::try_from(value.expose())
                .map_err(|e| ConnectorError::configuration(format!("header {name}: {e}")))?;
            value.set_sensitive(true);
            headers.push((name, value));
        }
        let content_type_set = headers.iter().any(|(n, _)| n == CONTENT_TYPE);
        Ok(Self {
            lanes: (0..config.max_concurrency).map(|_| None).collect(),
            client,
            config,
            headers,
            content_type_set,
            delivered: HashSet::new(),
            confirmed: HashSet::new(),
            skips: std::sync::Arc::clone(&context.skips),
        })
    }

    /// The endpoint accepts a connection (and, for `https`, its certificate
    /// verifies). Nothing is sent.
    async fn preflight(config: &HttpSinkConfig) -> Vec<Finding> {
        let client = match Client::new(
            &config.endpoint,
            config.trust_file.as_deref(),
            config.request_timeout,
        ) {
            Ok(c) => c,
            Err(e) => return vec![Finding::error(e.to_string())],
        };
        match tokio::time::timeout(config.request_timeout, client.connect()).await {
            Ok(Ok(_)) => Vec::new(),
            Ok(Err(e)) => vec![Finding::error(e)],
            Err(_) => vec![Finding::error(format!(
                "no connection to {} within {} ms",
                config.endpoint.authority,
                config.request_timeout.as_millis()
            ))],
        }
    }
}

/// Message ids remembered as refused by their own fault, at most.
const MAX_CONFIRMED: usize = 4096;

/// What one lane did with its records.
#[derive(Default)]
struct LaneOutcome {
    delivered: Vec<usize>,
    refused: Vec<(usize, ConnectorError)>,
    /// Records answered a suspect status, with the answer.
    suspects: Vec<(usize, String)>,
    /// Why the lane stopped before its end: retryable, or the setup's fault.
    stopped: Option<ConnectorError>,
}

impl Sink for HttpSink {
    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_records: self.config.batch_size as usize,
            max_wait: self.config.timeout,
        }
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Written, ConnectorError> {
        let lanes = self.lanes.len();
        let mut work: Vec<Vec<usize>> = vec![Vec::new(); lanes];
        let mut filtered = 0;
        for (i, record) in batch.iter().enumerate() {
            if self.delivered.contains(&record.message_id) {
                continue;
            }
            if !selected(self.config.filter.as_ref(), record) {
                filtered += 1;
                continue;
            }
            work[lane(record, i, lanes)].push(i);
        }
        let requests = Requests {
            config: &self.config,
            headers: &self.headers,
            content_type_set: self.content_type_set,
        };
        let client = &self.client;
        let runs = self
            .lanes
            .iter_mut()
            .zip(work)
            .filter(|(_, records)| !records.is_empty())
            .map(|(conn, records)| send_lane(client, &requests, conn, batch, records));
        let outcomes = futures_util::future::join_all(runs).await;
        let mut refused = Vec::new();
        let mut suspects = Vec::new();
        let mut stopped: Option<ConnectorError> = None;
        let mut any_delivered = false;
        for outcome in outcomes {
            any_delivered |= !outcome.delivered.is_empty();
            self.delivered
                .extend(outcome.delivered.iter().map(|&i| batch[i].message_id));
            refused.extend(outcome.refused);
            suspects.extend(outcome.suspects);
            if let Some(e) = outcome.stopped {
                stopped = Some(e);
            }
        }
        if let Some(e) = stopped {
            return Err(e);
        }
        refused.extend(self.judge(batch, suspects, any_delivered)?);
        self.delivered.clear();
        self.skips
            .filtered
            .fetch_add(filtered, std::sync::atomic::Ordering::Relaxed);
        if refused.is_empty() {
            Ok(Written::All)
        } else {
            refused.sort_by_key(|(i, _)| *i);
            Ok(Written::AllBut(refused))
        }
    }

    async fn close(&mut self) {
        self.lanes.iter_mut().for_each(|c| *c = None);
    }
}

impl HttpSink {
    /// Decide what suspect answers (a 404, a 403...) mean: the records'
    /// own fault when the receiver delivered another record of the same
    /// batch, or refused the same record so before while it delivered
    /// others; else the setup's, which fails the batch and stops the sink,
    /// so that a wrong URL or token never empties the topic into the
    /// dead-letter topic (decision 0009).
    fn judge(
        &mut self,
        batch: &[SinkRecord],
        suspects: Vec<(usize, String)>,
        any_delivered: bool,
    ) -> Result<Vec<(usize, ConnectorError)>, ConnectorError> {
        let Some((_, first)) = suspects.first() else {
            return Ok(Vec::new());
        };
        let known = suspects
            .iter()
            .all(|(i, _)| self.confirmed.contains(&batch[*i].message_id));
        if !any_delivered && !known {
            return Err(ConnectorError::configuration(format!(
                "{first}, and no record of the batch was delivered (check the sink's url and headers)"
            )));
        }
        if self.confirmed.len() + suspects.len() > MAX_CONFIRMED {
            self.confirmed.clear();
        }
        Ok(suspects
            .into_iter()
            .map(|(i, why)| {
                self.confirmed.insert(batch[i].message_id);
                (
                    i,
                    ConnectorError::permanent(format!(
                        "{why} (while it took other records: this record's fault)"
                    )),
                )
            })
            .collect())
    }
}

/// Whether the filter selects a record: its value is JSON and holds one
/// of the values at the pointer (a string as it is, anything else as its
/// JSON text). Without a filter, every record is.
fn selected(filter: Option<&(String, Vec<String>)>, record: &SinkRecord) -> bool {
    let Some((pointer, values)) = filter else {
        return true;
    };
    let Some(json) = record
        .value
        .as_deref()
        .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
    else {
        return false;
    };
    match json.pointer(pointer) {
        Some(serde_json::Value::String(s)) => values.iter().any(|v| v == s),
        Some(other) => values.contains(&other.to_string()),
        None => false,
    }
}

/// The lane of a record: by its key, so that one key's records keep their
/// order; a record without a key goes wherever its place puts it.
fn lane(record: &SinkRecord, index: usize, lanes: usize) -> usize {
    match &record.key {
        Some(key) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            (h.finish() % lanes as u64) as usize
        }
        None => index % lanes,
    }
}

/// Send a lane's records in order, one request per record, or per group of
/// `requestBatchSize` records, each until it is delivered, refused, or out
/// of attempts; the lane stops at the first request it cannot settle.
async fn send_lane(
    client: &Client,
    requests: &Requests<'_>,
    conn: &mut Option<Conn>,
    batch: &[SinkRecord],
    records: Vec<usize>,
) -> LaneOutcome {
    let config = requests.config;
    let mut out = LaneOutcome::default();
    for group in records.chunks(config.request_batch_size) {
        let (headers, body) = requests.of_group(batch, group);
        let first = &batch[group[0]].message_id;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let verdict = match client.post(conn, &headers, body.clone()).await {
                Ok(answer) => policy::classify(
                    answer.status,
                    answer.retry_after.as_deref(),
                    &redacted(&answer.excerpt, &config.headers),
                ),
                Err(why) => Verdict::Retry { after: None, why },
            };
            match verdict {
                Verdict::Done => {
                    out.delivered.extend_from_slice(group);
                    break;
                }
                Verdict::Refused(why) => {
                    let refused = group
                        .iter()
                        .map(|&i| (i, ConnectorError::permanent(why.clone())));
                    out.refused.extend(refused);
                    break;
                }
                Verdict::Suspect(why) => {
                    out.suspects.extend(group.iter().map(|&i| (i, why.clone())));
                    break;
                }
                Verdict::Retry { after, why } => {
                    if attempt >= config.max_attempts {
                        out.stopped = Some(ConnectorError::retryable(format!(
                            "message {first} after {attempt} attempts: {why}"
                        )));
                        return out;
                    }
                    let wait = policy::delay(
                        attempt,
                        config.retry_backoff,
                        config.max_retry_backoff,
                        after,
                    );
                    debug!(message_id = %first, records = group.len(), attempt, retry_in = ?wait, reason = %why, "POST not delivered; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
    out
}

use crate::time::now_secs as unix_seconds;

#[cfg(test)]
mod tests;
