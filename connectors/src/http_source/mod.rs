//! `http`: a web service's side of the REST pattern. It listens on `host`
//! and `port` (the keys of Pulsar's Netty source, `type: http`), takes a
//! POST of a JSON object (one record), a JSON array (one record each) or any
//! other body with its content type (one record of its bytes), and answers
//! only when the records are durable in Pulsar.
//!
//! Each accepted request waits in a bounded queue, and holds twice its
//! body's size of `maxPendingBytes` until it is answered; when either is
//! full a new request is answered 503 with `Retry-After`, so a slow broker
//! pushes back on the clients instead of growing memory. A request's
//! records are made a batch at a time, as the runtime takes them.

mod config;
mod connections;
mod journal;
pub(crate) mod request;
mod server;
mod tls;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

pub use self::config::HttpSourceConfig;
use self::journal::{Entry, Journal};
use self::server::{Accepted, KeyState, Shared};
use crate::api::{
    ConnectorError, Finding, Guarantee, Position, Sequence, Source, SourceBatch, SourceConnector,
    SourceContext, SourceRecord,
};
use crate::config::{ConfigMap, ConfigReport};

/// The `http` source.
#[derive(Debug)]
pub struct HttpSource {
    requests: mpsc::Receiver<Accepted>,
    /// Requests whose records were all handed to the runtime, by the
    /// position that covers them, waiting to hear that they are durable.
    waiting: VecDeque<Waiting>,
    /// The request whose records are being handed over, and the next one.
    current: Option<InProgress>,
    /// The last position given out: a request's count, or under
    /// EFFECTIVELY_ONCE the last sequence.
    next: u64,
    /// Under EFFECTIVELY_ONCE, the idempotency journal.
    journal: Option<Journal>,
    /// When the journal is next compacted, in Unix seconds.
    compact_at: u64,
    /// A batch made and not yet handed over, with its journal lines.
    made: Option<(SourceBatch, Vec<Entry>)>,
    shared: Arc<Shared>,
    batch_size: usize,
    server: tokio::task::JoinHandle<()>,
    /// Where the server listens.
    pub local_addr: std::net::SocketAddr,
}

/// A request handed over whole, waiting for its position to be durable.
#[derive(Debug)]
struct Waiting {
    position: u64,
    done: oneshot::Sender<()>,
    /// Its scoped idempotency key, and its journal line.
    key: Option<(String, Entry)>,
}

/// A request being handed over: its records from `next` on are still to
/// be made.
#[derive(Debug)]
struct InProgress {
    accepted: Accepted,
    next: usize,
    /// Under EFFECTIVELY_ONCE, the sequence of its first record.
    first: u64,
    /// Its journal line, until it goes out with the request's first batch.
    line: Option<Entry>,
    /// Its journal line, kept for compaction while the request is on its way.
    entry: Option<Entry>,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("records", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// How often, at most, the journal is compacted.
const COMPACT_EVERY: u64 = 600;

impl SourceConnector for HttpSource {
    const CLASS_NAMES: &'static [&'static str] =
        &["http", "org.apache.pulsar.io.netty.NettySource"];
    const ARCHIVES: &'static [&'static str] = &["netty"];
    const KEYS: &'static [crate::config::Key] = config::KEYS;
    type Config = HttpSourceConfig;

    fn configure(configs: &ConfigMap) -> (Option<HttpSourceConfig>, ConfigReport) {
        HttpSourceConfig::from_configs(configs)
    }

