//! Shared helpers for the integration tests: where the local stack listens,
//! unique names, Pulsar admin calls and waiting on a condition with a deadline.
//!
//! Every test here runs against the real services that `scripts/stack up`
//! starts. Nothing is mocked.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// The broker's binary protocol endpoint.
pub const PULSAR_URL: &str = "pulsar://127.0.0.1:6650";
/// The broker's admin REST endpoint.
pub const PULSAR_ADMIN_URL: &str = "http://127.0.0.1:8080";
/// How long a test waits for a condition before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A name that no other test run has used: `prefix-<time>-<counter>`.
///
/// Tests create their own topics and namespaces so that they can run in
/// parallel and again on a stack that earlier runs left data in.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{micros:x}-{n}")
}

/// `persistent://public/default/<name>`.
pub fn topic(name: &str) -> String {
    format!("persistent://public/default/{name}")
}

/// Pulsar's admin REST API on the local broker.
pub mod admin {
    use super::*;

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into()
    }

    fn check(method: &str, path: &str, status: u16, body: &str) -> anyhow::Result<()> {
        if (200..300).contains(&status) {
            Ok(())
        } else {
            bail!("{method} {path}: HTTP {status}: {body}")
        }
    }

    /// PUT a JSON body (or nothing) to an admin path such as `/admin/v2/namespaces/public/x`.
    pub fn put(path: &str, json: Option<&str>) -> anyhow::Result<()> {
        let url = format!("{PULSAR_ADMIN_URL}{path}");
        let mut resp = agent()
            .put(&url)
            .header("Content-Type", "application/json")
            .send(json.unwrap_or(""))
            .with_context(|| format!("PUT {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        check("PUT", path, status, &body)
    }

    /// POST a JSON body to an admin path.
    pub fn post(path: &str, json: &str) -> anyhow::Result<()> {
        let url = format!("{PULSAR_ADMIN_URL}{path}");
        let mut resp = agent()
            .post(&url)
            .header("Content-Type", "application/json")
            .send(json)
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        check("POST", path, status, &body)
    }

    /// GET an admin path and return the body.
    pub fn get(path: &str) -> anyhow::Result<String> {
        let url = format!("{PULSAR_ADMIN_URL}{path}");
        let mut resp = agent()
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        check("GET", path, status, &body)?;
        Ok(body)
    }

    /// Create the namespace `public/<name>` and return `public/<name>`.
    pub fn create_namespace(name: &str) -> anyhow::Result<String> {
        put(&format!("/admin/v2/namespaces/public/{name}"), None)?;
        Ok(format!("public/{name}"))
    }

    /// Turn broker-side message deduplication on for a namespace.
    pub fn enable_deduplication(namespace: &str) -> anyhow::Result<()> {
        post(
            &format!("/admin/v2/namespaces/{namespace}/deduplication"),
            "true",
        )
    }
}

/// Poll `check` until it returns `Ok(Some(value))`, or fail after `deadline`.
///
/// `Ok(None)` means "not yet"; an error ends the wait at once.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
