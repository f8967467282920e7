//! A webhook receiver for the HTTP sink tests: a real HTTP server on a
//! loopback port that records every request it gets and answers as the
//! test scripts it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The request path and query.
    pub path: String,
    /// Header names in lower case, with their values.
    pub headers: HashMap<String, String>,
    /// The raw body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// How many requests before this one carried the same idempotency key.
    pub seen_before: usize,
}

impl Hit {
    /// A header's value, by any case of its name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The answer to a request: status, extra headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);

type Script = dyn Fn(&Hit) -> Answer + Send + Sync;

struct Shared {
    hits: Mutex<Vec<Hit>>,
    script: Mutex<Arc<Script>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// How long each request is held before it is answered.
    hold: Mutex<Duration>,
}

/// A running receiver; it stops when dropped.
pub struct Webhook {
    shared: Arc<Shared>,
    /// Where it listens.
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Webhook {
    /// Start a receiver on a free loopback port that answers `200 ok` to
    /// everything until [`Webhook::script`] says otherwise.
    pub async fn start() -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            hits: Mutex::default(),
            script: Mutex::new(Arc::new(|_: &Hit| (200, Vec::new(), "ok".to_owned()))),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            hold: Mutex::new(Duration::ZERO),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            shared,
            addr,
            server,
        })
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer from now on as `script` says.
    pub fn script(&self, script: impl Fn(&Hit) -> Answer + Send + Sync + 'static) {
        if let Ok(mut s) = self.shared.script.lock() {
            *s = Arc::new(script);
        }
    }

    /// Hold each request this long before answering it.
    pub fn hold(&self, hold: Duration) {
        if let Ok(mut h) = self.shared.hold.lock() {
            *h = hold;
        }
    }

    /// Every request so far, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        self.shared
            .hits
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// The most requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let hit = {
        let Ok(mut hits) = shared.hits.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let key = headers.get("idempotency-key");
        let seen_before = hits
            .iter()
            .filter(|h| key.is_some() && h.headers.get("idempotency-key") == key)
            .count();
        let hit = Hit {
            path: uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            headers,
            body,
            at: Instant::now(),
            seen_before,
        };
        hits.push(hit.clone());
        hit
    };
    let hold = shared.hold.lock().map(|h| *h).unwrap_or_default();
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    let script = shared.script.lock().map(|s| Arc::clone(&s)).ok();
    let (status, extra, text) = match script {
        Some(script) => script(&hit),
        None => (500, Vec::new(), "script lock".to_owned()),
    };
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        text,
    )
        .into_response();
    for (name, value) in extra {
        if let Ok(v) = value.parse() {
            response.headers_mut().insert(name, v);
        }
    }
    response
}