    /// Bind the port and start serving. Under EFFECTIVELY_ONCE, first read
    /// the idempotency journal in `stateDir`.
    async fn open(
        config: HttpSourceConfig,
        context: &SourceContext,
    ) -> Result<Self, ConnectorError> {
        if let Some(w) = config
            .tls
            .as_ref()
            .and_then(|(_, key)| crate::secret_files::too_open("the TLS key", key))
        {
            tracing::warn!("{w}");
        }
        let effectively_once = context.guarantee == Guarantee::EffectivelyOnce;
        let (journal, keys, next) = if effectively_once {
            let (journal, keys, next) = open_journal(&config, context).await?;
            (Some(journal), Some(Mutex::new(keys)), next)
        } else {
            (None, None, 0)
        };
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
            .await
            .map_err(|e| {
                ConnectorError::retryable(format!("listen on {}:{}", config.host, config.port))
                    .with_source(e)
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| ConnectorError::retryable("read the listening address").with_source(e))?;
        let listener = connections::Capped::new(listener, config.max_connections);
        let compact_at =
            unix_seconds() + COMPACT_EVERY.min(config.idempotency_retention.as_secs().max(1));
        let (tx, requests) = mpsc::channel(config.max_pending_requests);
        let batch_size = config.batch_size;
        let read_timeout = config.read_timeout;
        let shared = Arc::new(Shared {
            budget: Arc::new(tokio::sync::Semaphore::new(config.max_pending_bytes)),
            config,
            requests: tx,
            durable_status: if context.guarantee == Guarantee::AtMostOnce {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            },
            keys,
        });
        let app = server::router(Arc::clone(&shared));
        let server = match &shared.config.tls {
            None => tokio::spawn(connections::serve(listener, app, read_timeout)),
            Some((cert, key)) => {
                let listener = tls::TlsListener::new(listener, tls::acceptor(cert, key)?)
                    .map_err(|e| ConnectorError::retryable("listen for TLS").with_source(e))?;
                tokio::spawn(connections::serve(listener, app, read_timeout))
            }
        };
        let scheme = if shared.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        info!(%local_addr, scheme, "http source listening");
        Ok(Self {
            requests,
            waiting: VecDeque::new(),
            current: None,
            next,
            journal,
            compact_at,
            made: None,
            shared,
            batch_size,
            server,
            local_addr,
        })
    }

    /// The port is free to listen on, and the TLS certificate and key load.
    async fn preflight(config: &HttpSourceConfig) -> Vec<Finding> {
        let mut out = Vec::new();
        if let Err(e) = tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await {
            out.push(Finding::error(format!(
                "cannot listen on {}:{}: {e}",
                config.host, config.port
            )));
        }
        if let Some((cert, key)) = &config.tls {
            if let Err(e) = tls::acceptor(cert, key) {
                out.push(Finding::error(e.to_string()));
            }
            out.extend(crate::secret_files::too_open("the TLS key", key).map(Finding::warning));
        }
        out
    }
}

impl Source for HttpSource {
    /// The records of one or more requests (see [`HttpSource::make`]).
    /// Under EFFECTIVELY_ONCE the keyed requests' journal lines are synced
    /// before the batch is handed over.
    async fn read(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        if self.made.is_none() {
            self.compact().await?;
            if self.current.is_none() {
                let Some(first) = self.requests.recv().await else {
                    return Ok(None);
                };
                self.current = Some(self.start(first));
            }
            self.made = Some(self.make());
        }
        // The batch stays in `made` until its journal lines are synced: the
        // runtime may drop this read at the await below, and the next read
        // must hand over the same records, not lose them (their requests
        // would then be answered by a later checkpoint).
        if let (Some(journal), Some((_, lines))) = (&self.journal, &self.made)
            && !lines.is_empty()
        {
            journal.append(lines.clone()).await.map_err(|e| {
                ConnectorError::retryable("write the idempotency journal").with_source(e)
            })?;
        }
        Ok(self.made.take().map(|(batch, _)| batch))
    }

    /// Answer every request up to `position`: its records are durable, and
    /// so is its idempotency key.
    async fn commit(&mut self, position: Position) -> Result<(), ConnectorError> {
        while self
            .waiting
            .front()
            .is_some_and(|w| w.position <= position.0)
        {
            let Some(Waiting { done, key, .. }) = self.waiting.pop_front() else {
                break;
            };
            let _ = done.send(());
            let (Some(keys), Some((key, line))) = (&self.shared.keys, key) else {
                continue;
            };
            let mut keys = server::locked(keys);
            if let Some(KeyState::Pending {
                digest,
                records,
                waiters,
            }) = keys.remove(&key)
            {
                // Retries that waited with the first request hear with it.
                for waiter in waiters {
                    let _ = waiter.send(());
                }
                keys.insert(
                    key,
                    KeyState::Published {
                        digest,
                        records,
                        at: line.at,
                        line,
                    },
                );
            }
        }
        Ok(())
    }

