//! The HTTP server of the `http` source: it checks each request, turns its
//! body into records, hands them to the source, and answers once the
//! runtime says they are durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use super::config::HttpSourceConfig;
use super::request::{self, Item};
use crate::api::SourceRecord;
use crate::signature;

/// Records of one request, and where to say that they are durable.
pub(crate) struct Accepted {
    pub(crate) records: Vec<SourceRecord>,
    pub(crate) done: oneshot::Sender<()>,
    /// Its idempotency key and body digest, under EFFECTIVELY_ONCE.
    pub(crate) key: Option<(String, String)>,
}

/// What is known of an idempotency key.
#[derive(Debug)]
pub(crate) enum KeyState {
    /// Its records are durable; a retry is answered at once.
    Published { digest: String, records: usize },
    /// Its records are on their way; a retry waits with the first request.
    Pending {
        digest: String,
        records: usize,
        waiters: Vec<oneshot::Sender<()>>,
    },
}

/// The idempotency keys of a source under EFFECTIVELY_ONCE.
pub(crate) type Keys = Mutex<HashMap<String, KeyState>>;

/// The keys, locked. Nothing panics while holding them, so a poisoned lock
/// still holds a whole map.
pub(crate) fn locked(keys: &Keys) -> std::sync::MutexGuard<'_, HashMap<String, KeyState>> {
    keys.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    let limit = shared.config.max_body_bytes;
    axum::Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

fn answer(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if method != Method::POST {
        let mut response = answer(StatusCode::METHOD_NOT_ALLOWED, "only POST is taken");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return answer(rejection.status(), &rejection.body_text()),
    };
    if let Err(why) = authenticate(&shared.config, &headers, &body) {
        let mut response = answer(StatusCode::UNAUTHORIZED, why);
        if shared.config.auth_token.is_some() {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        return response;
    }
    let topic = match uri.path().strip_prefix("/topics/") {
        None => None,
        Some(name) if shared.config.topics_from_path.iter().any(|t| t == name) => {
            Some(name.to_owned())
        }
        Some(name) => {
            return answer(
                StatusCode::NOT_FOUND,
                &format!("topic {name} is not one this source publishes to"),
            );
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let config = &shared.config;
    let items = match request::items(
        content_type,
        &body,
        config.key_field.as_deref(),
        config.idempotency_key_field.as_deref(),
    ) {
        Ok(items) => items,
        Err((status, why)) => {
            return answer(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                &why,
            );
        }
    };
    let key = match &shared.keys {
        None => None,
        Some(_) => match idempotency_key(config, &headers, &items) {
            Ok(key) => key.map(|k| (k, digest(&body))),
            Err(why) => return answer(StatusCode::BAD_REQUEST, why),
        },
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let count = items.len();
    if let (Some(keys), Some((k, digest))) = (&shared.keys, &key) {
        match seen(keys, k, digest, count) {
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
    let records = items
        .into_iter()
        .map(|Item { key, value, .. }| SourceRecord {
            topic: topic.clone(),
            key,
            value,
            properties: Vec::new(),
            event_time_ms: Some(now_ms),
            sequence: None,
            schema: None,
        })
        .collect();
    let (done, durable_rx) = oneshot::channel();
    let forget = |shared: &Shared, key: &Option<(String, String)>| {
        if let (Some(keys), Some((k, _))) = (&shared.keys, key) {
            locked(keys).remove(k);
        }
    };
    match shared.requests.try_send(Accepted {
        records,
        done,
        key: key.clone(),
    }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            forget(&shared, &key);
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests are waiting for the broker; retry later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return response;
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            forget(&shared, &key);
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
    let mut response = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "the records were not stored; send them again",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
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

fn seen(keys: &Keys, key: &str, digest: &str, records: usize) -> Seen {
    let mut keys = locked(keys);
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
        Some(KeyState::Published { digest: d, records }) if d == digest => {
            Seen::Published(*records)
        }
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
    items: &[Item],
) -> Result<Option<String>, &'static str> {
    let key = match headers.get(config.idempotency_key_header.as_str()) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| "the idempotency key is not visible ASCII")?
                .to_owned(),
        ),
        None => match items {
            [one] => one.idempotency.clone(),
            _ => None,
        },
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

/// Check the bearer token and the signature the config asks for.
fn authenticate(
    config: &HttpSourceConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
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
    if let Some(secret) = &config.signature_secret {
        let given = headers
            .get(config.signature_header.as_str())
            .and_then(|v| v.to_str().ok())
            .ok_or("a signature is required")?;
        let signed_at = signature::verify(secret.expose().as_bytes(), given, body)
            .ok_or("the signature is not valid")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now.abs_diff(signed_at) > config.signature_tolerance.as_secs() {
            return Err("the signature is too old or from the future");
        }
    }
    Ok(())
}

/// Equal bytes, compared in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
