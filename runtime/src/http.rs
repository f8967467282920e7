//! The HTTP endpoints on `http.listen`: `/metrics`, `/healthz`, `/readyz`,
//! `GET /connectors` and `GET /connectors/{name}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::engine::status::{ConnectorStatus, State as RunState};

type Statuses = Arc<Vec<Arc<ConnectorStatus>>>;

/// Serve until `shutdown` is cancelled. Binding happens before this returns
/// its future's first poll completes, so a taken port fails the start.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serve the endpoints on a bound listener until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    statuses: Statuses,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/connectors", get(connectors))
        .route("/connectors/{name}", get(connector))
        .with_state(statuses);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics(State(s): State<Statuses>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&s),
    )
        .into_response()
}

/// Ready when every connector runs or waits as a standby (it does what it
/// should, and a deployment of an active instance and its standbys is
/// whole), the body naming the standbys; otherwise a line per connector
/// that does neither, with its state and the error that stopped it. A
/// connector that runs but whose outstanding work has not moved for a
/// minute is stalled, and not ready.
async fn ready(State(s): State<Statuses>) -> Response {
    let now = crate::engine::status::now_ms();
    let standbys: String = s
        .iter()
        .filter(|c| c.state() == RunState::Standby)
        .map(|c| format!("{}: standby\n", c.name))
        .collect();
    let not_running: Vec<String> = s
        .iter()
        .filter_map(|c| match (c.state(), c.stalled_for(now)) {
            (RunState::Running, Some(ms)) => Some(format!(
                "{}: running, but stalled: its outstanding work has not moved for {} s",
                c.name,
                ms / 1000
            )),
            (RunState::Running | RunState::Standby, _) => None,
            (state, _) => Some(match c.last_error() {
                Some(e) => format!("{}: {}: {e}", c.name, state.as_str()),
                None => format!("{}: {}", c.name, state.as_str()),
            }),
        })
        .collect();
    if not_running.is_empty() {
        (StatusCode::OK, format!("ready\n{standbys}")).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", not_running.join("\n")),
        )
            .into_response()
    }
}

fn describe(c: &ConnectorStatus) -> serde_json::Value {
    json!({
        "name": c.name,
        "kind": c.kind,
        "state": c.state().as_str(),
        "last_error": c.last_error(),
        "records_in": c.records_in.load(Ordering::Relaxed),
        "records_out": c.records_out.load(Ordering::Relaxed),
        "bytes_in": c.bytes_in.load(Ordering::Relaxed),
        "bytes_out": c.bytes_out.load(Ordering::Relaxed),
        "errors": c.errors.load(Ordering::Relaxed),
        "dead_lettered": c.dead_lettered.load(Ordering::Relaxed),
        "dropped": c.dropped.load(Ordering::Relaxed),
        "restarts": c.restarts.load(Ordering::Relaxed),
        "skipped": {
            "redelivered": c.skips.redelivered.load(Ordering::Relaxed),
            "republished": c.skips.republished.load(Ordering::Relaxed),
            "filtered": c.skips.filtered.load(Ordering::Relaxed),
            "delivered_twice": c.skips.delivered_twice.load(Ordering::Relaxed),
        },
        "lag_ms": c.lag_ms.load(Ordering::Relaxed),
        "stalled_ms": c.stalled_for(crate::engine::status::now_ms()),
        "snapshot": c.snapshot.get(),
    })
}

async fn connectors(State(s): State<Statuses>) -> Response {
    axum::Json(s.iter().map(|c| describe(c)).collect::<Vec<_>>()).into_response()
}

async fn connector(State(s): State<Statuses>, Path(name): Path<String>) -> Response {
    match s.iter().find(|c| c.name == name) {
        Some(c) => axum::Json(describe(c)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no connector named {name}\n"),
        )
            .into_response(),
    }
}