    /// Stop serving. Requests not yet durable are answered 503: their
    /// clients send them again.
    async fn close(&mut self) {
        self.server.abort();
        self.waiting.clear();
        self.current = None;
        self.made = None;
        self.requests.close();
        if let Some(keys) = &self.shared.keys {
            server::locked(keys).retain(|_, state| matches!(state, KeyState::Published { .. }));
        }
    }
}

impl HttpSource {
    /// Begin handing over `accepted`: under EFFECTIVELY_ONCE its records
    /// get the next sequences, and a keyed request its journal line.
    fn start(&mut self, accepted: Accepted) -> InProgress {
        let first = self.next + 1;
        let line = match (&self.journal, &accepted.key) {
            (Some(_), Some((key, digest))) => Some(Entry {
                key: key.clone(),
                first,
                last: self.next + accepted.body.len() as u64,
                digest: digest.clone(),
                at: accepted.at_ms / 1000,
            }),
            _ => None,
        };
        InProgress {
            accepted,
            next: 0,
            first,
            entry: line.clone(),
            line,
        }
    }

    /// The next batch, at most `batchSize` records: whole requests while
    /// they fit, or the next part of one larger than a batch. A batch that
    /// ends a request carries its position; under EFFECTIVELY_ONCE the
    /// records between two positions are one transaction, so a request is
    /// published whole or not at all.
    fn make(&mut self) -> (SourceBatch, Vec<Entry>) {
        let mut records = Vec::new();
        let mut lines = Vec::new();
        let mut checkpoint = None;
        let effectively_once = self.journal.is_some();
        while let Some(current) = self.current.as_mut() {
            let left = current.accepted.body.len() - current.next;
            if current.next == 0 && !records.is_empty() && records.len() + left > self.batch_size {
                break;
            }
            lines.extend(current.line.take());
            let take = left.min(self.batch_size.saturating_sub(records.len()).max(1));
            let key_field = self.shared.config.key_field.as_deref();
            for index in current.next..current.next + take {
                let item = current.accepted.body.item(index, key_field);
                records.push(SourceRecord {
                    topic: current.accepted.topic.clone(),
                    key: item.key,
                    value: Some(item.value),
                    properties: Vec::new(),
                    event_time_ms: Some(current.accepted.at_ms),
                    sequence: effectively_once
                        .then(|| Sequence(u128::from(current.first + index as u64))),
                    schema: None,
                });
            }
            current.next += take;
            if current.next < current.accepted.body.len() {
                break;
            }
            let Some(done) = self.current.take() else {
                break;
            };
            self.next = if effectively_once {
                done.first + done.accepted.body.len() as u64 - 1
            } else {
                self.next + 1
            };
            checkpoint = Some(Position(self.next));
            self.waiting.push_back(Waiting {
                position: self.next,
                done: done.accepted.done,
                key: done.accepted.key.map(|(k, _)| k).zip(done.entry),
            });
            if records.len() >= self.batch_size {
                break;
            }
            if let Ok(next) = self.requests.try_recv() {
                self.current = Some(self.start(next));
            }
        }
        let batch = SourceBatch {
            records,
            checkpoint,
            state: None,
        };
        (batch, lines)
    }

