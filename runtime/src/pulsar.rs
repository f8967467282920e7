//! The Pulsar client, behind one module: every magnetar type stays in here
//! (docs/decisions/0001-pulsar-client.md). The engine sees producers that
//! send records, consumers that yield [`SinkRecord`]s with an ack handle,
//! and one error type.

mod admin;
mod auth;
mod backlog;
mod bundle;
mod codecs;
pub(crate) mod consumer;
mod inflate;
mod producer;
mod relay;
mod schema;
mod tls;
mod transactions;
mod unreadable;
pub(crate) mod value_schemas;
mod watch;

pub use admin::partitioned_name;
pub use backlog::Backlog;
pub use consumer::{AckHandle, Consumer, ConsumerOptions, Followed, Received};
pub use producer::{Access, Producer, ProducerOptions, SendResult};
pub use transactions::{OrphanEnd, Txn};
pub use watch::Watch;

use std::sync::Arc;
use std::time::Duration;

use magnetar::runtime_tokio as rt;

use crate::config::PulsarSettings;

/// The property that carries a record's sequence.
pub const SEQUENCE_PROPERTY: &str = "sluice.seq";

/// A failure talking to the broker. Every one of them is worth retrying
/// after a backoff, except a refused configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{context}: {message}")]
pub struct PulsarError {
    context: String,
    message: String,
    retryable: bool,
    /// The broker refused a producer because another holds the topic
    /// (an exclusive producer, or one that fenced it out).
    held_elsewhere: bool,
}

impl PulsarError {
    fn new(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self {
            context: context.into(),
            message: err.to_string(),
            retryable: true,
            held_elsewhere: false,
        }
    }

    /// An error described by a message alone.
    pub fn from_message(message: impl Into<String>) -> Self {
        Self {
            context: "pulsar".into(),
            message: message.into(),
            retryable: true,
            held_elsewhere: false,
        }
    }

    /// A producer refused because another producer holds the topic.
    pub fn held_elsewhere(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            message: message.into(),
            retryable: true,
            held_elsewhere: true,
        }
    }

    fn config(context: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            message: message.into(),
            retryable: false,
            held_elsewhere: false,
        }
    }

    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Whether a producer was refused because another producer holds the
    /// topic: for an EFFECTIVELY_ONCE source, another instance publishes.
    pub fn is_held_elsewhere(&self) -> bool {
        self.held_elsewhere
    }
}

/// A connection to the broker.
#[derive(Clone)]
pub struct Client {
    inner: Arc<rt::Client>,
    settings: PulsarSettings,
    credentials: auth::Credentials,
    coordinator: Arc<tokio::sync::OnceCell<rt::Client>>,
    /// What a sink's client reaches the cluster through.
    relay: Option<Arc<relay::Relay>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// How a client reads what it consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// As the broker sends it: for a client that publishes only.
    Direct,
    /// Through a relay that inflates compressed batches first, which the
    /// client cannot read otherwise (decision 0019): for a sink's client.
    Inflated,
}

/// Connect to the broker.
pub async fn connect(settings: &PulsarSettings, reading: Reading) -> Result<Client, PulsarError> {
    let credentials = auth::Credentials::open(settings).await?;
    let context = format!("connect to {}", settings.service_url);
    let relay = match reading {
        Reading::Direct => None,
        Reading::Inflated => Some(Arc::new(relay::Relay::new(tls::broker(
            settings,
            credentials.identity(),
        )?)?)),
    };
    let inner = dial(settings, &credentials, &context, relay.as_ref()).await?;
    Ok(Client {
        inner: Arc::new(inner),
        settings: settings.clone(),
        credentials,
        coordinator: Arc::new(tokio::sync::OnceCell::new()),
        relay,
    })
}

/// A connection to the broker at `pulsar.serviceUrl`, with the
/// credentials and TLS of every connection sluice makes; `context` says
/// what failed in errors.
async fn dial(
    settings: &PulsarSettings,
    credentials: &auth::Credentials,
    context: &str,
    relay: Option<&Arc<relay::Relay>>,
) -> Result<rt::Client, PulsarError> {
    let mut config = magnetar::ConnectionConfig {
        operation_timeout: Duration::from_secs(30),
        ..magnetar::ConnectionConfig::default()
    };
    let provider = credentials.provider();
    if let Some(p) = &provider {
        config.auth_method_name = p.method().to_owned();
        config.auth_data = Some(
            p.initial()
                .map_err(|e| PulsarError::config(context, e.to_string()))?,
        );
    }
    let url = rt::ParsedUrl::parse(&settings.service_url)
        .map_err(|e| PulsarError::config(context, e.to_string()))?;
    let connected = match relay {
        None => {
            let tls = tls::broker(settings, credentials.identity())?;
            rt::Client::connect_with(url, tls, config, provider).await
        }
        Some(relay) => {
            let resolver: Arc<dyn rt::DnsResolver> = relay.clone();
            rt::Client::connect_with_resolver_and_provider(
                url,
                relay.client_tls(),
                config,
                provider,
                None,
                Some(resolver),
            )
            .await
        }
    };
    connected.map_err(|e| {
        let message = e.to_string();
        // A server that refuses the client's certificate ends the
        // handshake with an alert, or just closes.
        let refused = ["handshake failed", "received fatal alert"]
            .iter()
            .any(|m| message.contains(m));
        if credentials.identity().is_some() && refused {
            PulsarError::new(
                context,
                format!(
                    "{message}: the broker refused the TLS handshake; is tlsCertFile \
                         signed by a CA the broker trusts (its tlsTrustCertsFilePath)?"
                ),
            )
        } else {
            PulsarError::new(context, message)
        }
    })
}

impl Client {
    /// Close every connection of this client, the transaction
    /// coordinator's included. Without it the connections outlive the
    /// client. Only the last holder closes; clones just let go.
    pub async fn close(self) {
        let Self {
            inner,
            coordinator,
            relay,
            ..
        } = self;
        if let Ok(coordinator) = Arc::try_unwrap(coordinator)
            && let Some(c) = coordinator.into_inner()
        {
            c.close().await;
        }
        if let Ok(inner) = Arc::try_unwrap(inner) {
            inner.close().await;
            // Last: the client's goodbyes went through it.
            if let Some(relay) = relay {
                relay.stop();
            }
        }
    }

    /// When this client should be replaced by a new one, because the
    /// token it presents on every connection expires soon after; `None`
    /// when it does not expire.
    pub fn renew_at(&self) -> Option<std::time::Instant> {
        self.credentials.renew_at()
    }

    /// Payload bytes a connector may hold for Pulsar before it stops
    /// reading: `pulsar.memoryLimitBytes`, 0 meaning no limit. A batch read
    /// while under the limit goes out whole, so the bound is passed by at
    /// most one batch.
    pub fn memory_limit(&self) -> u64 {
        match self.settings.memory_limit_bytes {
            0 => u64::MAX,
            n => n,
        }
    }
}
