//! The HTTP server of the `http` source: it checks each request, its
//! credentials before any of its body, reads the body within a deadline and
//! a budget of bytes, hands the body to the source, and answers once the
//! runtime says its records are durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body as HttpBody, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::config::HttpSourceConfig;
use super::request;
use crate::signature;

/// A request's body, its topic, and where to say that its records are
/// durable.
pub(crate) struct Accepted {
    pub(crate) body: request::Body,
    /// The topic its path names; `None` for the connector's own.
    pub(crate) topic: Option<String>,
    pub(crate) done: oneshot::Sender<()>,
    /// Its idempotency key (scoped by topic, see [`scoped`]) and body
    /// digest, under EFFECTIVELY_ONCE.
    pub(crate) key: Option<(String, String)>,
    /// When it was taken, in milliseconds since the epoch.
    pub(crate) at_ms: u64,
}

/// What is known of an idempotency key.
#[derive(Debug)]
pub(crate) enum KeyState {
    /// Its records are durable; a retry is answered at once.
    Published {
        digest: String,
        records: usize,
        /// Unix seconds when it was taken: it is forgotten after the
        /// retention.
        at: u64,
        /// Its journal line, kept when the journal is compacted.
        line: super::journal::Entry,
    },
    /// Its records are on their way; a retry waits with the first request.
    Pending {
        digest: String,
        records: usize,
        waiters: Vec<oneshot::Sender<()>>,
    },
}

/// The idempotency keys of a source under EFFECTIVELY_ONCE, by scoped key.
pub(crate) type Keys = Mutex<HashMap<String, KeyState>>;

/// The keys, locked. Nothing panics while holding them, so a poisoned lock
/// still holds a whole map.
pub(crate) fn locked(keys: &Keys) -> std::sync::MutexGuard<'_, HashMap<String, KeyState>> {
    keys.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An idempotency key as it is remembered: scoped by the topic its request
/// named (empty for the connector's own), so that one key sent to two
/// topics names two requests. Neither a topic name nor a key holds a tab.
pub(crate) fn scoped(topic: Option<&str>, key: &str) -> String {
    format!("{}\t{key}", topic.unwrap_or(""))
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub(crate) config: HttpSourceConfig,
    pub(crate) requests: mpsc::Sender<Accepted>,
    /// The status of a request whose records are durable: 200, or 202 when
    /// they were only handed over (ATMOST_ONCE).
    pub(crate) durable_status: StatusCode,
    /// Under EFFECTIVELY_ONCE, the idempotency keys seen.
    pub(crate) keys: Option<Keys>,
    /// Bytes that requests not yet answered may hold (`maxPendingBytes`).
    pub(crate) budget: Arc<Semaphore>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The longest idempotency key taken.
const MAX_KEY: usize = 255;

/// The router: every path takes a POST.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(shared)
}