    /// Forget published keys past retention, and every so often write the
    /// journal anew with the keys it must keep: those still remembered and
    /// those on their way.
    async fn compact(&mut self) -> Result<(), ConnectorError> {
        let now = unix_seconds();
        let (Some(journal), Some(keys)) = (&self.journal, &self.shared.keys) else {
            return Ok(());
        };
        if now < self.compact_at {
            return Ok(());
        }
        let retention = self.shared.config.idempotency_retention.as_secs();
        let mut entries: Vec<Entry> = {
            let mut keys = server::locked(keys);
            keys.retain(|_, state| match state {
                KeyState::Published { at, .. } => now.saturating_sub(*at) <= retention,
                KeyState::Pending { .. } => true,
            });
            keys.values()
                .filter_map(|state| match state {
                    KeyState::Published { line, .. } => Some(line.clone()),
                    KeyState::Pending { .. } => None,
                })
                .collect()
        };
        entries.extend(
            self.waiting
                .iter()
                .filter_map(|w| w.key.as_ref().map(|(_, e)| e.clone())),
        );
        entries.extend(self.current.as_ref().and_then(|c| c.entry.clone()));
        journal.compact(self.next, entries).await.map_err(|e| {
            ConnectorError::retryable("compact the idempotency journal").with_source(e)
        })?;
        self.compact_at = now + COMPACT_EVERY.min(retention.max(1));
        Ok(())
    }
}

use crate::time::now_secs as unix_seconds;

/// EFFECTIVELY_ONCE: the idempotency journal in `stateDir`, the keys it
/// holds as published, and the next sequence to give.
async fn open_journal(
    config: &HttpSourceConfig,
    context: &SourceContext,
) -> Result<(Journal, HashMap<String, KeyState>, u64), ConnectorError> {
    let dir = config.state_dir.as_ref().ok_or_else(|| {
        ConnectorError::configuration(
            "under EFFECTIVELY_ONCE the http source keeps its idempotency journal in stateDir: set it",
        )
    })?;
    let published = context
        .published
        .map(|s| u64::try_from(s.0).unwrap_or(u64::MAX));
    let path = journal::path(dir, &context.name);
    let now = unix_seconds();
    let retention = config.idempotency_retention.as_secs();
    let opened = tokio::task::spawn_blocking(move || {
        journal::open(&path, published, retention, now).map_err(|e| (path, e))
    })
    .await
    .map_err(|e| ConnectorError::retryable("read the idempotency journal").with_source(e))?
    .map_err(|(path, e)| {
        ConnectorError::configuration(format!("the idempotency journal {}: {e}", path.display()))
    })?;
    let keys: HashMap<String, KeyState> = opened
        .published
        .into_iter()
        .map(|e| {
            (
                e.key.clone(),
                KeyState::Published {
                    records: (e.last + 1 - e.first) as usize,
                    digest: e.digest.clone(),
                    at: e.at,
                    line: e,
                },
            )
        })
        .collect();
    let next = opened.last_given.max(published.unwrap_or(0));
    Ok((opened.journal, keys, next))
}

impl Drop for HttpSource {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::ConfigValue;

