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
    Commit, ConnectorError, Finding, Guarantee, Position, Sequence, Source, SourceBatch,
    SourceConnector, SourceContext, SourceRecord,
};
use crate::config::{ConfigMap, ConfigReport};

/// The `http` source.
#[derive(Debug)]
pub struct HttpSource {
    requests: mpsc::Receiver<Accepted>,
    /// Requests whose records were all handed to the runtime, by the
    /// position that covers them, waiting to hear that they are durable:
    /// shared with the [`Answerer`], which answers them.
    waiting: Arc<Mutex<VecDeque<Waiting>>>,
    /// The request whose records are being handed over, and the next one.
    current: Option<InProgress>,
    /// The last position given out: a request's count, or under
    /// EFFECTIVELY_ONCE the last sequence.
    next: u64,
    /// Under EFFECTIVELY_ONCE, the idempotency journal.
    journal: Option<Journal>,
    /// When the journal is next compacted, in Unix seconds.
    compact_at: u64,
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
            waiting: Arc::default(),
            current: None,
            next,
            journal,
            compact_at,
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
    type Committer = Answerer;

    fn committer(&self) -> Answerer {
        Answerer {
            waiting: Arc::clone(&self.waiting),
            shared: Arc::clone(&self.shared),
        }
    }

    /// The records of one or more requests (see [`HttpSource::make`]).
    /// Under EFFECTIVELY_ONCE the keyed requests' journal lines are synced
    /// before the batch is handed over.
    async fn read(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        self.compact().await?;
        if self.current.is_none() {
            let Some(first) = self.requests.recv().await else {
                return Ok(None);
            };
            self.current = Some(self.start(first));
        }
        let (batch, lines) = self.make();
        if let Some(journal) = &self.journal
            && !lines.is_empty()
        {
            journal.append(lines).await.map_err(|e| {
                ConnectorError::retryable("write the idempotency journal").with_source(e)
            })?;
        }
        Ok(Some(batch))
    }

    /// Stop serving. Requests not yet durable are answered 503: their
    /// clients send them again.
    async fn close(&mut self) {
        self.server.abort();
        waiting(&self.waiting).clear();
        self.current = None;
        self.requests.close();
        if let Some(keys) = &self.shared.keys {
            server::locked(keys).retain(|_, state| matches!(state, KeyState::Published { .. }));
        }
    }
}

/// Answers the requests whose records are durable.
#[derive(Debug)]
pub struct Answerer {
    waiting: Arc<Mutex<VecDeque<Waiting>>>,
    shared: Arc<Shared>,
}

impl Commit for Answerer {
    /// Answer every request up to `position`: its records are durable, and
    /// so is its idempotency key.
    async fn commit(&self, position: Position) -> Result<(), ConnectorError> {
        loop {
            let Some(Waiting { done, key, .. }) = ({
                let mut waiting = waiting(&self.waiting);
                if waiting.front().is_some_and(|w| w.position <= position.0) {
                    waiting.pop_front()
                } else {
                    None
                }
            }) else {
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
}

/// The requests waiting to hear that their records are durable.
fn waiting(waiting: &Mutex<VecDeque<Waiting>>) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
    waiting
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            waiting(&self.waiting).push_back(Waiting {
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
            waiting(&self.waiting)
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
mod tests;