fn answer(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn busy(message: &str) -> Response {
    let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// A share of [`Shared::budget`], given back when dropped.
struct Held {
    budget: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Take `bytes` more, if the budget has them now.
    fn take(&mut self, bytes: usize) -> bool {
        let Ok(n) = u32::try_from(bytes) else {
            return false;
        };
        match Arc::clone(&self.budget).try_acquire_many_owned(n) {
            Ok(more) => {
                match &mut self.permit {
                    Some(p) => p.merge(more),
                    None => self.permit = Some(more),
                }
                true
            }
            Err(_) => false,
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let config = &shared.config;
    let (topic, content_type) = match before_body(config, &parts) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let mut held = Held {
        budget: Arc::clone(&shared.budget),
        permit: None,
    };
    // The budget is taken as bytes arrive, not as announced: a length
    // announced and not sent holds nothing.
    let read = read_body(body, config.max_body_bytes, &mut held);
    let bytes = match tokio::time::timeout(config.read_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(response)) => return response,
        Err(_) => {
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive within the read timeout",
            );
        }
    };
    if let Err(response) = check_signature(config, &parts, &content_type, &bytes) {
        return response;
    }
    // Each record of an array costs its place in the body's index too.
    if !held.take(request::index_bytes(&bytes)) {
        return busy("too many bytes are waiting for the broker; retry later");
    }
    let body = match request::parse(Some(&content_type), bytes) {
        Ok(body) => body,
        Err((status, why)) => {
            return answer(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                &why,
            );
        }
    };
    let key = match &shared.keys {
        None => None,
        Some(_) => match idempotency_key(config, &parts.headers, &body) {
            Ok(key) => key.map(|k| (scoped(topic.as_deref(), &k), digest(body.bytes()))),
            Err(why) => return answer(StatusCode::BAD_REQUEST, why),
        },
    };
    let response = accept(&shared, body, topic, key).await;
    drop(held);
    response
}

/// What is checked before a byte of the body is read: the method, the
/// credentials (a client without them gets no byte of its body read), the
/// topic the path names, a `Content-Type`, and the length announced.
#[allow(clippy::result_large_err)] // The refusal is the answer itself, made only when a request is refused.
fn before_body(
    config: &HttpSourceConfig,
    parts: &axum::http::request::Parts,
) -> Result<(Option<String>, String), Response> {
    if parts.method != Method::POST {
        let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, "only POST is taken");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return Err(response);
    }
    if let Err(why) = token(config, &parts.headers) {
        return Err(unauthorized(config, why));
    }
    let topic = match parts.uri.path().strip_prefix("/topics/") {
        None => None,
        Some(name) if config.topics_from_path.iter().any(|t| t == name) => Some(name.to_owned()),
        Some(name) => {
            return Err(answer(
                StatusCode::NOT_FOUND,
                &format!("topic {name} is not one this source publishes to"),
            ));
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(content_type) = content_type else {
        return Err(answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a Content-Type is required",
        ));
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > config.max_body_bytes) {
        return Err(answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is too large",
        ));
    }
    Ok((topic, content_type))
}

/// With `signatureSecret`, the request's signature, over the body now in.
#[allow(clippy::result_large_err)] // The refusal is the answer itself, made only when a request is refused.
fn check_signature(
    config: &HttpSourceConfig,
    parts: &axum::http::request::Parts,
    content_type: &str,
    bytes: &[u8],
) -> Result<(), Response> {
    if let Some(secret) = &config.signature_secret {
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        let signed = signature::Signed {
            method: parts.method.as_str(),
            path,
            content_type,
            idempotency_key: parts
                .headers
                .get(config.idempotency_key_header.as_str())
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            body: bytes,
        };
        if let Err(why) = signed_recently(config, secret.expose(), &parts.headers, &signed) {
            return Err(unauthorized(config, why));
        }
    }
    Ok(())
}

/// Read a body of at most `limit` bytes, taking its share of the budget
/// (twice its size: the bytes, and the records made of them) as it arrives.
async fn read_body(mut body: HttpBody, limit: usize, held: &mut Held) -> Result<Bytes, Response> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            answer(
                StatusCode::BAD_REQUEST,
                &format!("the body could not be read: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > limit {
            return Err(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is too large",
            ));
        }
        if !held.take(2 * data.len()) {
            return Err(busy(
                "too many bytes are waiting for the broker; retry later",
            ));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

fn unauthorized(config: &HttpSourceConfig, why: &str) -> Response {
    let mut response = answer(StatusCode::UNAUTHORIZED, why);
    if config.auth_token.is_some() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// Queue a checked request for the source and wait until its records are
/// durable, answering for idempotency keys seen before.
async fn accept(
    shared: &Shared,
    body: request::Body,
    topic: Option<String>,
    key: Option<(String, String)>,
) -> Response {
    let at_ms = crate::time::now_ms();
    let count = body.len();
    if let (Some(keys), Some((k, digest))) = (&shared.keys, &key) {
        let retention = shared.config.idempotency_retention.as_secs();
        match seen(keys, k, digest, count, retention) {
            Seen::New => {}
            Seen::Published(records) => {
                let mut response = durable(shared.durable_status, records);
                response.headers_mut().insert(
                    "idempotent-replayed",
                    header::HeaderValue::from_static("true"),
                );
                return response;
            }
            Seen::Pending(wait) => {
                return match wait.await {
                    Ok(()) => durable(shared.durable_status, count),
                    Err(_) => not_stored(),
                };
            }
            Seen::Conflict => {
                return answer(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this idempotency key was used for a different body",
                );
            }
        }
    }
    let (done, durable_rx) = oneshot::channel();
    let forget = |shared: &Shared, key: &Option<(String, String)>| {
        if let (Some(keys), Some((k, _))) = (&shared.keys, key) {
            locked(keys).remove(k);
        }
    };
    match shared.requests.try_send(Accepted {
        body,
        topic,
        done,
        key: key.clone(),
        at_ms,
    }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            forget(shared, &key);
            return busy("too many requests are waiting for the broker; retry later");
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            forget(shared, &key);
            return answer(StatusCode::SERVICE_UNAVAILABLE, "the source is stopping");
        }
    }
    match durable_rx.await {
        Ok(()) => durable(shared.durable_status, count),
        // The source stopped (a failed publish, shutdown) before the
        // records were durable: the client must send them again.
        Err(_) => not_stored(),
    }
}

fn durable(status: StatusCode, records: usize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "records": records }).to_string(),
    )
        .into_response()
}