    fn config(pairs: &[(&str, &str)]) -> HttpSourceConfig {
        let mut map: ConfigMap = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ConfigValue::String((*v).to_owned())))
            .collect();
        map.insert("port".into(), ConfigValue::Int(0));
        HttpSourceConfig::from_configs(&map).0.unwrap()
    }

    /// POST over a plain socket, as any client would: the status and body.
    async fn post(
        addr: std::net::SocketAddr,
        path: &str,
        headers: impl AsRef<str>,
        body: &str,
    ) -> (u16, String) {
        let headers = headers.as_ref();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        let status = text[9..12].parse().unwrap();
        (status, text)
    }

    const JSON: &str = "Content-Type: application/json\r\n";

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "waited for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_request_is_answered_when_durable_and_a_full_queue_pushes_back() {
        let mut source = HttpSource::open(
            config(&[("maxPendingRequests", "1")]),
            &SourceContext::default(),
        )
        .await
        .unwrap();
        let addr = source.local_addr;

        // A request fills the queue; the next is told to come back.
        let first = tokio::spawn(post(addr, "/orders", JSON, r#"[{"n":1},{"n":2}]"#));
        until("the first request to queue", || source.requests.len() == 1).await;
        let (status, text) = post(addr, "/orders", JSON, r#"{"n":3}"#).await;
        assert_eq!(status, 503, "{text}");
        assert!(
            text.to_ascii_lowercase().contains("retry-after: 1"),
            "{text}"
        );

        // The runtime takes the first request's records...
        let batch = source.read().await.unwrap().unwrap();
        assert_eq!(batch.records.len(), 2);
        assert_eq!(batch.records[1].value.as_deref(), Some(&br#"{"n":2}"#[..]));
        assert!(
            !first.is_finished(),
            "answered before its records were durable"
        );
        // ...and once they are durable the client hears 200.
        source.commit(batch.checkpoint.unwrap()).await.unwrap();
        let (status, text) = first.await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(text.ends_with(r#"{"records":2}"#), "{text}");
        source.close().await;
    }

    #[tokio::test]
    async fn a_source_that_stops_tells_waiting_clients_to_send_again() {
        let mut source = HttpSource::open(config(&[]), &SourceContext::default())
            .await
            .unwrap();
        let addr = source.local_addr;
        let waiting = tokio::spawn(post(addr, "/", JSON, r#"{"n":1}"#));
        let batch = source.read().await.unwrap().unwrap();
        assert_eq!(batch.records.len(), 1);
        // The publish fails and the runtime closes the source.
        source.close().await;
        let (status, text) = waiting.await.unwrap();
        assert_eq!(status, 503, "{text}");
    }

    #[tokio::test]
    async fn bad_requests_get_their_4xx() {
        let token = "a-token-of-some-length";
        let mut source = HttpSource::open(
            config(&[
                ("authToken", token),
                ("topicsFromPath", "orders"),
                ("maxBodyBytes", "1000"),
            ]),
            &SourceContext::default(),
        )
        .await
        .unwrap();
        let addr = source.local_addr;
        let auth = format!("Authorization: Bearer {token}\r\n");
        let with = |h: &str| format!("{auth}{h}");
        assert_eq!(post(addr, "/", JSON, "{}").await.0, 401, "no token");
        let wrong =
            "Authorization: Bearer a-token-of-some-lengtH\r\nContent-Type: application/json\r\n";
        assert_eq!(post(addr, "/", wrong, "{}").await.0, 401, "a wrong token");
        assert_eq!(post(addr, "/", &auth, "{}").await.0, 415, "no content type");
        assert_eq!(post(addr, "/", &with(JSON), "{\"a\":").await.0, 400);
        assert_eq!(post(addr, "/", &with(JSON), "[]").await.0, 400);
        assert_eq!(
            post(addr, "/topics/payments", &with(JSON), "{}").await.0,
            404,
            "a topic not on the list"
        );
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(2000));
        assert_eq!(post(addr, "/", &with(JSON), &big).await.0, 413);
        // A good one, to a listed topic, goes through.
        let headers = with(JSON);
        let good =
            tokio::spawn(async move { post(addr, "/topics/orders", &headers, "{\"n\":1}").await });
        let batch = source.read().await.unwrap().unwrap();
        assert_eq!(batch.records[0].topic.as_deref(), Some("orders"));
        source.commit(batch.checkpoint.unwrap()).await.unwrap();
        assert_eq!(good.await.unwrap().0, 200);
        source.close().await;
    }

    #[tokio::test]
    async fn a_retried_key_is_published_once_across_restarts() {
        let dir = std::env::temp_dir().join(format!("sluice-http-eo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.display().to_string();
        let eo = |published: Option<u64>| SourceContext {
            name: "public/default/orders-api".into(),
            guarantee: Guarantee::EffectivelyOnce,
            published: published.map(|p| Sequence(u128::from(p))),
            ..SourceContext::default()
        };
        let keyed = |key: &str| format!("{JSON}Idempotency-Key: {key}\r\n");
        let mut source = HttpSource::open(config(&[("stateDir", &state)]), &eo(None))
            .await
            .unwrap();
        let addr = source.local_addr;

        // The first request with a key is published with sequences 1 and 2.
        let first = tokio::spawn(post(addr, "/", JSON_KEYED_A, r#"[{"n":1},{"n":2}]"#));
        let batch = source.read().await.unwrap().unwrap();
        let seqs: Vec<_> = batch.records.iter().map(|r| r.sequence).collect();
        assert_eq!(seqs, [Some(Sequence(1)), Some(Sequence(2))]);
        // A retry while it is on its way waits with it.
        let retry = tokio::spawn(post(addr, "/", JSON_KEYED_A, r#"[{"n":1},{"n":2}]"#));
        until("the retry to wait", || {
            source.shared.keys.as_ref().is_some_and(|k| {
                k.lock().is_ok_and(|k| {
                    matches!(k.get("\ta"), Some(KeyState::Pending { waiters, .. }) if waiters.len() == 1)
                })
            })
        })
        .await;
        source.commit(batch.checkpoint.unwrap()).await.unwrap();
        assert_eq!(first.await.unwrap().0, 200);
        assert_eq!(retry.await.unwrap().0, 200);
        // A later retry is answered at once, and the key with another body refused.
        let (status, text) = post(addr, "/", JSON_KEYED_A, r#"[{"n":1},{"n":2}]"#).await;
        assert_eq!(status, 200);
        assert!(text.contains("idempotent-replayed: true"), "{text}");
        assert_eq!(post(addr, "/", &keyed("a"), r#"{"n":3}"#).await.0, 422);
        assert_eq!(source.requests.len(), 0, "nothing more was queued");
        source.close().await;

        // After a restart where the runtime published up to 2, a retry of
        // "a" is answered without publishing.
        let mut source = HttpSource::open(config(&[("stateDir", &state)]), &eo(Some(2)))
            .await
            .unwrap();
        let addr = source.local_addr;
        assert_eq!(
            post(addr, "/", JSON_KEYED_A, r#"[{"n":1},{"n":2}]"#)
                .await
                .0,
            200
        );
        // A new key goes on from the next sequence.
        let new = tokio::spawn(post(addr, "/", keyed("b"), r#"{"n":4}"#));
        let batch = source.read().await.unwrap().unwrap();
        assert_eq!(batch.records[0].sequence, Some(Sequence(3)));
        source.close().await;
        assert_eq!(new.await.unwrap().0, 503, "closed before it was durable");

        // After a restart where "b" (sequence 3) was not published, its
        // retry is published again, under a new sequence.
        let mut source = HttpSource::open(config(&[("stateDir", &state)]), &eo(Some(2)))
            .await
            .unwrap();
        let addr = source.local_addr;
        let again = tokio::spawn(post(addr, "/", keyed("b"), r#"{"n":4}"#));
        let batch = source.read().await.unwrap().unwrap();
        assert_eq!(batch.records[0].sequence, Some(Sequence(4)));
        source.commit(batch.checkpoint.unwrap()).await.unwrap();
        assert_eq!(again.await.unwrap().0, 200);
        source.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const JSON_KEYED_A: &str = "Content-Type: application/json\r\nIdempotency-Key: a\r\n";

    #[tokio::test]
    async fn a_large_request_goes_out_in_batches_of_batch_size_as_one_unit() {
        let context = |guarantee| SourceContext {
            guarantee,
            ..SourceContext::default()
        };
        for guarantee in [Guarantee::AtLeastOnce, Guarantee::EffectivelyOnce] {
            let dir =
                std::env::temp_dir().join(format!("sluice-http-split-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let state = dir.display().to_string();
            let mut source = HttpSource::open(
                config(&[("batchSize", "500"), ("stateDir", &state)]),
                &context(guarantee),
            )
            .await
            .unwrap();
            let addr = source.local_addr;
            // GIVEN a request of 1,200 records, then one of 2
            let big: Vec<String> = (0..1200).map(|i| format!("{{\"n\":{i}}}")).collect();
            let big = format!("[{}]", big.join(","));
            let first = tokio::spawn(post(addr, "/", JSON, big.leak()));
            until("the first request to queue", || source.requests.len() == 1).await;
            let second = tokio::spawn(post(addr, "/", JSON, r#"[{"n":"a"},{"n":"b"}]"#));
            until("the second request to queue", || source.requests.len() == 2).await;
            // WHEN the runtime reads
            let mut batches = Vec::new();
            for _ in 0..3 {
                batches.push(source.read().await.unwrap().unwrap());
            }
            // THEN the large one comes in three batches, its position only
            // on the last, which the small one joins whole
            let sizes: Vec<usize> = batches.iter().map(|b| b.records.len()).collect();
            assert_eq!(sizes, [500, 500, 202], "{guarantee:?}");
            let checkpoints: Vec<bool> = batches.iter().map(|b| b.checkpoint.is_some()).collect();
            assert_eq!(checkpoints, [false, false, true], "{guarantee:?}");
            assert_eq!(
                batches[2].records[199].value.as_deref(),
                Some(&br#"{"n":1199}"#[..])
            );
            assert_eq!(
                batches[2].records[201].value.as_deref(),
                Some(&br#"{"n":"b"}"#[..])
            );
            assert!(!first.is_finished());
            source.commit(batches[2].checkpoint.unwrap()).await.unwrap();
            assert_eq!(first.await.unwrap().0, 200);
            assert_eq!(second.await.unwrap().0, 200);
            source.close().await;
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// A CA and a certificate for 127.0.0.1 it signed, made with openssl
    /// in `dir`: (CA, certificate, key).
    fn certificates(dir: &std::path::Path) -> (String, String, String) {
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &[
                    "req",
                    "-x509",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=test-ca",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                ][..],
                &ec[..],
            ]
            .concat(),
        );
        openssl(
            &[
                &[
                    "req",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    "key.pem",
                    "-out",
                    "leaf.csr",
                ][..],
                &ec[..],
            ]
            .concat(),
        );
        std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext",
            "-out",
            "cert.pem",
        ]);
        let path = |f: &str| dir.join(f).display().to_string();
        (path("ca.pem"), path("cert.pem"), path("key.pem"))
    }

    #[tokio::test]
    async fn with_a_certificate_requests_are_taken_over_tls_only() {
        use rustls::pki_types::pem::PemObject;

        let dir = std::env::temp_dir().join(format!("sluice-http-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, cert, key) = certificates(&dir);
        let mut source = HttpSource::open(
            config(&[("tlsCertFile", &cert), ("tlsKeyFile", &key)]),
            &SourceContext::default(),
        )
        .await
        .unwrap();
        let addr = source.local_addr;

        // A client that trusts the CA posts over TLS.
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
        let posted = tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            let body = r#"{"n":1}"#;
            let request = format!(
                "POST / HTTP/1.1\r\nHost: test\r\n{JSON}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(request.as_bytes()).await.unwrap();
            let mut text = String::new();
            let _ = tls.read_to_string(&mut text).await;
            text
        });
        let batch = source.read().await.unwrap().unwrap();
        assert_eq!(batch.records[0].value.as_deref(), Some(&br#"{"n":1}"#[..]));
        source.commit(batch.checkpoint.unwrap()).await.unwrap();
        let text = posted.await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");

        // Plain HTTP gets no answer.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        let _ = plain.read_to_string(&mut answer).await;
        assert!(!answer.contains("HTTP/1.1"), "{answer}");
        source.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn with_a_signature_secret_only_signed_recent_requests_pass() {
        let secret = "a-shared-secret-of-some-length";
        let mut source = HttpSource::open(
            config(&[
                ("signatureSecret", secret),
                ("signatureToleranceSeconds", "60"),
            ]),
            &SourceContext::default(),
        )
        .await
        .unwrap();
        let addr = source.local_addr;
        let body = r#"{"n":1}"#;
        let signed = |at: u64, body: &str| {
            let request = crate::signature::Signed {
                method: "POST",
                path: "/",
                content_type: "application/json",
                idempotency_key: "",
                body: body.as_bytes(),
            };
            let value = crate::signature::sign(
                secret.as_bytes(),
                crate::signature::Version::V2,
                at,
                &request,
            );
            format!("{JSON}Sluice-Signature: {value}\r\n")
        };
        let now = unix_seconds();
        assert_eq!(post(addr, "/", JSON, body).await.0, 401, "unsigned");
        assert_eq!(
            post(addr, "/", signed(now, "{}"), body).await.0,
            401,
            "another body's"
        );
        assert_eq!(
            post(addr, "/", signed(now - 600, body), body).await.0,
            401,
            "too old"
        );
        let good = tokio::spawn(post(addr, "/", signed(now, body), body));
        let batch = source.read().await.unwrap().unwrap();
        source.commit(batch.checkpoint.unwrap()).await.unwrap();
        assert_eq!(good.await.unwrap().0, 200);
        source.close().await;
    }

    #[tokio::test]
    async fn a_read_dropped_while_its_journal_syncs_hands_over_the_same_records_next() {
        let dir = std::env::temp_dir().join(format!("sluice-http-cancel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.display().to_string();
        let context = SourceContext {
            name: "public/default/api".into(),
            guarantee: Guarantee::EffectivelyOnce,
            ..SourceContext::default()
        };
        let mut source = HttpSource::open(config(&[("stateDir", &state)]), &context)
            .await
            .unwrap();
        let addr = source.local_addr;
        let posted = tokio::spawn(post(addr, "/", JSON_KEYED_A, r#"{"n":1}"#));
        until("the request to queue", || source.requests.len() == 1).await;

        // The runtime drops the read while the journal line is being synced...
        // A thread holds the journal's file, as a slow disk would.
        let journal = source.journal.clone().unwrap();
        let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let disk = std::thread::spawn(move || {
            let _file = journal.hold();
            held.0.send(()).unwrap();
            release.1.recv().unwrap();
        });
        held.1.recv().unwrap();
        let dropped = tokio::time::timeout(Duration::from_millis(50), source.read()).await;
        assert!(dropped.is_err(), "the sync was still under way");
        release.0.send(()).unwrap();
        disk.join().unwrap();
        // ...and the next read hands over the same record.
        let batch = tokio::time::timeout(Duration::from_secs(5), source.read())
            .await
            .expect("the record was lost with the dropped read")
            .unwrap()
            .unwrap();
        assert_eq!(batch.records.len(), 1);
        assert_eq!(batch.records[0].sequence, Some(Sequence(1)));
        source.commit(batch.checkpoint.unwrap()).await.unwrap();
        assert_eq!(posted.await.unwrap().0, 200);
        source.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
