//! `http`: a web service's side of the REST pattern. It listens on `host`
//! and `port` (the keys of Pulsar's Netty source, `type: http`), takes a
//! POST of a JSON object (one record), a JSON array (one record each) or any
//! other body with its content type (one record of its bytes), and answers
//! only when the records are durable in Pulsar.
//!
//! Each accepted request waits in a bounded queue; when the queue is full
//! a new request is answered 503 with `Retry-After`, so a slow broker
//! pushes back on the clients instead of growing memory.

mod config;
mod request;
mod server;

use std::collections::VecDeque;
use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

pub use self::config::HttpSourceConfig;
use self::server::{Accepted, Shared};
use crate::api::{
    ConnectorError, Finding, Guarantee, Position, Source, SourceBatch, SourceConnector,
    SourceContext,
};
use crate::config::{ConfigMap, ConfigReport};

/// The `http` source.
#[derive(Debug)]
pub struct HttpSource {
    requests: mpsc::Receiver<Accepted>,
    /// Requests handed to the runtime, by the position that covers them,
    /// waiting to hear that they are durable.
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
    /// A request taken from the queue that did not fit in the last batch.
    held: Option<Accepted>,
    next: u64,
    batch_size: usize,
    server: tokio::task::JoinHandle<()>,
    /// Where the server listens.
    pub local_addr: std::net::SocketAddr,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl SourceConnector for HttpSource {
    const CLASS_NAMES: &'static [&'static str] =
        &["http", "org.apache.pulsar.io.netty.NettySource"];
    type Config = HttpSourceConfig;

    fn configure(configs: &ConfigMap) -> (Option<HttpSourceConfig>, ConfigReport) {
        HttpSourceConfig::from_configs(configs)
    }

    /// Bind the port and start serving.
    async fn open(
        config: HttpSourceConfig,
        context: &SourceContext,
    ) -> Result<Self, ConnectorError> {
        if context.guarantee == Guarantee::EffectivelyOnce {
            return Err(ConnectorError::configuration(
                "the http source runs under ATMOST_ONCE or ATLEAST_ONCE; EFFECTIVELY_ONCE \
                 (a retried request published once) is not supported yet",
            ));
        }
        let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
            .await
            .map_err(|e| {
                ConnectorError::retryable(format!("listen on {}:{}", config.host, config.port))
                    .with_source(e)
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| ConnectorError::retryable("read the listening address").with_source(e))?;
        let (tx, requests) = mpsc::channel(config.max_pending_requests);
        let batch_size = config.batch_size;
        let shared = Arc::new(Shared {
            config,
            requests: tx,
            durable_status: if context.guarantee == Guarantee::AtMostOnce {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            },
        });
        let app = server::router(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        info!(%local_addr, "http source listening");
        Ok(Self {
            requests,
            waiting: VecDeque::new(),
            held: None,
            next: 0,
            batch_size,
            server,
            local_addr,
        })
    }

    /// The port is free to listen on.
    async fn preflight(config: &HttpSourceConfig) -> Vec<Finding> {
        match tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await {
            Ok(_) => Vec::new(),
            Err(e) => vec![Finding::error(format!(
                "cannot listen on {}:{}: {e}",
                config.host, config.port
            ))],
        }
    }
}

impl Source for HttpSource {
    /// The records of one or more requests, never splitting one; each
    /// request's last record carries a position of its own.
    async fn read(&mut self) -> Result<Option<SourceBatch>, ConnectorError> {
        let first = match self.held.take() {
            Some(a) => a,
            None => match self.requests.recv().await {
                Some(a) => a,
                None => return Ok(None),
            },
        };
        let mut records = Vec::new();
        let mut next = Some(first);
        while let Some(accepted) = next.take() {
            if !records.is_empty() && records.len() + accepted.records.len() > self.batch_size {
                self.held = Some(accepted);
                break;
            }
            records.extend(accepted.records);
            self.next += 1;
            self.waiting.push_back((self.next, accepted.done));
            next = self.requests.try_recv().ok();
        }
        Ok(Some(SourceBatch {
            records,
            checkpoint: Some(Position(self.next)),
        }))
    }

    /// Answer every request up to `position`: its records are durable.
    async fn commit(&mut self, position: Position) -> Result<(), ConnectorError> {
        while self.waiting.front().is_some_and(|(p, _)| *p <= position.0) {
            if let Some((_, done)) = self.waiting.pop_front() {
                let _ = done.send(());
            }
        }
        Ok(())
    }

    /// Stop serving. Requests not yet durable are answered 503: their
    /// clients send them again.
    async fn close(&mut self) {
        self.server.abort();
        self.waiting.clear();
        self.held = None;
        self.requests.close();
    }
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
        headers: &str,
        body: &str,
    ) -> (u16, String) {
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
        assert_eq!(batch.records[1].value, br#"{"n":2}"#);
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
}