fn not_stored() -> Response {
    busy("the records were not stored; send them again")
}

/// What a request's idempotency key says about it.
enum Seen {
    /// Never seen (or not published before a restart): publish it.
    New,
    /// Published before, with this many records.
    Published(usize),
    /// On its way: wait for it.
    Pending(oneshot::Receiver<()>),
    /// Seen with another body.
    Conflict,
}

/// What `key` says about a request with a body of `digest` and `records`
/// records. A published key older than `retention_secs` is forgotten.
fn seen(keys: &Keys, key: &str, digest: &str, records: usize, retention_secs: u64) -> Seen {
    let now = crate::time::now_secs();
    let mut keys = locked(keys);
    if let Some(KeyState::Published { at, .. }) = keys.get(key)
        && now.saturating_sub(*at) > retention_secs
    {
        keys.remove(key);
    }
    match keys.get_mut(key) {
        None => {
            keys.insert(
                key.to_owned(),
                KeyState::Pending {
                    digest: digest.to_owned(),
                    records,
                    waiters: Vec::new(),
                },
            );
            Seen::New
        }
        Some(KeyState::Published {
            digest: d, records, ..
        }) if d == digest => Seen::Published(*records),
        Some(KeyState::Pending {
            digest: d, waiters, ..
        }) if d == digest => {
            let (tx, rx) = oneshot::channel();
            waiters.push(tx);
            Seen::Pending(rx)
        }
        Some(_) => Seen::Conflict,
    }
}

/// A request's idempotency key: its header, else the configured field of
/// its one JSON object.
fn idempotency_key(
    config: &HttpSourceConfig,
    headers: &HeaderMap,
    body: &request::Body,
) -> Result<Option<String>, &'static str> {
    let key = match headers.get(config.idempotency_key_header.as_str()) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| "the idempotency key is not visible ASCII")?
                .to_owned(),
        ),
        None => config
            .idempotency_key_field
            .as_deref()
            .and_then(|f| body.only_field(f)),
    };
    match key {
        Some(k) if k.is_empty() || k.len() > MAX_KEY => {
            Err("the idempotency key is empty or longer than 255 characters")
        }
        Some(k) if k.chars().any(char::is_control) => {
            Err("the idempotency key holds a control character")
        }
        other => Ok(other),
    }
}

/// Hex SHA-256 of a body.
fn digest(body: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Check the bearer token the config asks for: on the headers alone.
fn token(config: &HttpSourceConfig, headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(token) = &config.auth_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or("a bearer token is required")?;
        if !same(given.as_bytes(), token.expose().as_bytes()) {
            return Err("the bearer token is not valid");
        }
    }
    Ok(())
}

/// Check the request's signature, and that it was made within tolerance.
fn signed_recently(
    config: &HttpSourceConfig,
    secret: &str,
    headers: &HeaderMap,
    request: &signature::Signed<'_>,
) -> Result<(), &'static str> {
    let given = headers
        .get(config.signature_header.as_str())
        .and_then(|v| v.to_str().ok())
        .ok_or("a signature is required")?;
    let signed_at = signature::verify(
        secret.as_bytes(),
        given,
        request,
        config.accept_v1_signatures,
    )
    .ok_or("the signature is not valid")?;
    let now = crate::time::now_secs();
    if now.abs_diff(signed_at) > config.signature_tolerance.as_secs() {
        return Err("the signature is too old or from the future");
    }
    Ok(())
}

/// Equal bytes, compared in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
